//! Attacks that open connections and hold them, reading nothing and
//! sending nothing: chat-silent (many addresses, chat: every JOIN goes to
//! every member, and nobody reads) and slots (one address taking every
//! connection slot it can). At the end the kernel's TCP state tells which
//! ones the server closed, without reading what it sent.

use std::io;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::net::{self, Sources, StateCount};
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// Connects started per turn of the opening loop.
const BATCH: usize = 200;

/// Many connections, opened and then held.
#[derive(Debug, Default)]
pub struct Flock {
    /// Every socket whose connect started (failed ones are dropped and
    /// left as `None`).
    pub socks: Vec<Option<TcpStream>>,
    /// Connected so far.
    pub connected: usize,
    /// Connects that failed (at once or later).
    pub failed: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// When every connect had finished, counted from the start.
    pub settled_in: Option<Duration>,
}

impl Flock {
    fn fail(&mut self, e: &io::Error) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// The state of every socket still held, after a probe (see
    /// [`net::probe_states`]).
    pub fn states(&mut self) -> StateCount {
        net::probe_states(self.socks.iter_mut().flatten())
    }

    /// `, N failed (first: why)` or nothing.
    pub fn failures(&self) -> String {
        match (&self.first_error, self.failed) {
            (_, 0) => String::new(),
            (Some(why), n) => format!(", {n} failed to connect (first: {why})"),
            (None, n) => format!(", {n} failed to connect"),
        }
    }
}

/// Opens `n` connections to `dst` from `sources` as fast as the loop can,
/// then holds them until `deadline`; returns them still open.
pub fn open_and_hold(
    dst: SocketAddrV4,
    n: usize,
    sources: &mut Sources,
    deadline: Instant,
) -> Result<Flock, AttackError> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut flock = Flock::default();
    let mut pending = vec![false; 0];
    let start = Instant::now();
    let mut n = n;
    while Instant::now() < deadline {
        let mut started = 0;
        while flock.socks.len() < n && started < BATCH {
            started += 1;
            match net::connect_from(sources.next_addr(), dst) {
                Ok(mut sock) => {
                    let token = Token(flock.socks.len());
                    poll.registry()
                        .register(&mut sock, token, Interest::WRITABLE)?;
                    flock.socks.push(Some(sock));
                    pending.push(true);
                }
                Err(e) => {
                    // Out of descriptors or ports: this is as many as it
                    // can open.
                    flock.fail(&e);
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        n = flock.socks.len();
                    }
                }
            }
        }
        let opening = flock.socks.len() < n;
        let cap = if opening {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        };
        poll.poll(&mut events, Some(left(deadline, cap)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let (Some(slot), Some(p)) = (flock.socks.get_mut(i), pending.get_mut(i)) else {
                continue;
            };
            let Some(sock) = slot.as_ref() else { continue };
            if !*p {
                continue;
            }
            match net::connected(sock) {
                Ok(true) => {
                    *p = false;
                    flock.connected += 1;
                }
                Ok(false) => {}
                Err(e) => {
                    *p = false;
                    *slot = None;
                    flock.fail(&e);
                }
            }
        }
        if flock.settled_in.is_none() && !opening && flock.connected + flock.failed >= n {
            flock.settled_in = Some(start.elapsed());
        }
    }
    Ok(flock)
}

fn settled(flock: &Flock) -> String {
    match flock.settled_in {
        Some(t) => format!("in {:.2} s", t.as_secs_f64()),
        None => "(not all by the end)".to_owned(),
    }
}

/// chat-silent: `--conns` chat connections from `--per-addr` per address,
/// sending nothing, reading nothing, held for `--duration`.
pub fn chat_silent(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let mut sources = Sources::new(config.source, config.per_addr);
    let mut flock = open_and_hold(
        config.addr(Protocol::Chat),
        config.conns,
        &mut sources,
        deadline,
    )?;
    let s = flock.states();
    Ok(Outcome::new(format!(
        "{} silent chat connections from {} address(es): {} connected {}{}; at the end {} open, {} closed by the server, {} still connecting",
        config.conns,
        sources.addresses,
        flock.connected,
        settled(&flock),
        flock.failures(),
        s.open,
        s.closed,
        s.connecting
    )))
}

/// slots: one address opens `--conns` cmd connections and holds them.
pub fn slots(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let mut sources = Sources::new(config.source, usize::MAX);
    let mut flock = open_and_hold(
        config.addr(Protocol::Cmd),
        config.conns,
        &mut sources,
        deadline,
    )?;
    let s = flock.states();
    Ok(Outcome::new(format!(
        "one address, {} cmd connections asked: {} connected {}{}; held at the end {}, closed by the server {}, still connecting {}",
        config.conns,
        flock.connected,
        settled(&flock),
        flock.failures(),
        s.open,
        s.closed,
        s.connecting
    )))
}
