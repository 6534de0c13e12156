//! The request/reply workloads over TCP — transform, tne, cmd, upload, and
//! the idle and churn modes of any of them — driven from one `mio::Poll`.
//!
//! - **steady**: every connection opens (greeting, hello) before
//!   measuring starts; then each keeps `--pipeline` requests outstanding
//!   (closed loop), or issues them at its share of `--rate` (fixed rate).
//! - **idle**: open `--conns` connections, one exchange each, hold them for
//!   `--duration` while the server's memory is read, then one more exchange
//!   each to prove they still work.
//! - **churn**: `--conns` slots, each connecting, making one exchange and
//!   closing, over and over; the latency is the whole connection's.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::args::{BenchConfig, Workload};
use super::progress::Progress;
use super::rate::Schedule;
use super::report::{Report, ServerUsage};
use super::script::script;
use super::stats::Stats;
use super::tcp::{Conn, End, Phase, Wire};
use super::{procfs, BenchError};

/// Connects in progress at once, so a listen backlog never overflows.
const MAX_CONNECTING: usize = 256;

/// Longest wait for connections to open, or for idle's last replies.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

/// How long a churn slot waits after a failed connect.
const RETRY_DELAY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Steady,
    Idle,
    Churn,
}

struct Driver<'a> {
    cfg: &'a BenchConfig,
    target: SocketAddr,
    mode: Mode,
    poll: Poll,
    wire: Wire,
    slots: Vec<Option<Conn>>,
    schedules: Vec<Schedule>,
    /// Slots not yet started, started last first.
    unstarted: Vec<usize>,
    /// Churn slots waiting to reconnect, with when.
    retry: Vec<(usize, Instant)>,
    connecting: usize,
    live: usize,
    stats: Stats,
    buf: Vec<u8>,
    done: Vec<Instant>,
    /// Operations begun (requests issued; churn: connections opened).
    begun: u64,
    cap: u64,
    measuring: bool,
    /// Idle: exchanges each connection is to complete.
    rounds_wanted: u32,
    progress: Progress,
    /// When a reply last completed (or the run began): a stall longer than
    /// `--timeout` ends the run with [`BenchError::NoReply`].
    heard: Instant,
    /// The first bytes the server sent, on any connection: what came
    /// instead, when nothing right did.
    first_bytes: Vec<u8>,
}

/// Bytes of the server's first reply kept to show what came instead.
const SHOWN: usize = 48;

/// Runs a request/reply workload against `target`.
pub fn run(cfg: &BenchConfig, target: SocketAddr) -> Result<Report, BenchError> {
    let mode = match cfg.workload {
        Workload::Idle => Mode::Idle,
        Workload::Churn => Mode::Churn,
        _ => Mode::Steady,
    };
    let wire = Wire::new(script(cfg.protocol(), cfg));
    let mut d = Driver {
        cfg,
        target,
        mode,
        poll: Poll::new().map_err(BenchError::Io)?,
        wire,
        slots: (0..cfg.conns).map(|_| None).collect(),
        schedules: Vec::new(),
        unstarted: (0..cfg.conns).rev().collect(),
        retry: Vec::new(),
        connecting: 0,
        live: 0,
        stats: Stats::new(),
        buf: vec![0; 256 * 1024],
        done: Vec::new(),
        begun: 0,
        cap: cfg.requests.unwrap_or(u64::MAX),
        measuring: false,
        rounds_wanted: 1,
        progress: Progress::new(cfg, cfg.workload.unit()),
        heard: Instant::now(),
        first_bytes: Vec::new(),
    };
    match mode {
        Mode::Steady => d.steady(),
        Mode::Idle => d.idle(),
        Mode::Churn => d.churn(),
    }
}

impl Driver<'_> {
    fn steady(&mut self) -> Result<Report, BenchError> {
        self.open_all(|c| c.phase == Phase::Ready)?;
        let before = self.sample();
        let bench_before = procfs::own_cpu();
        let t0 = Instant::now();
        let end = t0 + self.cfg.duration;
        self.measuring = true;
        self.progress.start(t0);
        if let Some(rate) = self.cfg.rate {
            let n = self.slots.len();
            self.schedules = (0..n).map(|i| Schedule::new(t0, rate, i, n)).collect();
        }
        for i in 0..self.slots.len() {
            self.step(i, t0);
        }
        let mut events = Events::with_capacity(1024);
        self.heard = t0;
        loop {
            let now = Instant::now();
            if now >= end || self.live == 0 || (self.begun >= self.cap && self.idle_all()) {
                break;
            }
            let owed = self.begun > self.stats.ops + self.stats.errors;
            if owed && now >= self.heard + self.cfg.reply_timeout {
                return Err(self.silence());
            }
            let mut wake = end.min(self.progress.next());
            if owed {
                wake = wake.min(self.heard + self.cfg.reply_timeout);
            }
            if self.cfg.rate.is_some() {
                wake = wake.min(self.sweep_rate(now));
            }
            let timeout = match wake.saturating_duration_since(now) {
                // epoll sleeps in whole milliseconds: spin rather than
                // oversleep a fixed-rate send.
                t if self.cfg.rate.is_some() && t < Duration::from_millis(1) => Duration::ZERO,
                t => t,
            };
            self.poll_once(&mut events, timeout)?;
            self.progress.tick(Instant::now(), &self.stats);
        }
        let elapsed = t0.elapsed();
        let after = self.sample();
        self.progress.finish();
        if self.stats.ops == 0 && self.live == 0 {
            return Err(self.all_failed());
        }
        if self.stats.ops == 0 && self.begun > 0 {
            return Err(self.silence());
        }
        Ok(self.report(elapsed, usage(before, after), bench_before))
    }

    /// `host:port` and the protocol awaited, as the messages name them.
    fn awaited(&self) -> (String, &'static str) {
        let from = format!("{}:{}", self.cfg.host, self.target.port());
        (from, self.cfg.protocol().name())
    }

    /// What came instead of a reply, for the messages.
    fn instead(&self) -> String {
        if self.first_bytes.is_empty() {
            return "nothing came back".to_string();
        }
        format!(
            "the first bytes back were \"{}\"",
            self.first_bytes.escape_ascii()
        )
    }

    /// The run stalled: requests are owed and none was answered in
    /// `--timeout`.
    fn silence(&self) -> BenchError {
        let (from, protocol) = self.awaited();
        BenchError::NoReply(format!(
            "no reply from {from} in {:.0} s \u{2014} is it serving {protocol}? ({} connections open, {} requests sent, {} answered; {})",
            self.heard.elapsed().as_secs_f64(),
            self.live,
            self.begun,
            self.stats.ops,
            self.instead()
        ))
    }

    /// Every connection ended before any reply was right.
    fn all_failed(&self) -> BenchError {
        let (from, protocol) = self.awaited();
        let how = match (self.stats.errors, self.stats.disconnects) {
            (0, 0) => "no connection could be used".to_string(),
            (0, n) => format!("the server closed all {n} connections without a reply"),
            (n, _) => format!("{n} connections got a reply that is not {protocol}'s"),
        };
        BenchError::NoReply(format!(
            "{how} \u{2014} is {from} serving {protocol}? ({})",
            self.instead()
        ))
    }

    fn idle(&mut self) -> Result<Report, BenchError> {
        let before = self.sample();
        let bench_before = procfs::own_cpu();
        // Open everything and make one exchange on each, so that buffers
        // a server allocates on first use have been allocated (and,
        // ideally, released when drained).
        self.open_all(|c| c.phase == Phase::Ready && c.rounds >= 1)?;
        let t0 = Instant::now();
        let end = t0 + self.cfg.duration;
        self.progress.start(t0);
        let mut events = Events::with_capacity(1024);
        while Instant::now() < end && self.live > 0 {
            let timeout = end
                .min(self.progress.next())
                .saturating_duration_since(Instant::now());
            self.poll_once(&mut events, timeout)?;
            self.progress.tick(Instant::now(), &self.stats);
        }
        let elapsed = t0.elapsed();
        let after = self.sample();
        // Prove the held connections still work: one more exchange each,
        // timed.
        self.measuring = true;
        self.rounds_wanted = 2;
        let held = self.live;
        for i in 0..self.slots.len() {
            self.step(i, Instant::now());
        }
        let limit = Instant::now() + SETUP_LIMIT;
        while self.live > 0 && Instant::now() < limit && !self.all_live(|c| c.rounds >= 2) {
            self.poll_once(&mut events, Duration::from_millis(100))?;
        }
        self.progress.finish();
        let mut report = self.report(elapsed, usage(before, after), bench_before);
        report.conns = held;
        Ok(report)
    }

    fn churn(&mut self) -> Result<Report, BenchError> {
        let before = self.sample();
        let bench_before = procfs::own_cpu();
        let t0 = Instant::now();
        let end = t0 + self.cfg.duration;
        self.measuring = true;
        self.progress.start(t0);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.start_pending(now);
            if now >= end || (self.begun >= self.cap && self.live == 0) {
                break;
            }
            let mut wake = end.min(self.progress.next());
            if let Some(&(_, at)) = self.retry.iter().min_by_key(|(_, at)| *at) {
                wake = wake.min(at);
            }
            self.poll_once(&mut events, wake.saturating_duration_since(now))?;
            self.progress.tick(Instant::now(), &self.stats);
        }
        let elapsed = t0.elapsed();
        let after = self.sample();
        self.progress.finish();
        Ok(self.report(elapsed, usage(before, after), bench_before))
    }

    /// Opens every slot (at most [`MAX_CONNECTING`] at once) and runs the
    /// loop until each is `ready` or dead.
    fn open_all(&mut self, ready: impl Fn(&Conn) -> bool) -> Result<(), BenchError> {
        let limit = Instant::now() + SETUP_LIMIT;
        let mut events = Events::with_capacity(1024);
        // Connections that became ready, and when the last one did: no
        // progress for --timeout ends the wait as surely as SETUP_LIMIT.
        let (mut readied, mut moved) = (usize::MAX, Instant::now());
        loop {
            self.start_pending(Instant::now());
            if self.unstarted.is_empty() && self.all_live(&ready) {
                break;
            }
            let now_ready = self.slots.iter().flatten().filter(|c| ready(c)).count();
            if now_ready != readied {
                (readied, moved) = (now_ready, Instant::now());
            }
            if Instant::now() >= limit || moved.elapsed() >= self.cfg.reply_timeout {
                let (from, protocol) = self.awaited();
                return Err(BenchError::NoReply(format!(
                    "no reply from {from} in {:.0} s \u{2014} is it serving {protocol}? ({} of {} connections ready; {})",
                    moved.elapsed().as_secs_f64(),
                    readied,
                    self.cfg.conns,
                    self.instead()
                )));
            }
            self.poll_once(&mut events, Duration::from_millis(100))?;
        }
        if self.live == 0 {
            return Err(BenchError::Setup(format!(
                "no connection to {} could be opened",
                self.target
            )));
        }
        Ok(())
    }

    fn all_live(&self, pred: impl Fn(&Conn) -> bool) -> bool {
        self.slots.iter().flatten().all(pred)
    }

    fn idle_all(&self) -> bool {
        self.all_live(|c| c.outstanding() == 0)
    }

    /// Starts connects for unstarted slots and churn slots due a retry,
    /// keeping at most [`MAX_CONNECTING`] in progress.
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
        while self.connecting < MAX_CONNECTING && self.begun_ok() {
            let Some(slot) = self.unstarted.pop() else {
                break;
            };
            self.open(slot, now);
        }
    }

    fn begun_ok(&self) -> bool {
        self.mode != Mode::Churn || self.begun < self.cap
    }

    fn open(&mut self, slot: usize, now: Instant) {
        if self.mode == Mode::Churn {
            self.begun += 1;
        }
        let conn = Conn::connect(self.target, now, self.cfg.pipeline).and_then(|mut c| {
            self.poll
                .registry()
                .register(
                    &mut c.sock,
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map(|()| c)
        });
        match conn {
            Ok(c) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(c);
                    self.connecting += 1;
                    self.live += 1;
                }
            }
            Err(_) => {
                self.stats.connect_errors += 1;
                if self.mode == Mode::Churn {
                    self.retry.push((slot, now + RETRY_DELAY));
                }
            }
        }
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Duration) -> Result<(), BenchError> {
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(BenchError::Io(e)),
        }
        for event in events.iter() {
            let slot = event.token().0;
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            self.on_event(slot, readable);
        }
        Ok(())
    }

    fn on_event(&mut self, slot: usize, readable: bool) {
        let now = Instant::now();
        let Some(Some(conn)) = self.slots.get_mut(slot) else {
            return;
        };
        if conn.phase == Phase::Connecting {
            match conn.check_connected(&self.wire) {
                Ok(false) => return,
                Ok(true) => self.connecting -= 1,
                Err(_) => {
                    self.connecting -= 1;
                    self.stats.connect_errors += 1;
                    self.fail(slot, now);
                    return;
                }
            }
        }
        if readable {
            let Some(Some(conn)) = self.slots.get_mut(slot) else {
                return;
            };
            self.done.clear();
            let (bytes, end) = conn.read(&self.wire, &mut self.buf, &mut self.done);
            let started = conn.started;
            if !self.done.is_empty() {
                self.heard = now;
            }
            if self.first_bytes.is_empty() && bytes > 0 {
                let n = (bytes as usize).min(SHOWN);
                self.first_bytes = self.buf.get(..n).unwrap_or_default().to_vec();
            }
            if self.measuring {
                self.stats.bytes_in += bytes;
                for &t in &self.done {
                    let from = match self.mode {
                        Mode::Churn => started,
                        _ => t,
                    };
                    self.stats.record(now.saturating_duration_since(from));
                }
            }
            conn.rounds += self.done.len() as u32;
            match end {
                None => {}
                Some(End::Wrong(_)) => {
                    self.stats.errors += 1;
                    self.fail(slot, now);
                    return;
                }
                Some(End::Eof | End::Io(_)) => {
                    self.stats.disconnects += 1;
                    self.fail(slot, now);
                    return;
                }
            }
        }
        self.step(slot, now);
    }

    /// Issues what the mode asks of a connection, and writes.
    fn step(&mut self, slot: usize, now: Instant) {
        let Some(Some(conn)) = self.slots.get_mut(slot) else {
            return;
        };
        if conn.phase == Phase::Ready {
            let greeting_only = self.wire.unit() == 0;
            match self.mode {
                Mode::Steady if self.measuring => match self.schedules.get_mut(slot) {
                    None => {
                        while conn.outstanding() < self.cfg.pipeline && self.begun < self.cap {
                            conn.issue(&self.wire, now);
                            self.begun += 1;
                        }
                    }
                    Some(s) => {
                        while conn.outstanding() < self.cfg.pipeline && self.begun < self.cap {
                            let Some(at) = s.take_due(now) else { break };
                            conn.issue(&self.wire, at);
                            self.begun += 1;
                        }
                    }
                },
                Mode::Steady => {}
                Mode::Idle => {
                    if greeting_only {
                        conn.rounds = conn.rounds.max(self.rounds_wanted);
                    } else if conn.outstanding() == 0 && conn.rounds < self.rounds_wanted {
                        conn.issue(&self.wire, now);
                    }
                }
                Mode::Churn => {
                    if greeting_only || conn.rounds >= 1 {
                        if greeting_only {
                            self.stats
                                .record(now.saturating_duration_since(conn.started));
                        }
                        self.close(slot);
                        self.unstarted.push(slot);
                        self.start_pending(now);
                        return;
                    } else if conn.outstanding() == 0 {
                        conn.issue(&self.wire, now);
                    }
                }
            }
        }
        let Some(Some(conn)) = self.slots.get_mut(slot) else {
            return;
        };
        match conn.flush(&self.wire) {
            Ok(n) => {
                if self.measuring {
                    self.stats.bytes_out += n;
                }
            }
            Err(_) => {
                self.stats.disconnects += 1;
                self.fail(slot, now);
            }
        }
    }

    /// Fixed rate: issues every request that has come due; returns when
    /// the next one is due.
    fn sweep_rate(&mut self, now: Instant) -> Instant {
        let mut next = now + Duration::from_secs(1);
        for slot in 0..self.slots.len() {
            let due = self.schedules.get(slot).map(Schedule::next);
            let has_room = matches!(self.slots.get(slot), Some(Some(c))
                if c.phase == Phase::Ready && c.outstanding() < self.cfg.pipeline);
            if let (Some(due), true) = (due, has_room) {
                if due <= now {
                    self.step(slot, now);
                }
                if let Some(s) = self.schedules.get(slot) {
                    next = next.min(s.next());
                }
            }
        }
        next
    }

    /// Closes a connection that completed its work.
    fn close(&mut self, slot: usize) {
        if let Some(Some(mut conn)) = self.slots.get_mut(slot).map(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.sock);
            self.live -= 1;
        }
    }

    /// Closes a connection that failed (the caller counted why); a churn
    /// slot reconnects after a pause.
    fn fail(&mut self, slot: usize, now: Instant) {
        self.close(slot);
        if self.mode == Mode::Churn {
            self.retry.push((slot, now + RETRY_DELAY));
        }
    }

    fn sample(&self) -> Option<procfs::Sample> {
        self.cfg.server_pid.and_then(|pid| procfs::sample(pid).ok())
    }

    fn report(
        &self,
        elapsed: Duration,
        server: Option<ServerUsage>,
        bench_before: Duration,
    ) -> Report {
        Report {
            config: self.cfg.clone(),
            target: self.target,
            elapsed,
            stats: self.stats.clone(),
            conns: self.live,
            server,
            bench_cpu: procfs::own_cpu().saturating_sub(bench_before),
            probe: None,
        }
    }
}

/// The server's cost between two samples.
pub fn usage(before: Option<procfs::Sample>, after: Option<procfs::Sample>) -> Option<ServerUsage> {
    let (b, a) = (before?, after?);
    Some(ServerUsage {
        cpu: a.cpu.saturating_sub(b.cpu),
        rss_before: b.rss,
        rss_after: a.rss,
    })
}
