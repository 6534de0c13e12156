//! The `chaos` workload: clients that misbehave the way real networks and
//! hostile peers do, each on a fresh connection, over and over, from one
//! `mio::Poll` — and a check that the server copes with every one.
//!
//! `--conns` slots each run one misbehaviour (taken in turn from
//! `--misbehave`) per connection, then reconnect:
//!
//! - **slow**: sends `--pipeline` requests, stops reading for `--pause`
//!   (the server must apply backpressure, not drop it or grow without
//!   bound), then reads every reply, checked.
//! - **trickle**: sends one request a byte at a time, then checks the reply.
//! - **reset**: sends `--pipeline` requests and half of one more, waits a
//!   few milliseconds without reading, and resets the connection
//!   (`SO_LINGER` 0): the server is caught mid-request and mid-reply.
//! - **garbage**: makes one checked exchange, then sends random bytes and
//!   half-closes; the server must close the connection (answering what it
//!   likes meanwhile).
//! - **half-open**: sends half a request, holds the connection for
//!   `--pause`, then half-closes; the server must close it. Many slots of
//!   this at once are a flood of half-open connections.
//!
//! Resets, garbage and a chat server dropping a slow consumer are expected
//! disconnects (counted, not failures). A wrong reply byte, any other
//! disconnect, and a server that owes something (a reply, a close) for
//! longer than `--hang-limit` are failures. Chat's replies (`/help`) are
//! checked among the room's broadcasts, which are skipped; garbage sent to
//! chat is invalid UTF-8 on every line, so nothing of it is relayed to the
//! room.

mod probe;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::config::Protocol;
use crate::proto::rng::Rng;

pub use probe::{Outcome, Probe};

use super::args::BenchConfig;
use super::progress::Progress;
use super::report::Report;
use super::reqrep::usage;
use super::script::{script, Expect, Script};
use super::stats::Stats;
use super::{procfs, BenchError};

/// One way of misbehaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehave {
    /// Stops reading for `--pause` with requests outstanding.
    Slow,
    /// Sends a request one byte at a time.
    Trickle,
    /// Resets the connection mid-request.
    Reset,
    /// Sends random bytes after a valid exchange.
    Garbage,
    /// Holds half a request for `--pause`.
    HalfOpen,
}

impl Misbehave {
    /// Every misbehaviour, in the order `--help` lists them.
    pub const ALL: [Misbehave; 5] = [
        Misbehave::Slow,
        Misbehave::Trickle,
        Misbehave::Reset,
        Misbehave::Garbage,
        Misbehave::HalfOpen,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Misbehave::Slow => "slow",
            Misbehave::Trickle => "trickle",
            Misbehave::Reset => "reset",
            Misbehave::Garbage => "garbage",
            Misbehave::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for Misbehave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Misbehave {
    type Err = ();
    fn from_str(s: &str) -> Result<Misbehave, ()> {
        Misbehave::ALL.into_iter().find(|m| m.name() == s).ok_or(())
    }
}

/// Parses a comma-separated list of misbehaviours (`all` for every one).
pub fn parse_list(list: &str) -> Option<Vec<Misbehave>> {
    if list == "all" {
        return Some(Misbehave::ALL.to_vec());
    }
    let kinds: Option<Vec<Misbehave>> = list.split(',').map(|s| s.trim().parse().ok()).collect();
    kinds.filter(|k| !k.is_empty())
}

/// Bytes of garbage a garbage connection sends.
pub const GARBAGE_BYTES: usize = 4096;

/// Connects in progress at once.
const MAX_CONNECTING: usize = 256;

/// How long a slot waits after a failure before reconnecting.
const RETRY_DELAY: Duration = Duration::from_millis(10);

/// The shared, read-only part: what to send and expect on `--proto`.
#[derive(Debug)]
pub struct Plan {
    script: Script,
    hello_reply: Option<Expect>,
    chat: bool,
    pipeline: usize,
    pause: Duration,
    hang_limit: Duration,
}

impl Plan {
    /// The plan of `cfg`'s protocol and settings.
    pub fn new(cfg: &BenchConfig) -> Plan {
        let chat = cfg.protocol() == Protocol::Chat;
        let script = match chat {
            true => chat_script(),
            false => script(cfg.protocol(), cfg),
        };
        let hello_reply = script
            .hello
            .as_ref()
            .map(|(_, reply)| Expect::Exact(reply.clone()));
        Plan {
            script,
            hello_reply,
            chat,
            pipeline: cfg.pipeline,
            pause: cfg.pause,
            hang_limit: cfg.hang_limit,
        }
    }

    fn half(&self) -> &[u8] {
        let r = &self.script.request;
        r.get(..r.len().div_ceil(2)).unwrap_or_default()
    }
}

/// Chat's exchange: `/help`, answered to the asker alone (spec 1.3).
fn chat_script() -> Script {
    Script {
        hello: None,
        greeting: Some(b"WELCOME "),
        request: b"/help\n".to_vec(),
        expect: Expect::Exact(b"OK commands: /nick /who /msg /quit /help\n".to_vec()),
    }
}

/// `n` bytes of garbage from `rng`: any byte value, a LF now and then so
/// that line protocols see many lines. For chat every line starts with
/// 0xFF, which is never valid UTF-8, so that no line is relayed.
pub fn garbage(rng: &mut Rng, n: usize, chat: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut line_start = true;
    while out.len() < n {
        let b = if line_start && chat {
            0xFF
        } else if rng.below(24) == 0 {
            b'\n'
        } else {
            rng.next_u64() as u8
        };
        line_start = b == b'\n';
        out.push(b);
    }
    out
}

/// Runs the chaos workload against `target`.
pub fn run(cfg: &BenchConfig, target: SocketAddr) -> Result<Report, BenchError> {
    let mut d = Driver {
        cfg,
        target,
        plan: Plan::new(cfg),
        poll: Poll::new().map_err(BenchError::Io)?,
        slots: (0..cfg.conns).map(|_| None).collect(),
        unstarted: (0..cfg.conns).rev().collect(),
        retry: Vec::new(),
        connecting: 0,
        stats: Stats::new(),
        buf: vec![0; 64 * 1024],
        begun: 0,
        cap: cfg.requests.unwrap_or(u64::MAX),
        seed: Rng::from_entropy().next_u64(),
        hung: Vec::new(),
    };
    d.run()
}

struct Driver<'a> {
    cfg: &'a BenchConfig,
    target: SocketAddr,
    plan: Plan,
    poll: Poll,
    slots: Vec<Option<Probe>>,
    unstarted: Vec<usize>,
    retry: Vec<(usize, Instant)>,
    connecting: usize,
    stats: Stats,
    buf: Vec<u8>,
    /// Connections begun (each gets the next misbehaviour in turn).
    begun: u64,
    cap: u64,
    seed: u64,
    /// Hung connections by what the server owed them.
    hung: Vec<(&'static str, u64)>,
}

impl Driver<'_> {
    fn run(&mut self) -> Result<Report, BenchError> {
        let sample = || self.cfg.server_pid.and_then(|p| procfs::sample(p).ok());
        let before = sample();
        let bench_before = procfs::own_cpu();
        let mut progress = Progress::new(self.cfg, self.cfg.workload.unit());
        let t0 = Instant::now();
        let end = t0 + self.cfg.duration;
        progress.start(t0);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.start_pending(now);
            let live = self.slots.iter().flatten().count();
            if now >= end || (self.begun >= self.cap && live == 0) {
                break;
            }
            let mut wake = end.min(progress.next());
            for probe in self.slots.iter().flatten() {
                if let Some(w) = probe.wake() {
                    wake = wake.min(w);
                }
            }
            if let Some(&(_, at)) = self.retry.iter().min_by_key(|(_, at)| *at) {
                wake = wake.min(at);
            }
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BenchError::Io(e)),
            }
            let now = Instant::now();
            for event in events.iter() {
                self.drive(event.token().0, now);
            }
            for slot in 0..self.slots.len() {
                let due = matches!(self.slots.get(slot), Some(Some(p))
                    if p.wake().is_some_and(|w| w <= now));
                if due {
                    self.drive(slot, now);
                }
            }
            progress.tick(Instant::now(), &self.stats);
        }
        let elapsed = t0.elapsed();
        let after = sample();
        progress.finish();
        for (owed, n) in &self.hung {
            eprintln!("onepoll-bench: {n} connection(s) hung waiting for {owed}");
        }
        Ok(Report {
            config: self.cfg.clone(),
            target: self.target,
            elapsed,
            stats: self.stats.clone(),
            conns: self.cfg.conns,
            server: usage(before, after),
            bench_cpu: procfs::own_cpu().saturating_sub(bench_before),
            probe: None,
        })
    }

    fn start_pending(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.retry.len() {
            match self.retry.get(i) {
                Some(&(slot, at)) if at <= now => {
                    self.retry.swap_remove(i);
                    self.unstarted.push(slot);
                }
                _ => i += 1,
            }
        }
        while self.connecting < MAX_CONNECTING && self.begun < self.cap {
            let Some(slot) = self.unstarted.pop() else {
                break;
            };
            self.open(slot, now);
        }
    }

    fn open(&mut self, slot: usize, now: Instant) {
        let kinds = &self.cfg.misbehave;
        let kind = kinds
            .get((self.begun % kinds.len().max(1) as u64) as usize)
            .copied()
            .unwrap_or(Misbehave::Slow);
        let seed = self.seed ^ self.begun.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.begun += 1;
        let probe = Probe::connect(self.target, kind, seed, now).and_then(|mut p| {
            self.poll
                .registry()
                .register(
                    p.socket(),
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map(|()| p)
        });
        match probe {
            Ok(p) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(p);
                    self.connecting += 1;
                }
            }
            Err(_) => {
                self.stats.connect_errors += 1;
                self.retry.push((slot, now + RETRY_DELAY));
            }
        }
    }

    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(Some(probe)) = self.slots.get_mut(slot) else {
            return;
        };
        let was_connecting = probe.connecting();
        let outcome = probe.drive(&self.plan, &mut self.buf, now);
        if was_connecting && !probe.connecting() {
            self.connecting -= 1;
        }
        let Some(outcome) = outcome else {
            return;
        };
        if let Some(Some(mut probe)) = self.slots.get_mut(slot).map(Option::take) {
            if probe.connecting() {
                self.connecting -= 1;
            }
            let _ = self.poll.registry().deregister(probe.socket());
            self.stats.bytes_out += probe.bytes_out;
            self.stats.bytes_in += probe.bytes_in;
            match outcome {
                Outcome::Done { dropped } => {
                    self.stats
                        .record(now.saturating_duration_since(probe.started()));
                    self.stats.dropped += u64::from(dropped);
                }
                Outcome::Wrong => {
                    self.stats.errors += 1;
                    if self.stats.errors <= 3 {
                        if let Some(why) = &probe.wrong {
                            eprintln!("onepoll-bench: {why}");
                        }
                    }
                }
                Outcome::Lost => self.stats.disconnects += 1,
                Outcome::Hung(owed) => {
                    self.stats.hung += 1;
                    match self.hung.iter_mut().find(|(what, _)| *what == owed) {
                        Some((_, n)) => *n += 1,
                        None => self.hung.push((owed, 1)),
                    }
                }
            }
            let delay = match outcome {
                Outcome::Done { .. } => Duration::ZERO,
                _ => RETRY_DELAY,
            };
            self.retry.push((slot, now + delay));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Workload;

    fn plan(proto: Protocol) -> Plan {
        let mut cfg = BenchConfig::new(Workload::Chaos);
        cfg.proto = proto;
        cfg.size = 10;
        cfg.pipeline = 3;
        Plan::new(&cfg)
    }

    #[test]
    fn misbehaviours_parse_by_name_in_a_list() {
        assert_eq!(
            parse_list("slow,reset"),
            Some(vec![Misbehave::Slow, Misbehave::Reset])
        );
        assert_eq!(parse_list("all"), Some(Misbehave::ALL.to_vec()));
        assert_eq!(parse_list("half-open"), Some(vec![Misbehave::HalfOpen]));
        assert_eq!(parse_list("slow,rude"), None);
        assert_eq!(parse_list(""), None);
        for m in Misbehave::ALL {
            assert_eq!(m.name().parse(), Ok(m));
        }
    }

    #[test]
    fn garbage_is_reproducible_and_has_many_lines() {
        let a = garbage(&mut Rng::from_seed(7), 4096, false);
        let b = garbage(&mut Rng::from_seed(7), 4096, false);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4096);
        let lines = a.iter().filter(|&&b| b == b'\n').count();
        assert!((100..400).contains(&lines), "{lines} lines");
        assert_ne!(a, garbage(&mut Rng::from_seed(8), 4096, false));
    }

    #[test]
    fn garbage_for_chat_is_never_valid_utf8_on_any_line() {
        for seed in 0..50 {
            let g = garbage(&mut Rng::from_seed(seed), 2048, true);
            for line in g.split(|&b| b == b'\n') {
                if !line.is_empty() {
                    assert_eq!(line.first(), Some(&0xFF), "seed {seed}");
                    assert!(std::str::from_utf8(line).is_err());
                }
            }
        }
    }

    #[test]
    fn a_half_request_is_a_strict_prefix() {
        for proto in Protocol::ALL {
            let p = plan(proto);
            let half = p.half();
            assert!(
                !half.is_empty() && half.len() < p.script.request.len(),
                "{proto}"
            );
            assert!(p.script.request.starts_with(half));
        }
    }
}
