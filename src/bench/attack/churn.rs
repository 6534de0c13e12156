//! Attacks that connect and close as fast as they can from one address:
//! chat-churn (into a room of members who read everything: each churn is
//! a JOIN and a LEAVE to every one of them) and log-flood (after holding
//! more connections than `--max-conns-per-ip` allows, so that every
//! further connect is one the server refuses; the figure is how much its
//! log grows). Closes are abortive (RST), so a churn never runs out of
//! ports to TIME_WAIT.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use super::hold;
use super::net::{self, Sources};
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// Connects in flight at once.
const IN_FLIGHT: usize = 16;

/// Connect, close, again, from one address, `IN_FLIGHT` at a time.
#[derive(Debug)]
struct Churner {
    src: Ipv4Addr,
    dst: SocketAddrV4,
    base: usize,
    slots: Vec<Option<TcpStream>>,
    limit: u64,
    started: u64,
    connects: u64,
    failed: u64,
    first_error: Option<String>,
}

impl Churner {
    fn new(src: Ipv4Addr, dst: SocketAddrV4, base: usize, limit: u64) -> Churner {
        Churner {
            src,
            dst,
            base,
            slots: (0..IN_FLIGHT).map(|_| None).collect(),
            limit,
            started: 0,
            connects: 0,
            failed: 0,
            first_error: None,
        }
    }

    fn fail(&mut self, e: &io::Error) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Fills every empty slot with a new connect (within the limit).
    fn refill(&mut self, registry: &Registry) -> io::Result<()> {
        for i in 0..self.slots.len() {
            if self.started >= self.limit {
                break;
            }
            let Some(slot) = self.slots.get_mut(i) else {
                break;
            };
            if slot.is_some() {
                continue;
            }
            self.started += 1;
            match net::connect_from(self.src, self.dst) {
                Ok(mut sock) => {
                    registry.register(&mut sock, Token(self.base + i), Interest::WRITABLE)?;
                    *slot = Some(sock);
                }
                Err(e) => {
                    self.fail(&e);
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles an event for token `t` if it is one of ours: a finished
    /// connect is closed at once.
    fn on_event(&mut self, t: usize) -> bool {
        let Some(slot) = t.checked_sub(self.base).and_then(|i| self.slots.get_mut(i)) else {
            return false;
        };
        let Some(sock) = slot.as_ref() else {
            return true;
        };
        match net::connected(sock) {
            Ok(true) => {
                let _ = net::set_abortive(sock);
                *slot = None;
                self.connects += 1;
            }
            Ok(false) => {}
            Err(e) => {
                *slot = None;
                self.fail(&e);
            }
        }
        true
    }

    fn is_done(&self) -> bool {
        self.started >= self.limit && self.slots.iter().all(Option::is_none)
    }

    fn failures(&self) -> String {
        match (&self.first_error, self.failed) {
            (_, 0) => String::new(),
            (Some(why), n) => format!(", {n} failed (first: {why})"),
            (None, n) => format!(", {n} failed"),
        }
    }
}

/// A room member: reads and discards all it gets.
fn drain(sock: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match sock.read(buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn next_ip(ip: Ipv4Addr) -> Ipv4Addr {
    let next = Ipv4Addr::from(u32::from(ip).wrapping_add(1));
    if next.is_loopback() {
        next
    } else {
        Ipv4Addr::new(127, 0, 0, 2)
    }
}

/// chat-churn: `--room` members (from `--per-addr` per address, starting
/// after `--source`) who read everything, then one address (`--source`)
/// connecting and closing as fast as it can until `--duration` or
/// `--count` connects.
pub fn chat_churn(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Chat);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sources = Sources::new(next_ip(config.source), config.per_addr);
    let mut members: Vec<Option<TcpStream>> = Vec::with_capacity(config.room);
    let mut connected = vec![false; config.room];
    let mut joined = 0usize;
    let mut dropped = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..config.room {
        let mut sock = net::connect_from(sources.next_addr(), dst)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        members.push(Some(sock));
    }
    // The room fills first (for at most a third of the run).
    let start = Instant::now();
    let fill_by = start + config.duration / 3;
    let mut churner = Churner::new(config.source, dst, config.room, config.count);
    let mut churn_start: Option<Instant> = None;
    while Instant::now() < deadline {
        if churn_start.is_none() && (joined + dropped >= config.room || Instant::now() >= fill_by) {
            churn_start = Some(Instant::now());
        }
        if churn_start.is_some() {
            churner.refill(poll.registry())?;
            if churner.is_done() {
                break;
            }
        }
        poll.poll(&mut events, Some(left(deadline, Duration::from_millis(10))))?;
        for ev in events.iter() {
            let t = ev.token().0;
            if churner.on_event(t) {
                continue;
            }
            let (Some(slot), Some(c)) = (members.get_mut(t), connected.get_mut(t)) else {
                continue;
            };
            let Some(sock) = slot.as_mut() else { continue };
            if !*c {
                match net::connected(sock) {
                    Ok(true) => {
                        *c = true;
                        joined += 1;
                    }
                    Ok(false) => continue,
                    Err(_) => {
                        *slot = None;
                        dropped += 1;
                        continue;
                    }
                }
            }
            if !drain(sock, &mut buf) {
                *slot = None;
                dropped += 1;
            }
        }
    }
    let churned = churn_start.map_or(Duration::ZERO, |t| t.elapsed());
    let rate = churner.connects as f64 / churned.as_secs_f64().max(1e-3);
    Ok(Outcome::new(format!(
        "room of {} ({} joined from {} address(es), {} dropped or refused); one address churned {} connections in {:.1} s ({:.0}/s){}",
        config.room,
        joined,
        sources.addresses,
        dropped,
        churner.connects,
        churned.as_secs_f64(),
        rate,
        churner.failures()
    )))
}

/// Lines and bytes of the log file (or `None`).
fn log_size(path: Option<&Path>) -> Option<(u64, u64)> {
    let text = std::fs::read(path?).ok()?;
    let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
    Some((text.len() as u64, lines))
}

/// log-flood: one address (`--source`) holds `--conns` cmd connections
/// (more than `--max-conns-per-ip` allows), then connects and closes as
/// fast as it can until `--duration` or `--count`; with `--log`, reports
/// how much the server's log grew meanwhile.
pub fn log_flood(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Cmd);
    let mut sources = Sources::new(config.source, usize::MAX);
    let hold_by = Instant::now() + (config.duration / 5).min(Duration::from_secs(1));
    let mut held = hold::open_and_hold(dst, config.conns, &mut sources, hold_by)?;
    let held_states = held.states();
    let before = log_size(config.log.as_deref());
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut churner = Churner::new(config.source, dst, 0, config.count);
    let start = Instant::now();
    while Instant::now() < deadline && !churner.is_done() {
        churner.refill(poll.registry())?;
        poll.poll(&mut events, Some(left(deadline, Duration::from_millis(10))))?;
        for ev in events.iter() {
            churner.on_event(ev.token().0);
        }
    }
    let elapsed = start.elapsed();
    drop(poll);
    let log = match (config.log.as_deref(), before) {
        (Some(path), Some((bytes0, lines0))) => {
            // Let a once-a-second summary line come out.
            std::thread::sleep(Duration::from_millis(1_200));
            match log_size(Some(path)) {
                Some((bytes1, lines1)) => {
                    let grew = bytes1.saturating_sub(bytes0);
                    format!(
                        "server log grew {} bytes, {} lines ({:.1} bytes per connect)",
                        grew,
                        lines1.saturating_sub(lines0),
                        grew as f64 / (churner.connects.max(1)) as f64
                    )
                }
                None => "server log unreadable".to_owned(),
            }
        }
        (Some(_), None) => "server log unreadable".to_owned(),
        (None, _) => "log growth not measured (no --log)".to_owned(),
    };
    // The held connections close when `held` goes, after the log was read.
    Ok(Outcome::new(format!(
        "one address held {} of {} (open {}, closed by the server {}), then {} connects in {:.1} s ({:.0}/s){}; {}",
        held.connected,
        config.conns,
        held_states.open,
        held_states.closed,
        churner.connects,
        elapsed.as_secs_f64(),
        churner.connects as f64 / elapsed.as_secs_f64().max(1e-3),
        churner.failures(),
        log
    )))
}
