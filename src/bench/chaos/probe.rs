//! One misbehaving connection of the chaos workload: the steps of each
//! misbehaviour, run against a nonblocking socket, with every reply the
//! server owes checked and every wait on the server bounded.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::proto::rng::Rng;

use super::{garbage, Misbehave, Plan, GARBAGE_BYTES};
use crate::bench::check::{Checker, LineSkip, Mismatch};

/// A trickle writes this many bytes one at a time, then the rest at once.
const TRICKLE_BYTES: usize = 48;

/// Gap between a trickle's bytes.
const TRICKLE_GAP: Duration = Duration::from_millis(5);

/// A reset waits up to this long (at random) before resetting.
const RESET_WINDOW_MS: u64 = 20;

/// Longest partial line kept while skipping chat's broadcasts.
const MAX_CHAT_LINE: usize = 64 * 1024;

/// Lines chat sends on its own, skipped while a reply is awaited.
const CHAT_NOTICES: [&[u8]; 5] = [b"MSG ", b"JOIN ", b"LEAVE ", b"NICK ", b"PRIV "];

/// One step of a misbehaving connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Queues bytes to write; done at once (writing goes on behind).
    Send(Chunk),
    /// Writes one request a byte at a time; done when written.
    Trickle,
    /// Neither reads nor waits for anything for a while.
    Stall(Pause),
    /// Reads until every request sent is answered, checked.
    Expect,
    /// Resets the connection: the end (an expected disconnect).
    Reset,
    /// Half-closes once everything queued is written.
    ShutWrite,
    /// Reads and discards until the server closes: the end.
    Drain,
    /// Closes normally: the end.
    Close,
}

/// What a [`Step::Send`] queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// `--pipeline` requests.
    Requests,
    /// One request.
    One,
    /// The first half of a request.
    Half,
    /// [`GARBAGE_BYTES`] random bytes.
    Garbage,
}

/// How long a [`Step::Stall`] lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// `--pause`.
    Long,
    /// A few milliseconds, at random.
    Short,
}

/// How a misbehaving connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// As the spec says; `dropped` when it was an expected disconnect.
    Done {
        /// A reset, garbage, or a slow chat consumer dropped.
        dropped: bool,
    },
    /// A reply had a wrong byte, or came unasked.
    Wrong,
    /// The server closed or reset it when it should not have.
    Lost,
    /// The server owed a reply or a close for longer than the limit;
    /// says what it owed.
    Hung(&'static str),
}

impl Misbehave {
    /// What a connection of this kind does, step by step.
    fn steps(self) -> &'static [Step] {
        use Step::*;
        match self {
            Misbehave::Slow => &[Send(Chunk::Requests), Stall(Pause::Long), Expect, Close],
            Misbehave::Trickle => &[Trickle, Expect, Close],
            Misbehave::Reset => &[
                Send(Chunk::Requests),
                Send(Chunk::Half),
                Stall(Pause::Short),
                Reset,
            ],
            Misbehave::Garbage => &[
                Send(Chunk::One),
                Expect,
                Send(Chunk::Garbage),
                ShutWrite,
                Drain,
            ],
            Misbehave::HalfOpen => &[Send(Chunk::Half), Stall(Pause::Long), ShutWrite, Drain],
        }
    }
}

/// Where a connection is before its steps start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    Connecting,
    Greeting,
    Hello,
    Open,
}

/// What reading found.
enum Reading {
    /// Nothing more for now.
    Blocked,
    /// The server closed or reset the connection.
    Closed,
    /// A wrong byte.
    Wrong,
}

/// One misbehaving connection.
pub struct Probe {
    sock: TcpStream,
    kind: Misbehave,
    opening: Opening,
    /// Index of the current step in `kind.steps()`.
    at: usize,
    started: Instant,
    /// When the current step gives up waiting on the server, or a stall
    /// ends, or the next trickled byte is due.
    wake: Option<Instant>,
    out: Vec<u8>,
    written: usize,
    /// How many of `out`'s bytes may be written now (a trickle's limit).
    writable_to: usize,
    shut: bool,
    /// Requests queued and not yet answered.
    outstanding: usize,
    skip: LineSkip,
    hello_check: Checker,
    checker: Checker,
    /// Chat: the partial line being assembled.
    line: Vec<u8>,
    rng: Rng,
    /// Bytes written and read, for the report.
    pub bytes_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// What was wrong with a wrong reply, for the log.
    pub wrong: Option<String>,
}

impl Probe {
    /// Starts connecting to `addr`; the connection will misbehave as
    /// `kind`, with random choices from `seed`.
    pub fn connect(
        addr: SocketAddr,
        kind: Misbehave,
        seed: u64,
        now: Instant,
    ) -> io::Result<Probe> {
        Ok(Probe {
            sock: TcpStream::connect(addr)?,
            kind,
            opening: Opening::Connecting,
            at: 0,
            started: now,
            wake: None,
            out: Vec::new(),
            written: 0,
            writable_to: usize::MAX,
            shut: false,
            outstanding: 0,
            skip: LineSkip::new(),
            hello_check: Checker::new(),
            checker: Checker::new(),
            line: Vec::new(),
            rng: Rng::from_seed(seed),
            bytes_out: 0,
            bytes_in: 0,
            wrong: None,
        })
    }

    /// The socket, to register with the poll.
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Whether the connect is still in progress.
    pub fn connecting(&self) -> bool {
        self.opening == Opening::Connecting
    }

    /// When the connect began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the driver must call [`Probe::drive`] even without an event.
    pub fn wake(&self) -> Option<Instant> {
        self.wake
    }

    fn step(&self) -> Step {
        self.kind
            .steps()
            .get(self.at)
            .copied()
            .unwrap_or(Step::Close)
    }

    /// Does everything that can be done now; returns how the connection
    /// ended, or `None` while it goes on.
    pub fn drive(&mut self, plan: &Plan, buf: &mut [u8], now: Instant) -> Option<Outcome> {
        if self.opening == Opening::Connecting {
            match self.check_connected(plan, now) {
                Ok(false) => {
                    return self.overdue(now).then(|| self.hung());
                }
                Ok(true) => {}
                Err(_) => return Some(Outcome::Lost),
            }
        }
        loop {
            if self.flush(now).is_err() {
                return Some(self.write_failed());
            }
            if self.reads() {
                match self.read(plan, buf, now) {
                    Reading::Blocked => {}
                    Reading::Wrong => return Some(Outcome::Wrong),
                    Reading::Closed => return Some(self.closed(plan)),
                }
            }
            if self.opening != Opening::Open {
                return self.overdue(now).then(|| self.hung());
            }
            match self.step_done(now) {
                Err(outcome) => return Some(outcome),
                Ok(false) => return self.overdue(now).then(|| self.hung()),
                Ok(true) => {
                    self.at += 1;
                    if let Some(end) = self.enter(plan, now) {
                        return Some(end);
                    }
                }
            }
        }
    }

    /// What the server owes, as a hung outcome.
    fn hung(&self) -> Outcome {
        Outcome::Hung(match (self.opening, self.step()) {
            (Opening::Connecting, _) => "the connect",
            (Opening::Greeting, _) => "the greeting",
            (Opening::Hello, _) => "the hello's reply",
            (Opening::Open, Step::Expect) => "replies",
            (Opening::Open, Step::Drain) => "a close after a half-close",
            (Opening::Open, _) => "reading what was sent",
        })
    }

    /// Whether the server has owed something past the limit. A stall or a
    /// trickle's gap is not the server's doing.
    fn overdue(&self, now: Instant) -> bool {
        let waiting_on_server =
            !matches!(self.step(), Step::Stall(_) | Step::Trickle) || self.opening != Opening::Open;
        waiting_on_server && self.wake.is_some_and(|w| now >= w)
    }

    fn check_connected(&mut self, plan: &Plan, now: Instant) -> io::Result<bool> {
        if self.wake.is_none() {
            self.wake = Some(now + plan.hang_limit);
        }
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        self.sock.set_nodelay(true)?;
        self.opening = match (plan.script.greeting, &plan.script.hello) {
            (Some(_), _) => Opening::Greeting,
            (None, Some((hello, _))) => {
                self.out.extend_from_slice(hello);
                Opening::Hello
            }
            (None, None) => Opening::Open,
        };
        self.wake = Some(now + plan.hang_limit);
        if self.opening == Opening::Open {
            self.begin(plan, now);
        }
        Ok(true)
    }

    /// Runs the entry action of the current step; returns the outcome if
    /// the step ends the connection at once.
    fn enter(&mut self, plan: &Plan, now: Instant) -> Option<Outcome> {
        self.wake = Some(now + plan.hang_limit);
        match self.step() {
            Step::Send(chunk) => {
                match chunk {
                    Chunk::Requests => self.queue_requests(plan, plan.pipeline),
                    Chunk::One => self.queue_requests(plan, 1),
                    Chunk::Half => self.out.extend_from_slice(plan.half()),
                    Chunk::Garbage => {
                        let g = garbage(&mut self.rng, GARBAGE_BYTES, plan.chat);
                        self.out.extend_from_slice(&g);
                    }
                }
                None
            }
            Step::Trickle => {
                self.queue_requests(plan, 1);
                self.writable_to = self.written + 1;
                self.wake = Some(now);
                None
            }
            Step::Stall(Pause::Long) => {
                self.wake = Some(now + plan.pause);
                None
            }
            Step::Stall(Pause::Short) => {
                let ms = self.rng.below(RESET_WINDOW_MS + 1);
                self.wake = Some(now + Duration::from_millis(ms));
                None
            }
            Step::Expect | Step::ShutWrite | Step::Drain => None,
            Step::Reset => {
                let _ = set_linger_zero(&self.sock);
                Some(Outcome::Done { dropped: true })
            }
            Step::Close => Some(Outcome::Done { dropped: false }),
        }
    }

    fn queue_requests(&mut self, plan: &Plan, n: usize) {
        for _ in 0..n {
            self.out.extend_from_slice(&plan.script.request);
        }
        self.outstanding += n;
    }

    /// Whether the current step is complete (`Err`: the connection ended).
    fn step_done(&mut self, now: Instant) -> Result<bool, Outcome> {
        Ok(match self.step() {
            Step::Send(_) => true,
            Step::Trickle => self.written == self.out.len(),
            Step::Stall(_) => self.wake.is_some_and(|w| now >= w),
            Step::Expect => self.outstanding == 0,
            Step::ShutWrite => {
                if self.written == self.out.len() && !self.shut {
                    self.shut = true;
                    if self.sock.shutdown(Shutdown::Write).is_err() {
                        return Err(self.write_failed());
                    }
                }
                self.shut
            }
            // These end the connection from drive() or enter().
            Step::Drain | Step::Reset | Step::Close => false,
        })
    }

    /// Writes what may be written; a trickle one byte per gap.
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let trickle = self.step() == Step::Trickle && self.opening == Opening::Open;
        if !trickle {
            self.writable_to = self.out.len();
        } else if self.written >= self.writable_to && self.wake.is_some_and(|w| now >= w) {
            self.writable_to = match self.written + 1 {
                n if n >= TRICKLE_BYTES => self.out.len(),
                n => n,
            };
        }
        let end = self.writable_to.min(self.out.len());
        let before = self.written;
        while self.written < end {
            match self
                .sock
                .write(self.out.get(self.written..end).unwrap_or_default())
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.bytes_out += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if trickle && self.written > before {
            self.wake = Some(now + TRICKLE_GAP);
        }
        if self.written == self.out.len() && !self.out.is_empty() {
            self.out.clear();
            self.written = 0;
            self.writable_to = usize::MAX;
        }
        Ok(())
    }

    /// A write failed: the server closed. After garbage that is its right.
    fn write_failed(&self) -> Outcome {
        match self.step() {
            Step::Send(Chunk::Garbage) | Step::ShutWrite | Step::Drain
                if self.kind == Misbehave::Garbage =>
            {
                Outcome::Done { dropped: true }
            }
            _ => Outcome::Lost,
        }
    }

    /// The server closed the connection (read EOF or an error).
    fn closed(&self, plan: &Plan) -> Outcome {
        match self.step() {
            Step::Drain => Outcome::Done {
                dropped: self.kind == Misbehave::Garbage,
            },
            // A chat server drops a consumer that falls behind.
            Step::Expect if plan.chat && self.kind == Misbehave::Slow => {
                Outcome::Done { dropped: true }
            }
            _ => Outcome::Lost,
        }
    }

    /// Whether the connection reads now (a slow reader does not, nor does
    /// one writing its misbehaviour).
    fn reads(&self) -> bool {
        self.opening != Opening::Open || matches!(self.step(), Step::Expect | Step::Drain)
    }

    fn read(&mut self, plan: &Plan, buf: &mut [u8], now: Instant) -> Reading {
        loop {
            match self.sock.read(buf) {
                Ok(0) => return Reading::Closed,
                Ok(n) => {
                    self.bytes_in += n as u64;
                    let chunk = buf.get(..n).unwrap_or_default();
                    if let Err(m) = self.consume(plan, chunk, now) {
                        self.wrong = Some(format!(
                            "{} on {:?}: wrong byte at offset {} of a reply; the read was \"{}\"",
                            self.kind,
                            self.step(),
                            m.offset,
                            chunk
                                .iter()
                                .take(120)
                                .flat_map(|&b| std::ascii::escape_default(b))
                                .map(char::from)
                                .collect::<String>()
                        ));
                        return Reading::Wrong;
                    }
                    if !self.reads() {
                        // The opening ended and the first step does not read.
                        return Reading::Blocked;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Reading::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Reading::Closed,
            }
        }
    }

    fn consume(&mut self, plan: &Plan, mut input: &[u8], now: Instant) -> Result<(), Mismatch> {
        if self.opening == Opening::Greeting {
            let prefix = plan.script.greeting.unwrap_or_default();
            match self.skip.feed(prefix, input)? {
                None => return Ok(()),
                Some(n) => {
                    input = input.get(n..).unwrap_or_default();
                    self.opening = match &plan.script.hello {
                        Some((hello, _)) => {
                            self.out.extend_from_slice(hello);
                            Opening::Hello
                        }
                        None => self.begin(plan, now),
                    };
                }
            }
        }
        if self.opening == Opening::Hello {
            let expect = plan.hello_reply.as_ref().ok_or(Mismatch { offset: 0 })?;
            let (used, complete) = self.hello_check.feed_upto(expect, input, 1)?;
            input = input.get(used..).unwrap_or_default();
            if complete == 0 {
                return Ok(());
            }
            self.opening = self.begin(plan, now);
        }
        if self.step() == Step::Drain && self.opening == Opening::Open {
            return Ok(());
        }
        match plan.chat {
            true => self.consume_chat(plan, input),
            false => self.consume_replies(plan, input),
        }
    }

    /// The opening is over: the first step begins. (No kind's first step
    /// ends the connection: each only queues bytes.)
    fn begin(&mut self, plan: &Plan, now: Instant) -> Opening {
        self.opening = Opening::Open;
        let _ = self.enter(plan, now);
        Opening::Open
    }

    fn consume_replies(&mut self, plan: &Plan, input: &[u8]) -> Result<(), Mismatch> {
        let (used, complete) =
            self.checker
                .feed_upto(&plan.script.expect, input, self.outstanding)?;
        self.outstanding -= complete;
        if used < input.len() {
            // Bytes beyond every reply asked for.
            return Err(Mismatch { offset: 0 });
        }
        Ok(())
    }

    /// Chat: whole lines; the room's notices are skipped, every other line
    /// must be the reply to a request outstanding.
    fn consume_chat(&mut self, plan: &Plan, mut input: &[u8]) -> Result<(), Mismatch> {
        while let Some(lf) = input.iter().position(|&b| b == b'\n') {
            let (head, rest) = input.split_at(lf + 1);
            input = rest;
            if self.line.is_empty() {
                self.on_chat_line(plan, head)?;
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                let result = self.on_chat_line(plan, &line);
                self.line = line;
                self.line.clear();
                result?;
            }
        }
        if self.line.len() + input.len() > MAX_CHAT_LINE {
            return Err(Mismatch { offset: 0 });
        }
        self.line.extend_from_slice(input);
        Ok(())
    }

    fn on_chat_line(&mut self, plan: &Plan, line: &[u8]) -> Result<(), Mismatch> {
        if CHAT_NOTICES.iter().any(|p| line.starts_with(p)) {
            return Ok(());
        }
        self.consume_replies(plan, line)
    }
}

/// `SO_LINGER` with a zero timeout: closing then sends a reset and drops
/// whatever is unsent.
fn set_linger_zero(sock: &TcpStream) -> io::Result<()> {
    crate::sys::socket::set_abortive_close(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::{BenchConfig, Workload};
    use crate::bench::script::Expect;
    use crate::config::Protocol;

    fn plan(proto: Protocol) -> Plan {
        let mut cfg = BenchConfig::new(Workload::Chaos);
        cfg.proto = proto;
        cfg.size = 10;
        cfg.pipeline = 3;
        Plan::new(&cfg)
    }

    #[test]
    fn every_kind_ends_in_a_step_that_ends_the_connection() {
        for m in Misbehave::ALL {
            let last = m.steps().last().copied();
            assert!(
                matches!(last, Some(Step::Close | Step::Reset | Step::Drain)),
                "{m}: {last:?}"
            );
        }
    }

    /// A probe over a real loopback pair, already open, at step 0 of
    /// `kind`; returns it and the server side.
    fn open_probe(plan: &Plan, kind: Misbehave) -> (Probe, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut probe = Probe::connect(addr, kind, 1, Instant::now()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = vec![0; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe.opening == Opening::Connecting {
            assert!(Instant::now() < deadline, "never connected");
            assert_eq!(probe.drive(plan, &mut buf, Instant::now()), None);
            std::thread::sleep(Duration::from_millis(1));
        }
        (probe, server)
    }

    /// Drives `probe` until it ends or `limit` passes.
    fn drive_until(probe: &mut Probe, plan: &Plan, limit: Duration) -> Option<Outcome> {
        let mut buf = vec![0; 4096];
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(o) = probe.drive(plan, &mut buf, Instant::now()) {
                return Some(o);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    #[test]
    fn chat_replies_are_found_among_the_rooms_broadcasts() {
        let p = plan(Protocol::Chat);
        let (mut probe, _server) = open_probe(&p, Misbehave::Slow);
        probe.opening = Opening::Open;
        probe.at = 2; // Expect
        probe.outstanding = 2;
        let stream = b"MSG bob hi\nOK commands: /nick /who /msg /quit /help\nJOIN x\n\
                       LEAVE y connection lost\nOK commands: /nick /who /msg /quit /help\n";
        for split in 0..stream.len() {
            probe.outstanding = 2;
            let (a, b) = stream.split_at(split);
            probe.consume(&p, a, Instant::now()).unwrap();
            probe.consume(&p, b, Instant::now()).unwrap();
            assert_eq!(probe.outstanding, 0, "split {split}");
        }
        probe.outstanding = 1;
        assert!(probe
            .consume(&p, b"ERR invalid text\n", Instant::now())
            .is_err());
    }

    #[test]
    fn a_slow_reader_reads_nothing_until_its_pause_ends() {
        let mut p = plan(Protocol::Tne);
        p.pause = Duration::from_millis(300);
        let (mut probe, mut server) = open_probe(&p, Misbehave::Slow);
        let mut buf = vec![0; 4096];
        assert_eq!(probe.drive(&p, &mut buf, Instant::now()), None);
        let stall_ends = probe.wake().unwrap();
        // The server gets three requests and answers them at once.
        let request = &p.script.request;
        let mut got = vec![0; request.len() * 3];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, request.repeat(3));
        let Expect::Exact(reply) = &p.script.expect else {
            panic!("tne replies exactly")
        };
        server.write_all(&reply.repeat(3)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(probe.drive(&p, &mut buf, Instant::now()), None);
        assert_eq!(probe.outstanding, 3, "read during the pause");
        let end = drive_until(&mut probe, &p, Duration::from_secs(5));
        assert_eq!(end, Some(Outcome::Done { dropped: false }));
        assert!(Instant::now() >= stall_ends);
    }

    #[test]
    fn a_wrong_reply_byte_is_caught() {
        let p = plan(Protocol::Tne);
        let (mut probe, mut server) = open_probe(&p, Misbehave::Trickle);
        let mut got = vec![0; p.script.request.len()];
        let mut buf = vec![0; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut n = 0;
        let t0 = Instant::now();
        server.set_nonblocking(true).unwrap();
        while n < got.len() {
            assert!(Instant::now() < deadline);
            assert_eq!(probe.drive(&p, &mut buf, Instant::now()), None);
            if let Ok(k) = server.read(&mut got[n..]) {
                n += k;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, p.script.request);
        // Its first bytes came one per gap.
        let trickled = got.len().min(TRICKLE_BYTES) as u32;
        assert!(t0.elapsed() >= TRICKLE_GAP * (trickled - 3));
        server.write_all(b"TNE20003:A:xx\n").unwrap();
        let end = drive_until(&mut probe, &p, Duration::from_secs(5));
        assert_eq!(end, Some(Outcome::Wrong));
    }

    #[test]
    fn a_server_that_never_closes_after_half_open_is_hung() {
        let mut p = plan(Protocol::Transform);
        p.pause = Duration::from_millis(10);
        p.hang_limit = Duration::from_millis(200);
        let (mut probe, mut server) = open_probe(&p, Misbehave::HalfOpen);
        let end = drive_until(&mut probe, &p, Duration::from_secs(5));
        assert_eq!(end, Some(Outcome::Hung("a close after a half-close")));
        // It sent half a request, then shut its write side.
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, p.half());
    }

    #[test]
    fn a_reset_resets_and_garbage_ends_when_the_server_closes() {
        let p = plan(Protocol::Transform);
        let (mut probe, mut server) = open_probe(&p, Misbehave::Reset);
        let end = drive_until(&mut probe, &p, Duration::from_secs(5));
        assert_eq!(end, Some(Outcome::Done { dropped: true }));
        drop(probe);
        let mut got = Vec::new();
        let err = server.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);

        let (mut probe, mut server) = open_probe(&p, Misbehave::Garbage);
        let Expect::Exact(reply) = p.script.expect.clone() else {
            panic!("uppercase replies exactly")
        };
        let request_len = p.script.request.len();
        let peer = std::thread::spawn(move || {
            let mut request = vec![0; request_len];
            server.read_exact(&mut request).unwrap();
            server.write_all(&reply).unwrap();
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).unwrap();
            rest.len()
        });
        let end = drive_until(&mut probe, &p, Duration::from_secs(5));
        assert_eq!(end, Some(Outcome::Done { dropped: true }));
        assert_eq!(
            peer.join().unwrap(),
            GARBAGE_BYTES,
            "garbage, then a half-close"
        );
    }
}
