//! The event loop: one `mio::Poll`, one thread, every listener and every
//! connection.
//!
//! One wake-up, in order (each step's part, a file under `event_loop/`,
//! in brackets):
//!
//! 1. `poll` with a timeout from the earliest deadline (none: sleep until
//!    an event; zero if a connection still has input it was not allowed to
//!    read last time), then read the clock once;
//! 2. give their turn, first, to the connections whose event came after
//!    the last wake-up's read budget was spent (they had none) \[reading\];
//! 3. handle each event (`dispatch`): accept on a listener until
//!    `WouldBlock` or its accept budget, each new peer admitted or refused
//!    by the per-address limits (see [`super::admission`]) \[accepting\];
//!    answer the datagrams of a UDP socket \[datagrams\]; read a connection
//!    and feed its session, routing what it asks for after each read
//!    \[reading, routing\]; a signal starts the shutdown \[shutdown\].
//!    Each request/reply turn reads its share of `WAKE_READ_BYTES` (the
//!    budget over the connections that may read), and reading stops for
//!    everyone once the wake-up has read the budget in all: the rest wait,
//!    listed, for the next wake-up's step 2. Then resume the connections
//!    the last wake-up's budgets left with work (fairness): unread input,
//!    or a session that wants another turn for work of its own (a large
//!    message done in slices: `Session::wants_turn`) \[reading\];
//! 4. resume the UDP sockets and listeners left with work, and accepting
//!    after a pause \[datagrams, accepting\];
//! 5. fire due deadlines (idle timeouts, close grace, pacing refills)
//!    \[deadlines\], and log the refusals due to be reported (once a second
//!    at most, see [`super::refusals`]) \[accepting\];
//! 6. flush every connection touched in this wake-up and left with
//!    something to write or settle (a request/reply connection whose
//!    replies all went out right after its turn had its memory counted
//!    then, and is done), once, settle its interest, count its memory
//!    (closing the biggest holders when over `--max-memory`), and remove
//!    the connections that finished, routing their joined leaving notices
//!    to receivers flushed in the same walk \[flushing\]. A long flush (a broadcast's fan-out) polls again
//!    without waiting every `FLUSH_SLICE` connections and handles what
//!    arrived (step 3), so a message that comes in while a thousand
//!    receivers are being written joins the writes not yet made instead of
//!    waiting for the next wake-up;
//! 7. housekeeping: read allowances back, the allocator trimmed when due,
//!    systemd told the loop turns, the wake-up timed; during a shutdown,
//!    stop once every connection is gone or the grace is over
//!    \[shutdown\].
//!
//! The invariants this relies on are written once, in the crate doc.

mod accepting;
mod datagrams;
mod deadlines;
mod flushing;
mod reading;
mod routing;
mod setup;
mod shutdown;

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Token};
use slab::Slab;

use crate::config::Config;
use crate::proto::Shared;

use super::conn::{Conn, IoCx};
use super::memory_budget::MemoryBudget;
use super::metrics::Metrics;
use super::signals::ShutdownSignals;
use super::systemd::{self, Notifier};
use super::timers::Clock;
use super::trace;
use super::ServerError;

/// The token of the signal pipe.
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// Listener `i` has token `FIRST_LISTENER - i`; connections use their slab
/// key, counted up from 0, so the two ranges never meet.
const FIRST_LISTENER: usize = usize::MAX - 2;

/// The loop's read buffer, shared by every connection.
const SCRATCH_BYTES: usize = 256 * 1024;

/// UDP socket `j` has token `FIRST_DATAGRAM + j`: far above any slab key,
/// far below the listeners.
const FIRST_DATAGRAM: usize = usize::MAX / 2;

fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER - index)
}

fn datagram_token(index: usize) -> Token {
    Token(FIRST_DATAGRAM + index)
}

/// The server: its poll, its connections and the state they share, the
/// clock and the signals, and one part per job of the loop (each in the
/// module of the same name).
pub struct Server {
    poll: Poll,
    conns: Slab<Conn>,
    shared: Shared,
    config: Config,
    clock: Clock,
    signals: ShutdownSignals,
    /// Listeners, the budgets and limits of accepting.
    accepting: accepting::Accepting,
    /// UDP sockets.
    datagrams: datagrams::Datagrams,
    /// The read buffer and the fair-turn budgets.
    reading: reading::Reading,
    /// Deliveries between connections.
    routing: routing::Routing,
    /// Connections to write at the end of the wake-up.
    flushing: flushing::Flushing,
    /// Idle, close-grace and refill deadlines.
    deadlines: deadlines::Deadlines,
    /// The loop's figures for the stats listener.
    metrics: Metrics,
    /// systemd's notify socket (`Type=notify`), if started by systemd.
    notifier: Option<Notifier>,
    /// When the next `STATUS=` (and `WATCHDOG=1`) is due.
    notify_at: Option<u64>,
    /// Set once shutdown starts: when the drain grace ends.
    shutdown_at: Option<u64>,
    /// Every client buffer together against `--max-memory`
    /// (`buffered_bytes` and `limit` are there for the stats listener).
    pub memory: MemoryBudget,
}

impl Server {
    /// Serves until a shutdown signal has been handled.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        self.notify_tick(true);
        loop {
            // 1.
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(e));
            }
            let woke = Instant::now();
            self.clock.tick();
            let _wake = trace::Wake::begin();
            // 2. Those that had no turn last time go first...
            self.reading.wake_read = 0;
            self.reading.turn_bytes =
                reading::turn_bytes(self.listed_readers() + events.iter().count());
            let backlog = self.reading.still_ready.len();
            self.resume_waiting();
            // 3. ...then the new events...
            for event in events.iter() {
                self.metrics.events += 1;
                self.dispatch(event);
            }
            // ...then those that read their share last time and may hold
            // more.
            self.resume_still_ready(backlog);
            // 4.
            self.resume_datagrams();
            self.resume_listeners();
            self.resume_accepting();
            // 5.
            self.fire_timers();
            self.report_refusals();
            // 6.
            self.flush_touched(&mut events);
            // 7.
            self.reset_read_allowances();
            self.memory.housekeeping(self.clock.now, self.conns.len());
            if self.notify_at.is_some_and(|at| self.clock.now >= at) {
                self.notify_tick(false);
            }
            self.metrics.wakeups += 1;
            self.metrics.wakeup_duration.observe(woke.elapsed());
            if self.shutdown_finished() {
                return Ok(());
            }
        }
    }

    /// Tells systemd (under `Type=notify`) that the loop turns: `READY=1`
    /// the first time, then `STATUS=` with the connection count and, with
    /// `WatchdogSec=`, `WATCHDOG=1`, at half the watchdog period (every
    /// [`systemd::STATUS_EVERY`] at most). Sent from the loop itself, so a
    /// loop that stops turning stops the pings and systemd restarts it.
    fn notify_tick(&mut self, first: bool) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let mut state = systemd::status_line(self.metrics.open_total());
        if first {
            state.insert_str(0, "READY=1\n");
        }
        if notifier.watchdog_every.is_some() {
            state.push_str("\nWATCHDOG=1");
        }
        notifier.notify(&state);
        self.notify_at = Some(self.clock.after(notifier.tick_every()));
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.reading.still_ready.is_empty()
            || !self.reading.waiting.is_empty()
            || !self.datagrams.ready.is_empty()
            || !self.accepting.ready.is_empty()
        {
            return Some(Duration::ZERO);
        }
        [
            self.deadlines.timers.next_at(),
            self.shutdown_at,
            self.accepting.paused_until,
            self.accepting.refusals.next_report(),
            self.notify_at,
            self.memory.trim_due_at(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| Duration::from_millis(at.saturating_sub(self.clock.now)))
    }

    fn dispatch(&mut self, event: &Event) {
        let _trace = trace::Scope::event(event, || self.trace_name(event.token()));
        match event.token() {
            SIGNAL_TOKEN => {
                if self.signals.take_pending() {
                    self.begin_shutdown();
                }
            }
            Token(t)
                if t > FIRST_LISTENER - self.accepting.listeners.len() && t <= FIRST_LISTENER =>
            {
                self.accept_all(FIRST_LISTENER - t);
            }
            Token(t)
                if (FIRST_DATAGRAM..FIRST_DATAGRAM + self.datagrams.endpoints.len())
                    .contains(&t) =>
            {
                self.serve_datagrams(t - FIRST_DATAGRAM);
            }
            Token(key) => self.on_conn_event(key, event),
        }
    }

    /// What `--trace` calls the owner of `token`: `signal`, `listener
    /// <protocol>`, `udp <protocol>`, `#3 <protocol> 127.0.0.1:60500`.
    fn trace_name(&self, token: Token) -> String {
        let Token(t) = token;
        if token == SIGNAL_TOKEN {
            "signal".to_string()
        } else if let Some(l) = self.accepting.listeners.get(FIRST_LISTENER.wrapping_sub(t)) {
            format!("listener {}", l.protocol)
        } else if let Some(d) = self.datagrams.endpoints.get(t.wrapping_sub(FIRST_DATAGRAM)) {
            format!("udp {}", d.protocol)
        } else if let Some(c) = self.conns.get(t) {
            format!("#{} {} {}", c.id(), c.protocol(), c.peer())
        } else {
            format!("token {t}")
        }
    }

    /// Splits the loop into what one call into a connection needs: the
    /// read buffer, the slab, the context lent to the cores, and the list
    /// of slow consumers found.
    fn io_parts(&mut self) -> (&mut [u8], &mut Slab<Conn>, IoCx<'_>, &mut Vec<usize>) {
        (
            &mut self.reading.scratch,
            &mut self.conns,
            IoCx {
                shared: &mut self.shared,
                clock: &self.clock,
                draining: self.shutdown_at.is_some(),
                effects: &mut self.routing.effects,
                wake_read: &mut self.reading.wake_read,
            },
            &mut self.routing.slow,
        )
    }
}
