//! The event loop: one `mio::Poll`, one thread, every listener and every
//! connection.
//!
//! One wake-up, in order:
//!
//! 1. `poll` with a timeout from the earliest deadline (none: sleep until
//!    an event; zero if a connection still has input it was not allowed to
//!    read last time);
//! 2. read the clock once;
//! 3. resume, first, the connections the last wake-up's budgets left with
//!    work (fairness): unread input, or a session that wants another turn
//!    for work of its own (a large transform done in slices, one per
//!    wake-up: `Session::wants_turn`);
//! 4. handle each event: accept on a listener until `WouldBlock` or
//!    `ACCEPTS_PER_WAKE` (each new peer admitted or refused by the
//!    per-address limits, see [`super::admission`]); answer the datagrams
//!    of a UDP socket; read a connection and feed its session; a signal
//!    starts the shutdown. Reading stops for everyone once the wake-up
//!    has read `WAKE_READ_BYTES` in all: the rest wait, listed, for the
//!    next wake-up's step 3; then resume the UDP sockets and listeners
//!    left with work;
//! 5. fire due deadlines (idle timeouts, close grace), and log the
//!    refusals due to be reported (once a second at most, see
//!    [`super::refusals`]);
//! 6. flush every connection touched in this wake-up, once, then settle
//!    its interest, and remove the connections that finished. A long flush
//!    (a chat room's fan-out) polls again without waiting every
//!    64 connections (`FLUSH_SLICE`) and handles what arrived (step 4), so a
//!    message that comes in while a thousand receivers are being written
//!    joins the writes not yet made instead of waiting for the next
//!    wake-up.
//!
//! The invariants this relies on are written once, in the crate doc.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use crate::config::{Config, Protocol, CLOSE_GRACE, SHUTDOWN_GRACE};
use crate::proto::output::SEGMENT_COST;
use crate::proto::{effects, AnySession, CloseReason, Effect, Output, Shared};

use super::admission::{self, Admission, Refusal};
use super::conn::{Conn, IoCx, Phase, ReadStep, ReadStop, READS_PER_WAKE};
use super::datagram::{DatagramEndpoint, DatagramStop};
use super::flood::{FloodLimit, TokenBucket};
use super::limits;
use super::listener::{AcceptError, Listener, ReserveFd, Shed};
use super::memory_budget::MemoryBudget;
use super::metrics::{Closed, Metrics};
use super::refusals::{RefusalLimits, RefusalLog, RefusalReason};
use super::rooms::{ConnIndex, SlabSink};
use super::signals::ShutdownSignals;
use super::stats::{self, View};
use super::systemd::{self, Notifier, Passed};
use super::timers::{millis, Clock, TimerKind, Timers};
use super::trace;
use super::upload_store;
use super::ServerError;

/// No connection has this id (they count from 1): a broadcast that leaves
/// out nobody.
const NOBODY: u64 = 0;

/// The token of the signal pipe.
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// Listener `i` has token `FIRST_LISTENER - i`; connections use their slab
/// key, counted up from 0, so the two ranges never meet.
const FIRST_LISTENER: usize = usize::MAX - 2;

/// The loop's read buffer, shared by every connection.
const SCRATCH_BYTES: usize = 256 * 1024;

/// How long accepting pauses after an accept error the reserve descriptor
/// cannot cure.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections a listener accepts (or refuses) per wake-up. A flood of
/// connects keeps the backlog full: accepting until `WouldBlock` kept a
/// bystander's ECHO waiting 1.3 s while 87,000 refused connects came in
/// (debug build). The rest wait for the next wake-up, after every other
/// connection's turn.
const ACCEPTS_PER_WAKE: usize = 64;

/// Deliveries of `JOIN` lines a chat listener's accepts may queue in one
/// wake-up: with 3,000 members, 5 accepts. 64 accepts into a room of
/// 3,000 (192,000 deliveries, then 3,000 sockets to flush) made wake-ups
/// of 30-80 ms on the 2-core box under chat-silent.
const JOIN_FANOUT_PER_WAKE: usize = 16 * 1024;

/// Bytes one wake-up reads from all connections together. Past it, the
/// connections not yet read wait for the next wake-up (listed apart from
/// those that read their share, and served first then): whatever many
/// busy clients send at once, a wake-up's reading, parsing and writing
/// the replies stays a few milliseconds, and a quiet client's request
/// waits behind at most that much. 4 MiB made wake-ups of 20-50 ms on
/// the 2-core box under 500 pipelining clients (64-byte ECHO lines: read,
/// parsed and answered at ~100-200 MB/s there); one busy connection
/// reading 1 MiB per wake-up costs one more `epoll_wait` per MiB.
const WAKE_READ_BYTES: u64 = 1024 * 1024;

/// UDP socket `j` has token `FIRST_DATAGRAM + j`: far above any slab key,
/// far below the listeners.
const FIRST_DATAGRAM: usize = usize::MAX / 2;

/// Connections flushed between two polls of a long flush. A chat
/// receiver's write costs ~1.4 µs, so input waits at most ~90 µs for its
/// turn; the poll (~0.5 µs) adds under 1% to the flush.
const FLUSH_SLICE: usize = 64;

/// How many times tne's TCP and UDP sockets are bound again when the port
/// the OS picked for TCP (port 0) is taken for UDP.
const SAME_PORT_TRIES: usize = 8;

/// The most a chat connection is read at once: one read's lines, relayed,
/// stay within half of `--max-sendq` for each receiver. The worst case is
/// a 2-byte line ("a" LF) becoming `MSG <32-byte nick> a` LF, 39 bytes,
/// plus its slot in the receiver's queue.
fn chat_read_bytes(max_sendq: usize) -> usize {
    (max_sendq / (39 + SEGMENT_COST)).clamp(512, SCRATCH_BYTES)
}

/// The least a request/reply connection's turn reads, however many
/// connections share the wake-up's budget.
const TURN_BYTES_MIN: usize = 8 * 1024;

/// Each request/reply connection's share of a wake-up's read budget: the
/// budget over the connections that may read in it (those listed, and the
/// events), at least [`TURN_BYTES_MIN`]. One busy connection reads the
/// whole budget in one turn; when hundreds are busy, each reads a little,
/// so one pass over them stays within a wake-up or two and a client that
/// sends a line waits behind a few kilobytes of each, not megabytes.
fn turn_bytes(listed: usize, events: &Events) -> usize {
    let busy = listed + events.iter().count();
    (WAKE_READ_BYTES as usize / busy.max(1)).max(TURN_BYTES_MIN)
}

fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER - index)
}

fn datagram_token(index: usize) -> Token {
    Token(FIRST_DATAGRAM + index)
}

/// Binds tne's TCP listener and UDP socket on the same port number. With
/// port 0 the OS picks the TCP port; should that number be taken for UDP,
/// both are bound again.
fn bind_tne(addr: SocketAddr) -> io::Result<(Listener, DatagramEndpoint)> {
    let mut tries = 1;
    loop {
        let listener = Listener::bind(Protocol::Tne, addr)?;
        match DatagramEndpoint::bind(Protocol::Tne, listener.addr) {
            Ok(endpoint) => return Ok((listener, endpoint)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && tries < SAME_PORT_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Serves a socket systemd passed in: registers it and logs
/// `listening <protocol> <tcp|udp> <addr:port>` as if bound here.
fn adopt(
    socket: Passed,
    poll: &Poll,
    listeners: &mut Vec<Listener>,
    datagrams: &mut Vec<DatagramEndpoint>,
) -> Result<(), ServerError> {
    let protocol = socket.protocol();
    let addr = socket
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let bind_error = |source| ServerError::Bind {
        protocol,
        addr,
        source,
    };
    match socket {
        Passed::Tcp(_, socket) => {
            let mut listener = Listener {
                protocol,
                socket: mio::net::TcpListener::from_std(socket),
                addr,
                nodelay_inherited: false,
            };
            poll.registry()
                .register(
                    &mut listener.socket,
                    listener_token(listeners.len()),
                    Interest::READABLE,
                )
                .map_err(bind_error)?;
            log::info!("listening {protocol} tcp {addr} (from systemd)");
            listeners.push(listener);
        }
        Passed::Udp(_, socket) => {
            let socket = mio::net::UdpSocket::from_std(socket);
            datagrams.push(DatagramEndpoint::new(protocol, socket, addr));
        }
    }
    Ok(())
}

/// The server: its poll, listeners, connections and shared state.
pub struct Server {
    poll: Poll,
    listeners: Vec<Listener>,
    /// UDP sockets (tne's).
    datagrams: Vec<DatagramEndpoint>,
    /// UDP sockets that stopped on their per-wake-up budget: served again
    /// next wake-up without waiting for an event.
    datagrams_ready: Vec<usize>,
    /// Listeners that stopped on [`ACCEPTS_PER_WAKE`]: accepted from again
    /// next wake-up without waiting for an event.
    listeners_ready: Vec<usize>,
    conns: Slab<Conn>,
    shared: Shared,
    config: Config,
    timers: Timers,
    clock: Clock,
    signals: ShutdownSignals,
    reserve: ReserveFd,
    scratch: Box<[u8]>,
    /// The reply output lent to a request/reply connection for one turn
    /// (see [`Conn::borrow_replies`]): the write side's scratch. Always
    /// empty between turns; holds at most a spare-sized buffer.
    replies: Output,
    /// Connections to flush at the end of this wake-up.
    flush_list: Vec<usize>,
    /// Connections that stopped reading on the read budget, not on
    /// `WouldBlock`, or whose session wants another turn: read (or given
    /// their turn) again next wake-up without waiting for an event.
    still_ready: Vec<usize>,
    /// Connections whose event came after this wake-up's read budget was
    /// spent: they had no turn, so next wake-up they go first, before the
    /// new events and before `still_ready` (which had theirs).
    waiting: Vec<usize>,
    /// Bytes read in this wake-up, against [`WAKE_READ_BYTES`].
    wake_read: u64,
    /// The most a request/reply connection's turn reads in this wake-up
    /// (see [`turn_bytes`]).
    turn_bytes: usize,
    next_id: u64,
    /// Set once shutdown starts: when the drain grace ends.
    shutdown_at: Option<u64>,
    /// Set while accepting is paused after an error: when to try again.
    accept_paused_until: Option<u64>,
    /// Deliveries the cores asked for, routed after each call.
    effects: Vec<Effect>,
    /// Id to slab key of the connections that receive deliveries.
    index: ConnIndex,
    /// Receivers found over `--max-sendq` while routing.
    slow: Vec<usize>,
    /// Chat connections read in this wake-up: their read allowance
    /// ([`Conn::chat_read`]) is reset when it ends.
    chat_readers: Vec<usize>,
    /// The per-address limits, consulted at accept and told at close.
    admission: Admission,
    /// Connections refused at accept: counters, and their log line.
    refusals: RefusalLog,
    /// The loop's figures for the stats listener.
    metrics: Metrics,
    /// systemd's notify socket (`Type=notify`), if started by systemd.
    notifier: Option<Notifier>,
    /// When the next `STATUS=` (and `WATCHDOG=1`) is due.
    notify_at: Option<u64>,
    /// Every client buffer together against `--max-memory`
    /// (`buffered_bytes` and `limit` are there for the stats listener).
    pub memory: MemoryBudget,
    /// Connections to close for the memory budget (kept for reuse).
    victims: Vec<usize>,
    /// chat flood control (`--chat-rate`, `--chat-burst`).
    flood: FloodLimit,
}

impl Server {
    /// Prepares the upload directory if upload is served, binds every
    /// listener of `config` (tne: a TCP listener and a UDP socket on the
    /// same port number), installs the signal handlers and logs
    /// `listening <protocol> <tcp|udp> <addr:port>` for each.
    ///
    /// Started by systemd with sockets (`LISTEN_FDS`), it serves those
    /// instead, each for the protocol it is named after, and binds nothing.
    pub fn bind(mut config: Config) -> Result<Server, ServerError> {
        config.max_conns = limits::fit_max_conns(config.max_conns);
        trace::init();
        let sole = match config.listeners.as_slice() {
            [(protocol, _)] => Some(*protocol),
            _ => None,
        };
        let passed = systemd::passed_sockets(sole).map_err(ServerError::Activation)?;
        if !passed.is_empty() {
            config.listeners = passed
                .iter()
                .map(|s| (s.protocol(), s.local_addr().map_or(0, |a| a.port())))
                .collect();
            config.listeners.dedup();
        }
        let mut shared = Shared::new(&config);
        if config.listeners.iter().any(|(p, _)| *p == Protocol::Upload) {
            let store = upload_store::prepare(&config).map_err(ServerError::UploadDir)?;
            shared.upload.store = Box::new(store);
        }
        let poll = Poll::new().map_err(ServerError::Setup)?;
        let mut signals = ShutdownSignals::install().map_err(ServerError::Setup)?;
        signals
            .register(poll.registry(), SIGNAL_TOKEN)
            .map_err(ServerError::Setup)?;
        let mut listeners = Vec::new();
        let mut datagrams = Vec::new();
        let to_bind = if passed.is_empty() {
            config.listeners.as_slice()
        } else {
            &[]
        };
        for (index, &(protocol, port)) in to_bind.iter().enumerate() {
            let addr = SocketAddr::new(config.bind_addr(protocol), port);
            let bind_error = |source| ServerError::Bind {
                protocol,
                addr,
                source,
            };
            let mut listener = if protocol == Protocol::Tne {
                let (listener, endpoint) = bind_tne(addr).map_err(bind_error)?;
                datagrams.push(endpoint);
                listener
            } else {
                Listener::bind(protocol, addr).map_err(bind_error)?
            };
            poll.registry()
                .register(
                    &mut listener.socket,
                    listener_token(index),
                    Interest::READABLE,
                )
                .map_err(bind_error)?;
            log::info!("listening {} tcp {}", protocol, listener.addr);
            listeners.push(listener);
        }
        for socket in passed {
            adopt(socket, &poll, &mut listeners, &mut datagrams)?;
        }
        for (index, endpoint) in datagrams.iter_mut().enumerate() {
            let (protocol, addr) = (endpoint.protocol, endpoint.addr);
            let bind_error = |source| ServerError::Bind {
                protocol,
                addr,
                source,
            };
            endpoint
                .register(poll.registry(), datagram_token(index))
                .map_err(bind_error)?;
            log::info!("listening {} udp {}", endpoint.protocol, endpoint.addr);
        }
        let admission = Admission::new(
            config.exempt.clone(),
            config.max_conns_per_ip,
            config.conn_rate_per_ip,
        );
        let refusals = RefusalLog::new(RefusalLimits {
            max_conns: config.max_conns,
            max_conns_per_ip: config.max_conns_per_ip,
            conn_rate_per_ip: config.conn_rate_per_ip,
        });
        Ok(Server {
            poll,
            listeners,
            datagrams,
            datagrams_ready: Vec::new(),
            listeners_ready: Vec::new(),
            // Sized once: growing by reallocation leaves the old blocks
            // resident, which idle connections would pay for.
            conns: Slab::with_capacity(config.max_conns),
            timers: Timers::with_capacity(config.max_conns),
            shared,
            clock: Clock::new(),
            signals,
            reserve: ReserveFd::new(),
            scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
            replies: Output::new(),
            flush_list: Vec::new(),
            still_ready: Vec::new(),
            waiting: Vec::new(),
            wake_read: 0,
            turn_bytes: WAKE_READ_BYTES as usize,
            next_id: 1,
            shutdown_at: None,
            accept_paused_until: None,
            effects: Vec::new(),
            index: ConnIndex::default(),
            slow: Vec::new(),
            admission,
            refusals,
            chat_readers: Vec::new(),
            metrics: Metrics::new(),
            notifier: Notifier::from_env(),
            notify_at: None,
            memory: MemoryBudget::new(config.max_memory),
            victims: Vec::new(),
            flood: FloodLimit {
                rate: config.chat_rate,
                burst: config.chat_burst,
            },
            config,
        })
    }

    /// Each TCP listener's protocol and bound address (with the real port).
    pub fn local_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.listeners
            .iter()
            .map(|l| (l.protocol, l.addr))
            .collect()
    }

    /// Each UDP socket's protocol and bound address.
    pub fn local_udp_addrs(&self) -> Vec<(Protocol, SocketAddr)> {
        self.datagrams
            .iter()
            .map(|d| (d.protocol, d.addr))
            .collect()
    }

    /// Serves until a shutdown signal has been handled.
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        self.notify_tick(true);
        loop {
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
            self.wake_read = 0;
            self.turn_bytes = turn_bytes(self.waiting.len() + self.still_ready.len(), &events);
            // Those that had no turn last time go first, then the new
            // events, then those that read their share and may hold more.
            let backlog = self.still_ready.len();
            self.resume_waiting();
            for event in events.iter() {
                self.metrics.events += 1;
                self.dispatch(event);
            }
            self.resume_still_ready(backlog);
            self.resume_datagrams();
            self.resume_listeners();
            self.resume_accepting();
            self.fire_timers();
            self.report_refusals();
            self.flush_touched(&mut events);
            self.reset_chat_allowances();
            self.memory.housekeeping(self.clock.now, self.conns.len());
            if self.notify_at.is_some_and(|at| self.clock.now >= at) {
                self.notify_tick(false);
            }
            self.metrics.wakeups += 1;
            self.metrics.wakeup_duration.observe(woke.elapsed());
            if let Some(deadline) = self.shutdown_at {
                if self.conns.is_empty() {
                    #[cfg(feature = "fault-injection")]
                    super::faults::log_totals();
                    log::info!("shutdown complete");
                    return Ok(());
                }
                if self.clock.now >= deadline {
                    log::warn!(
                        "shutdown grace over: dropping {} connection(s) with replies unsent",
                        self.conns.len()
                    );
                    #[cfg(feature = "fault-injection")]
                    super::faults::log_totals();
                    return Ok(());
                }
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
        if !self.still_ready.is_empty()
            || !self.waiting.is_empty()
            || !self.datagrams_ready.is_empty()
            || !self.listeners_ready.is_empty()
        {
            return Some(Duration::ZERO);
        }
        [
            self.timers.next_at(),
            self.shutdown_at,
            self.accept_paused_until,
            self.refusals.next_report(),
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
            Token(t) if t > FIRST_LISTENER - self.listeners.len() && t <= FIRST_LISTENER => {
                self.accept_all(FIRST_LISTENER - t);
            }
            Token(t) if (FIRST_DATAGRAM..FIRST_DATAGRAM + self.datagrams.len()).contains(&t) => {
                self.serve_datagrams(t - FIRST_DATAGRAM);
            }
            Token(key) => self.on_conn_event(key, event),
        }
    }

    /// What `--trace` calls the owner of `token`: `signal`, `listener
    /// transform`, `udp tne`, `#3 transform 127.0.0.1:60500`.
    fn trace_name(&self, token: Token) -> String {
        let Token(t) = token;
        if token == SIGNAL_TOKEN {
            "signal".to_string()
        } else if let Some(l) = self.listeners.get(FIRST_LISTENER.wrapping_sub(t)) {
            format!("listener {}", l.protocol)
        } else if let Some(d) = self.datagrams.get(t.wrapping_sub(FIRST_DATAGRAM)) {
            format!("udp {}", d.protocol)
        } else if let Some(c) = self.conns.get(t) {
            format!("#{} {} {}", c.id, c.protocol(), c.peer)
        } else {
            format!("token {t}")
        }
    }

    /// Splits the loop into what one call into a connection needs: the
    /// read buffer, the slab, and the context lent to the cores.
    fn io_parts(&mut self) -> (&mut [u8], &mut Slab<Conn>, IoCx<'_>) {
        (
            &mut self.scratch,
            &mut self.conns,
            IoCx {
                shared: &mut self.shared,
                clock: &self.clock,
                draining: self.shutdown_at.is_some(),
                effects: &mut self.effects,
            },
        )
    }

    /// Routes the deliveries the last core call asked for, then ends every
    /// receiver that became a slow consumer (whose `on_close` may ask for
    /// more deliveries: route again until none is left). Called after every
    /// read, and most reads ask for none: that case is two loads, inlined.
    #[inline(always)]
    fn route(&mut self) {
        if !self.effects.is_empty() || !self.slow.is_empty() {
            self.route_pending();
        }
    }

    #[inline(never)]
    fn route_pending(&mut self) {
        // A stats session asks for reports only, and no other core does.
        if let Some(Effect::Report { .. }) = self.effects.first() {
            self.serve_reports();
        }
        while !self.effects.is_empty() || !self.slow.is_empty() {
            let mut sink = SlabSink {
                conns: &mut self.conns,
                index: &self.index,
                max_sendq: self.config.max_sendq,
                flush_list: &mut self.flush_list,
                slow: &mut self.slow,
                delivered: 0,
                memory: &mut self.memory,
            };
            effects::route(&mut self.effects, &self.shared, &mut sink);
            self.shared.counts.chat_deliveries += sink.delivered;
            let slow = std::mem::take(&mut self.slow);
            let max_sendq = self.config.max_sendq;
            for key in slow {
                let (_, conns, mut io) = self.io_parts();
                if let Some(conn) = conns.get_mut(key) {
                    log::info!(
                        "{} #{} from {}: unsent output passed --max-sendq {}; disconnecting",
                        conn.protocol(),
                        conn.id,
                        conn.peer,
                        max_sendq
                    );
                    // Over the limit is the reason it goes, even if it was
                    // already closing (a backlog behind its `/quit`).
                    conn.reason = Some(CloseReason::SendqExceeded);
                    conn.end_session(&mut io, CloseReason::SendqExceeded);
                    conn.kill();
                }
                self.queue_flush(key);
            }
        }
    }

    /// Renders the reports the stats session asked for into its output,
    /// in order (see [`crate::proto::stats`]).
    #[cold]
    fn serve_reports(&mut self) {
        let udp_requests = self.datagrams.iter().map(|d| d.counts.received).sum();
        let udp_dropped = self.datagrams.iter().map(|d| d.counts.dropped).sum();
        self.metrics.buffered_bytes = self.memory.buffered_bytes as u64;
        self.metrics.memory_limit = self.memory.limit as u64;
        for effect in std::mem::take(&mut self.effects) {
            let Effect::Report { to, report } = effect else {
                self.effects.push(effect);
                continue;
            };
            let view = View {
                metrics: &self.metrics,
                shared: &self.shared,
                conns: &self.conns,
                config: &self.config,
                udp_requests,
                udp_dropped,
                now: self.clock.now,
            };
            let bytes = stats::render(report, &view);
            if let Some((_, conn)) = self.conns.iter_mut().find(|(_, c)| c.id == to) {
                conn.put_report(&bytes);
            }
        }
    }

    fn on_conn_event(&mut self, key: usize, event: &Event) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_read_closed() || event.is_error() {
            conn.note_fin();
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.note_writable();
        }
        // A listed connection is read in its list's turn, not sooner.
        if (event.is_readable() || event.is_read_closed() || event.is_error()) && !conn.still_ready
        {
            let lent = conn.borrow_replies(&mut self.replies);
            self.pump(key);
            if let Some(conn) = self.conns.get_mut(key) {
                conn.flush_replies(
                    &self.clock,
                    &mut self.shared.counts,
                    lent.then_some(&mut self.replies),
                );
            }
            self.account(key);
        }
        self.queue_flush(key);
    }

    /// Counts connection `key` in the memory budget again after its turn
    /// (its deliveries to others were counted as they were queued); if the
    /// total is over `--max-memory`, closes the biggest holders.
    #[inline]
    fn account(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            self.memory.recount(conn);
        }
        if self.memory.over() {
            self.enforce_memory();
        }
    }

    /// The total passed `--max-memory`: closes the connections holding the
    /// most until it is back under 90% (see `server::memory_budget`). Each
    /// is ended at once, its buffers freed; the `LEAVE NICK memory limit`
    /// lines of the chat clients closed together go to the others as one
    /// message (one queue slot each, not one per client closed), and if
    /// they push the total over again, the next biggest go too.
    #[inline(never)]
    fn enforce_memory(&mut self) {
        while self.memory.over() {
            let mut victims = std::mem::take(&mut self.victims);
            victims.clear();
            let members = self.shared.chat.room.len();
            self.memory.pick_biggest(&self.conns, members, &mut victims);
            if victims.is_empty() {
                self.victims = victims;
                return;
            }
            for &key in &victims {
                let now = self.clock.now;
                let (total, limit) = (self.memory.buffered_bytes, self.memory.limit);
                let log_it = self.memory.note_closed(now);
                let (_, conns, mut io) = self.io_parts();
                let Some(conn) = conns.get_mut(key) else {
                    continue;
                };
                if log_it {
                    log::warn!(
                        "{} #{} from {} holds {} bytes; all client buffers ({total}) passed --max-memory {limit}: closing it",
                        conn.protocol(),
                        conn.id,
                        conn.peer,
                        conn.charged,
                    );
                }
                conn.reason = Some(CloseReason::MemoryLimit);
                conn.end_session(&mut io, CloseReason::MemoryLimit);
                conn.kill();
                conn.discard_buffers();
                if let Some(conn) = self.conns.get_mut(key) {
                    self.memory.recount(conn);
                }
                self.queue_flush(key);
            }
            // Every one of them is dead, so none receives the others'
            // LEAVE: one `except` for all lets routing join them.
            if let Some(first) = victims.first().and_then(|&k| self.conns.get(k)) {
                let id = first.id;
                for effect in &mut self.effects {
                    if let Effect::Broadcast { except, .. } = effect {
                        *except = id;
                    }
                }
            }
            self.victims = victims;
            self.route();
        }
    }

    /// Reads connection `key` within its per-wake-up budget, routing
    /// deliveries after each read; remembers it if it may have more.
    ///
    /// A chat connection gets one read per event, and at most
    /// [`chat_read_bytes`] in all per wake-up: what it says reaches every
    /// receiver's queue at once, and only the flush at the end of the
    /// wake-up writes those queues to the sockets. So a sender pasting
    /// megabytes is read at the pace the room is flushed, and a receiver
    /// that keeps reading never has more than half of `--max-sendq` queued
    /// by one sender between two of its flushes, instead of being dropped
    /// for the sender's burst.
    fn pump(&mut self, key: usize) {
        // What closes left to route goes out before this core call's own.
        self.route();
        if self.wake_read >= WAKE_READ_BYTES {
            // This wake-up has read its share: next wake-up, first.
            self.mark_waiting(key);
            return;
        }
        let max_sendq = self.config.max_sendq;
        let paced = self.flood.enabled();
        let (reads, read_len, chat) = match self.conns.get(key) {
            Some(conn) if !conn.protocol().is_request_reply() => {
                if paced && !self.pace(key) {
                    return;
                }
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                let allowance = chat_read_bytes(max_sendq);
                let left = allowance.saturating_sub(conn.chat_read() as usize);
                if left == 0 {
                    // Spent in this wake-up: read on in the next.
                    self.mark_still_ready(key);
                    return;
                }
                (1, left, true)
            }
            _ => {
                // A turn reads its share of the wake-up's budget, and no
                // more than the wake-up has left.
                let left = WAKE_READ_BYTES.saturating_sub(self.wake_read) as usize;
                let turn = self.turn_bytes.min(left).max(TURN_BYTES_MIN);
                let reads = turn.div_ceil(SCRATCH_BYTES).clamp(1, READS_PER_WAKE);
                (reads, turn.min(SCRATCH_BYTES), false)
            }
        };
        let protocol = self.conns.get(key).map(Conn::protocol);
        let read_before = protocol.map_or(0, |p| self.shared.counts.received_by(p));
        let more = self.read_turn(key, reads, read_len);
        let read_after = protocol.map_or(0, |p| self.shared.counts.received_by(p));
        self.wake_read += read_after - read_before;
        if chat && paced && !self.paced(key) {
            // Out of tokens: the refill deadline reads it again.
            return;
        }
        if more {
            self.mark_still_ready(key);
        }
    }

    /// Chat flood control before a read: credits the client's tokens and
    /// lets the core consume that many lines, first from the input carried
    /// since flood control last stopped it. Returns whether to read the
    /// socket now; if not, the refill deadline is armed.
    #[inline(never)]
    fn pace(&mut self, key: usize) -> bool {
        let (limit, now, max_sendq) = (self.flood, self.clock.now, self.config.max_sendq);
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.phase != Phase::Open {
            return true;
        }
        let mut bucket = conn.flood_bucket();
        bucket.refill(limit, now);
        conn.set_flood_bucket(bucket);
        if bucket.tokens == 0 {
            // Waiting for the deadline armed when the last token went.
            return false;
        }
        if !conn.has_carry() {
            return true;
        }
        let (_, conns, mut io) = self.io_parts();
        if let Some(conn) = conns.get_mut(key) {
            conn.feed_carried(&mut io);
            if conn.sendq() > max_sendq && !conn.kill_pending {
                conn.kill_pending = true;
                self.slow.push(key);
            }
        }
        self.route();
        self.paced(key)
    }

    /// Chat flood control after the core consumed lines (each took one of
    /// the tokens it was allowed). Returns whether any are left; if none,
    /// arms the refill deadline: once per time the tokens run out, as
    /// only consuming lines spends them (a deadline left over from an
    /// earlier time only reads the client once more, harmlessly).
    fn paced(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.phase != Phase::Open || conn.flood_bucket().tokens > 0 {
            return true;
        }
        self.arm_refill(key);
        false
    }

    /// Arms the deadline at which the chat client `key` earns its next
    /// token and is read again.
    fn arm_refill(&mut self, key: usize) {
        let limit = self.flood;
        if let Some(conn) = self.conns.get_mut(key) {
            let at = conn.flood_bucket().next_token_at(limit, self.clock.now);
            self.timers.arm(at, key, conn.id, TimerKind::ChatRefill);
        }
    }

    /// Up to `reads` reads of `read_len` bytes at most from connection
    /// `key`, routing deliveries after each. Returns whether the socket may
    /// hold more (the read budget ran out first).
    #[inline(always)]
    fn read_turn(&mut self, key: usize, reads: usize, read_len: usize) -> bool {
        let max_sendq = self.config.max_sendq;
        for _ in 0..reads {
            let (scratch, conns, mut io) = self.io_parts();
            let Some(conn) = conns.get_mut(key) else {
                return false;
            };
            let len = read_len.min(scratch.len());
            let (scratch, _) = scratch.split_at_mut(len);
            let read_before = conn.chat_read();
            let step = conn.read_once(scratch, &mut io);
            let first_read = read_before == 0 && conn.chat_read() > 0;
            if !conn.protocol().is_request_reply() && conn.sendq() > max_sendq && !conn.kill_pending
            {
                // Its own replies (a client that asks and never reads).
                conn.kill_pending = true;
                self.slow.push(key);
            }
            if first_read {
                self.chat_readers.push(key);
            }
            self.route();
            match step {
                ReadStep::More => {}
                ReadStep::Stop(ReadStop::Budget) => break,
                ReadStep::Stop(_) => return false,
            }
        }
        true
    }

    fn queue_flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.queued {
                conn.queued = true;
                self.flush_list.push(key);
            }
        }
    }

    /// Lists `key` to be read again next wake-up, once: a connection that
    /// spends its budget and gets another event in the same wake-up must
    /// not earn a second share.
    fn mark_still_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.still_ready {
                conn.still_ready = true;
                self.still_ready.push(key);
            }
        }
    }

    /// Lists `key` to be read first next wake-up, once: its event came
    /// after this wake-up's read budget was spent.
    fn mark_waiting(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.still_ready {
                conn.still_ready = true;
                self.waiting.push(key);
            }
        }
    }

    /// Gives their turn to the connections whose event found last wake-up's
    /// read budget spent, in the order they came, while the budget lasts.
    fn resume_waiting(&mut self) {
        let listed = self.waiting.len();
        let mut walked = 0;
        while let Some(&key) = self.waiting.get(walked).filter(|_| walked < listed) {
            if self.wake_read >= WAKE_READ_BYTES {
                break;
            }
            self.resume_one(key);
            walked += 1;
        }
        // Those not reached keep their place, ahead of any listed since.
        self.waiting.drain(..walked);
    }

    /// Reads again the first `listed` connections of `still_ready` (those
    /// listed before this wake-up), while the read budget lasts, and at
    /// least one read's worth for the first of them even when the new
    /// events spent it: a stream of fresh events cannot starve them. One
    /// that spends its share again is listed anew, at the end; those not
    /// reached keep their place at the front, so every listed connection
    /// gets its turn before any gets a second. (The list is walked in
    /// place, not taken, so it keeps its capacity: no wake-up allocates
    /// it.)
    fn resume_still_ready(&mut self, listed: usize) {
        if listed > 0 && self.wake_read >= WAKE_READ_BYTES {
            self.wake_read = WAKE_READ_BYTES - SCRATCH_BYTES as u64;
        }
        let mut walked = 0;
        while let Some(&key) = self.still_ready.get(walked).filter(|_| walked < listed) {
            if self.wake_read >= WAKE_READ_BYTES {
                break;
            }
            self.resume_one(key);
            walked += 1;
        }
        self.still_ready.drain(..walked);
    }

    /// One listed connection's turn: read (or its session's own work),
    /// accounted and flushed at the end of the wake-up.
    fn resume_one(&mut self, key: usize) {
        let _trace = trace::Scope::step("resume", || self.trace_name(Token(key)));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.still_ready = false;
        }
        self.pump(key);
        self.account(key);
        self.queue_flush(key);
    }

    /// Answers the datagrams waiting on UDP socket `index` (and sends the
    /// replies it had queued), then makes its interest match its queue.
    fn serve_datagrams(&mut self, index: usize) {
        if self.shutdown_at.is_some() {
            return;
        }
        let Some(endpoint) = self.datagrams.get_mut(index) else {
            return;
        };
        let max_line = self.shared.tne.max_line;
        let cut_before = endpoint.counts.cut;
        let stop = endpoint.serve(&mut self.scratch, max_line);
        self.shared.counts.udp_replies_cut += endpoint.counts.cut - cut_before;
        if stop == DatagramStop::Budget && !self.datagrams_ready.contains(&index) {
            self.datagrams_ready.push(index);
        }
        if let Err(e) = endpoint.settle(self.poll.registry(), datagram_token(index)) {
            let dropped = endpoint.discard_pending();
            log::warn!(
                "{} udp {}: reregister: {e}; dropped {dropped} queued replies",
                endpoint.protocol,
                endpoint.addr
            );
        }
    }

    fn resume_datagrams(&mut self) {
        for index in std::mem::take(&mut self.datagrams_ready) {
            let _trace = trace::Scope::step("resume", || self.trace_name(datagram_token(index)));
            self.serve_datagrams(index);
        }
    }

    /// Accepts on listener `index` until `WouldBlock`, or until
    /// [`ACCEPTS_PER_WAKE`] connections were taken (or shed): then it is
    /// listed to go on next wake-up.
    fn accept_all(&mut self, index: usize) {
        if self.shutdown_at.is_some() || self.accept_paused_until.is_some() {
            return;
        }
        // Each chat client accepted is a JOIN queued to every member: take
        // as many as make JOIN_FANOUT_PER_WAKE deliveries (one at least).
        let accepts = match self.listeners.get(index) {
            Some(l) if l.protocol == Protocol::Chat => (JOIN_FANOUT_PER_WAKE
                / self.shared.chat.room.len().max(1))
            .clamp(1, ACCEPTS_PER_WAKE),
            _ => ACCEPTS_PER_WAKE,
        };
        for _ in 0..accepts {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            let (protocol, nodelay) = (listener.protocol, listener.nodelay_inherited);
            match listener.accept() {
                Ok((stream, peer)) => self.admit(protocol, stream, peer, nodelay),
                Err(e) => match AcceptError::classify(&e) {
                    AcceptError::WouldBlock => return trace::accept_would_block(),
                    AcceptError::Interrupted | AcceptError::PeerGone => {}
                    AcceptError::OutOfDescriptors => {
                        match self.reserve.shed_one(&listener.socket) {
                            Shed::Refused => {
                                let reason = RefusalReason::Descriptors;
                                self.metrics.refused(protocol, reason);
                                self.refusals.note(reason, None, self.clock.now);
                                self.report_refusals();
                            }
                            Shed::BacklogEmpty => return,
                            Shed::NoSpare => {
                                self.pause_accepting(&e);
                                return;
                            }
                        }
                    }
                    AcceptError::Other => {
                        self.pause_accepting(&e);
                        return;
                    }
                },
            }
        }
        if !self.listeners_ready.contains(&index) {
            self.listeners_ready.push(index);
        }
    }

    /// Accepts again on the listeners that stopped on their budget last
    /// wake-up.
    fn resume_listeners(&mut self) {
        if self.listeners_ready.is_empty() {
            return;
        }
        for index in std::mem::take(&mut self.listeners_ready) {
            let _trace = trace::Scope::step("resume", || self.trace_name(listener_token(index)));
            self.accept_all(index);
        }
    }

    fn pause_accepting(&mut self, e: &io::Error) {
        log::warn!("accept failed ({e}); pausing accepts for {ACCEPT_PAUSE:?}");
        self.accept_paused_until = Some(self.clock.after(ACCEPT_PAUSE));
    }

    fn resume_accepting(&mut self) {
        if let Some(at) = self.accept_paused_until {
            if self.clock.now >= at {
                self.accept_paused_until = None;
                for index in 0..self.listeners.len() {
                    let _trace =
                        trace::Scope::step("resume", || self.trace_name(listener_token(index)));
                    self.accept_all(index);
                }
            }
        }
    }

    /// Takes in an accepted connection (`nodelay`: the socket already has
    /// TCP_NODELAY from its listener).
    ///
    /// Refused at once, with the protocol's line where it has text:
    /// `--max-conns` open in all (`server full`), then the per-address
    /// limits ([`Admission`]: one hash lookup, none for an exempt
    /// address). An admitted connection is counted against its address
    /// until [`close`](Server::close).
    fn admit(&mut self, protocol: Protocol, stream: TcpStream, peer: SocketAddr, nodelay: bool) {
        if self.conns.len() >= self.config.max_conns {
            let reply = protocol.server_full_reply();
            return self.refuse(protocol, RefusalReason::ServerFull, stream, peer, reply);
        }
        if let Err(why) = self.admission.admit(peer.ip(), self.clock.now) {
            let reason = match why {
                Refusal::PerAddress => RefusalReason::PerIp,
                Refusal::Rate => RefusalReason::Rate,
            };
            let reply = protocol.too_many_from_address_reply();
            return self.refuse(protocol, reason, stream, peer, reply);
        }
        if !nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("TCP_NODELAY on {peer}: {e}");
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let session = AnySession::new(protocol, &mut self.shared);
        let mut conn = Conn::new(stream, peer, id, session, self.clock.now);
        if protocol == Protocol::Chat && self.flood.enabled() {
            conn.set_flood_bucket(TokenBucket::full(self.flood, self.clock.now));
        }
        if let Err(e) = conn.register(self.poll.registry(), Token(key)) {
            log::warn!("cannot register connection from {peer}: {e}");
            self.admission.release(peer.ip(), self.clock.now);
            return;
        }
        entry.insert(conn);
        self.metrics.opened(protocol);
        trace::accepted();
        log::info!("open {protocol} #{id} from {peer}");
        if !protocol.is_request_reply() {
            self.index.insert(id, key);
        }
        let (_, conns, mut io) = self.io_parts();
        if let Some(conn) = conns.get_mut(key) {
            conn.open_session(&mut io);
        }
        self.route();
        self.account(key);
        self.queue_flush(key);
        if let Some(idle) = self.config.idle_timeout {
            self.timers
                .arm(self.clock.after(idle), key, id, TimerKind::Idle);
        }
    }

    /// Closes a connection refused at accept (after `reply`, if any) and
    /// counts it; the count is logged once a second at most.
    fn refuse(
        &mut self,
        protocol: Protocol,
        reason: RefusalReason,
        stream: TcpStream,
        peer: SocketAddr,
        reply: &[u8],
    ) {
        Conn::refuse(stream, reply, &mut self.scratch);
        self.metrics.refused(protocol, reason);
        let ip = admission::canonical(peer.ip());
        self.refusals.note(reason, Some(ip), self.clock.now);
        self.report_refusals();
    }

    /// Logs the refusals not yet reported, if their line is due (see
    /// [`RefusalLog`]): a warning, so `-q` still shows it.
    fn report_refusals(&mut self) {
        if let Some(report) = self.refusals.report(self.clock.now, self.conns.len()) {
            log::warn!("{report}");
        }
    }

    fn fire_timers(&mut self) {
        while let Some(due) = self.timers.pop_due(self.clock.now) {
            let _trace = trace::Scope::step("timer", || self.trace_name(Token(due.key())));
            let Some(conn) = self.conns.get_mut(due.key()) else {
                continue;
            };
            if conn.id != due.id {
                continue;
            }
            match due.kind {
                TimerKind::Idle => {
                    let Some(idle) = self.config.idle_timeout else {
                        continue;
                    };
                    let deadline = conn.last_active.saturating_add(millis(idle));
                    if deadline > self.clock.now {
                        self.timers
                            .arm(deadline, due.key(), due.id, TimerKind::Idle);
                        continue;
                    }
                    if conn.phase == Phase::Open {
                        log::debug!("idle timeout on #{} {}", conn.id, conn.peer);
                        let (_, conns, mut io) = self.io_parts();
                        if let Some(conn) = conns.get_mut(due.key()) {
                            conn.end_session(&mut io, CloseReason::IdleTimeout);
                        }
                        self.route();
                    }
                }
                TimerKind::ChatRefill => {
                    self.pump(due.key());
                    self.account(due.key());
                }
                TimerKind::CloseGrace => {
                    log::debug!(
                        "#{} {}: close grace over, dropping {} unsent byte(s)",
                        conn.id,
                        conn.peer,
                        conn.pending_output()
                    );
                    conn.kill();
                }
            }
            self.queue_flush(due.key());
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        log::info!(
            "shutting down: {} connection(s) open, up to {SHUTDOWN_GRACE:?} for their replies",
            self.conns.len()
        );
        self.shutdown_at = Some(self.clock.after(SHUTDOWN_GRACE));
        if let Some(notifier) = &self.notifier {
            notifier.notify(&format!(
                "STOPPING=1\nSTATUS=shutting down, {} connection(s) open",
                self.conns.len()
            ));
        }
        trace::shutdown();
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        // A UDP socket has no connection to drain: it sends the replies it
        // holds if the kernel takes them now, and closes.
        self.datagrams_ready.clear();
        self.listeners_ready.clear();
        for mut endpoint in self.datagrams.drain(..) {
            if endpoint.counts.cut > 0 {
                log::info!(
                    "{} udp {}: {} error replies cut to 3x their datagram",
                    endpoint.protocol,
                    endpoint.addr,
                    endpoint.counts.cut
                );
            }
            endpoint.flush();
            let dropped = endpoint.discard_pending();
            if dropped > 0 {
                log::warn!(
                    "{} udp {}: {dropped} queued replies dropped at shutdown",
                    endpoint.protocol,
                    endpoint.addr
                );
            }
            endpoint.deregister(self.poll.registry());
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let (_, conns, mut io) = self.io_parts();
            if let Some(conn) = conns.get_mut(key) {
                conn.begin_shutdown(&mut io);
            }
            self.route();
            // What the kernel already holds counts as received: read it,
            // stopping at the first message boundary.
            self.pump(key);
            if let Some(conn) = self.conns.get_mut(key) {
                // Unless the kernel may hold more (the read budget ran
                // out, or a read was cut short): the read path stops it
                // once the socket is drained.
                if !conn.still_ready {
                    conn.stop_if_between_messages();
                }
            }
            self.queue_flush(key);
        }
    }

    /// Flushes every connection touched in this wake-up, settles its
    /// interest, arms close deadlines and removes finished connections.
    ///
    /// Every [`FLUSH_SLICE`] connections of those listed when it began, it
    /// polls without waiting and handles what arrived: a receiver not yet
    /// flushed takes the new input in the write it was going to make
    /// anyway. Those already flushed, and those a close delivers to (chat's
    /// LEAVE), join the end of the list and are flushed in this same
    /// wake-up, with no more polls: the walk ends, and timers and budgeted
    /// reads get their turn.
    fn flush_touched(&mut self, events: &mut Events) {
        // Walked in place, the list keeps its capacity: no wake-up
        // allocates it.
        let listed = self.flush_list.len();
        let mut i = 0;
        loop {
            while let Some(&key) = self.flush_list.get(i) {
                self.flush_one(key);
                i += 1;
                if i % FLUSH_SLICE == 0 && i < listed {
                    self.poll_between_slices(events);
                }
            }
            if self.effects.is_empty() && self.slow.is_empty() {
                break;
            }
            // The `LEAVE` lines of those closed in the walk, joined: their
            // receivers join the list and are flushed in this walk.
            self.route();
        }
        self.flush_list.clear();
    }

    /// Polls without waiting in the middle of a long flush and handles the
    /// events, as step 4 of a wake-up does. A failing poll is left for the
    /// wake-up's own poll to report.
    fn poll_between_slices(&mut self, events: &mut Events) {
        if self.poll.poll(events, Some(Duration::ZERO)).is_err() {
            return;
        }
        self.clock.tick();
        for event in events.iter() {
            self.metrics.events += 1;
            self.dispatch(event);
        }
    }

    /// Gives the chat connections read in this wake-up their whole read
    /// allowance back for the next one.
    fn reset_chat_allowances(&mut self) {
        for key in self.chat_readers.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.reset_chat_read();
            }
        }
    }

    fn flush_one(&mut self, key: usize) {
        let _trace = trace::Scope::step("flush", || self.trace_name(Token(key)));
        let registry: &Registry = self.poll.registry();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.queued = false;
        if conn.phase != Phase::Dead {
            conn.flush(&self.clock, &mut self.shared.counts);
        }
        let resume = conn.phase != Phase::Dead && conn.settle(registry, Token(key));
        self.memory.recount(conn);
        match conn.phase {
            Phase::Dead => return self.close(key),
            Phase::Flushing | Phase::Lingering if !conn.grace_armed => {
                conn.grace_armed = true;
                let at = self.clock.after(CLOSE_GRACE);
                self.timers.arm(at, key, conn.id, TimerKind::CloseGrace);
            }
            _ => {}
        }
        // A write the I/O seam cut short (fault injection only) will
        // raise no WRITABLE edge: serve the connection again next wake-up.
        if resume || conn.take_pending() {
            self.mark_still_ready(key);
        }
    }

    /// Ends the session (if not already), routes its last deliveries, and
    /// removes the connection; dropping it closes the socket.
    fn close(&mut self, key: usize) {
        let (_, conns, mut io) = self.io_parts();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let reason = conn.final_reason();
        let before = io.effects.len();
        conn.end_session(&mut io, reason);
        // Its `LEAVE` waits for the next routing (before the next core
        // call, or at the end of the flush) and leaves out nobody: the
        // closed member has left the room. So the `LEAVE` lines of members
        // closed one after another (a thousand clients gone at once) join
        // into one message, one queue slot per remaining member, instead
        // of one slot per member per `LEAVE`: N²/2 slots for N members.
        for effect in io.effects.iter_mut().skip(before) {
            if let Effect::Broadcast { except, .. } = effect {
                *except = NOBODY;
            }
        }
        let conn = self.conns.remove(key);
        self.memory.forget(&conn);
        self.index.remove(conn.id);
        self.admission.release(conn.peer.ip(), self.clock.now);
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers
                .retain_live(|key, id| conns.get(key).is_some_and(|c| c.id == id));
        }
        let how = Closed::of(conn.final_reason());
        self.metrics.closed(conn.protocol(), how);
        // No epoll_ctl(DEL): closing the descriptor (dropping `conn`)
        // removes it from the epoll set, one syscall fewer per connection.
        trace::closed(conn.final_reason());
        log::info!(
            "close {} #{} from {} ({})",
            conn.protocol(),
            conn.id,
            conn.peer,
            conn.final_reason().as_str()
        );
    }
}
