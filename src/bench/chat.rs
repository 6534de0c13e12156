//! chat fan-out: `--receivers` connections that only listen, `--senders`
//! that send messages carrying their sender, sequence number and send time,
//! so that each delivery's latency is timed where it lands. A message is
//! complete when every receiver has it; a sender keeps at most
//! `--pipeline` messages incomplete (closed loop, "as fast as delivered"),
//! or sends at its share of `--rate` whatever is in flight (latency from
//! the intended time).
//!
//! Every delivery is checked: `MSG <the sender's nick> <text>` with the
//! text byte for byte, each sender's messages in order at each receiver.
//! `JOIN`, `LEAVE` and `NICK` lines are tolerated; anything else is an
//! error.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::args::BenchConfig;
use super::progress::Progress;
use super::rate::Schedule;
use super::report::Report;
use super::reqrep::usage;
use super::script::payload;
use super::stats::Stats;
use super::{procfs, BenchError};

/// The room has settled when no receiver has heard anything for this long.
const SETTLE_QUIET: Duration = Duration::from_millis(200);

/// The longest the room is given to settle. A room of 10,000 receivers
/// announces some 50 million `JOIN` lines (1 GB) while it fills: cut off
/// early, the rest would still flow during the run, costing the server
/// that announces them (as the spec says) CPU and delivery latency the
/// run would charge to its messages.
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// Messages a sender may have in flight at a fixed rate.
const RATE_WINDOW: u64 = 65_536;

/// Bytes of the text before the padding: `SSSSS QQQQQQQQQQQQ TTTTTTTTTTTTTTTT `.
pub const HEADER_LEN: usize = 36;

/// The text of message `seq` of sender `sender`, sent at `ts_ns` after the
/// run's epoch, `size` bytes long (at least [`HEADER_LEN`]).
pub fn message_text(sender: usize, seq: u64, ts_ns: u64, pad: &[u8]) -> String {
    format!(
        "{sender:05} {seq:012} {ts_ns:016} {}",
        String::from_utf8_lossy(pad)
    )
}

/// A delivery parsed from a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The sender's index.
    pub sender: usize,
    /// Its sequence number.
    pub seq: u64,
    /// Its send time, nanoseconds after the epoch.
    pub ts_ns: u64,
}

/// What a line from the server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// A message of ours, well formed.
    Delivery(Delivery),
    /// A notice we do not time (`JOIN`, `LEAVE`, `NICK`, `WELCOME`).
    Notice,
    /// Anything else, or a message with wrong bytes.
    Wrong,
}

/// Classifies one line (without LF) against the senders' nicks and the
/// expected padding.
pub fn parse_line(line: &[u8], nicks: &[Vec<u8>], pad: &[u8]) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line.strip_prefix(b"MSG ") else {
        return match [&b"JOIN "[..], b"LEAVE ", b"NICK ", b"WELCOME "]
            .iter()
            .any(|p| line.starts_with(p))
        {
            true => Line::Notice,
            false => Line::Wrong,
        };
    };
    let Some(space) = rest.iter().position(|&b| b == b' ') else {
        return Line::Wrong;
    };
    let (nick, text) = rest.split_at(space);
    let text = text.get(1..).unwrap_or_default();
    if text.len() != HEADER_LEN + pad.len() || text.get(HEADER_LEN..) != Some(pad) {
        return Line::Wrong;
    }
    let field = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = text.get(range)?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let spaces_ok = [5, 18, 35].iter().all(|&i| text.get(i) == Some(&b' '));
    match (spaces_ok, field(0..5), field(6..18), field(19..35)) {
        (true, Some(sender), Some(seq), Some(ts_ns))
            if nicks.get(sender as usize).map(Vec::as_slice) == Some(nick) =>
        {
            Line::Delivery(Delivery {
                sender: sender as usize,
                seq,
                ts_ns,
            })
        }
        _ => Line::Wrong,
    }
}

struct Receiver {
    sock: TcpStream,
    carry: Vec<u8>,
    /// Next sequence number expected from each sender.
    next: Vec<u64>,
    alive: bool,
}

/// A sender's messages not yet delivered to every receiver. Each receiver
/// gets a sender's messages in order, so they complete in order.
#[derive(Debug, Default)]
pub struct Window {
    /// Messages sent.
    pub sent: u64,
    /// Messages every receiver has.
    pub completed: u64,
    /// Receivers still to get each incomplete message, oldest first.
    remaining: VecDeque<u32>,
}

impl Window {
    /// A message was sent to `receivers` receivers.
    pub fn push(&mut self, receivers: u32) {
        self.remaining.push_back(receivers);
        self.sent += 1;
        self.pop_complete();
    }

    /// Message `seq` reached one more receiver.
    pub fn deliver(&mut self, seq: u64) {
        let idx = seq.wrapping_sub(self.completed);
        if let Some(r) = usize::try_from(idx)
            .ok()
            .and_then(|i| self.remaining.get_mut(i))
        {
            *r = r.saturating_sub(1);
        }
        self.pop_complete();
    }

    /// Messages sent and not yet complete.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.completed
    }

    fn pop_complete(&mut self) {
        while self.remaining.front() == Some(&0) {
            self.remaining.pop_front();
            self.completed += 1;
        }
    }
}

struct Sender {
    sock: TcpStream,
    out: Vec<u8>,
    out_pos: usize,
    window: Window,
    schedule: Option<Schedule>,
    alive: bool,
}

/// A greeted connection: the nonblocking stream, its nick, and the bytes
/// read past its `WELCOME` line.
type Opened = (TcpStream, Vec<u8>, Vec<u8>);

/// Connections opened together before their greetings are read: the
/// server then accepts them in a few wake-ups and announces each wave's
/// arrivals (`JOIN`) to the members in one write each, not one write per
/// arrival per member. Opened one by one, a room of 10,000 costs the
/// server some 50 million writes (minutes) before the run can start.
const OPEN_WAVE: usize = 256;

/// Opens `count` connections to `target`, [`OPEN_WAVE`] at a time, each
/// greeted (see [`open`]).
fn open_many(
    target: SocketAddr,
    timeout: Duration,
    count: usize,
) -> Result<Vec<Opened>, BenchError> {
    let mut opened = Vec::with_capacity(count);
    while opened.len() < count {
        let wave = OPEN_WAVE.min(count - opened.len());
        let socks = (0..wave)
            .map(|_| connect(target, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        for sock in socks {
            opened.push(greet(target, timeout, sock)?);
        }
    }
    Ok(opened)
}

/// Opens a connection with a blocking connect.
fn connect(target: SocketAddr, timeout: Duration) -> Result<std::net::TcpStream, BenchError> {
    std::net::TcpStream::connect_timeout(&target, timeout).map_err(|e| setup_error(target, e))
}

fn setup_error(target: SocketAddr, e: io::Error) -> BenchError {
    BenchError::Setup(format!("cannot open a chat connection to {target}: {e}"))
}

/// Opens a connection with a blocking connect and reads its `WELCOME`
/// line, each within `timeout`; returns the nonblocking stream, the nick
/// and bytes read past the line. A greeting that does not come, or is not
/// `WELCOME`, is [`BenchError::NoReply`], saying what came instead.
fn open(target: SocketAddr, timeout: Duration) -> Result<Opened, BenchError> {
    greet(target, timeout, connect(target, timeout)?)
}

/// Reads the `WELCOME` line of a connection just opened (see [`open`]).
fn greet(
    target: SocketAddr,
    timeout: Duration,
    sock: std::net::TcpStream,
) -> Result<Opened, BenchError> {
    let setup = |e: io::Error| setup_error(target, e);
    sock.set_nodelay(true).map_err(setup)?;
    sock.set_read_timeout(Some(timeout)).map_err(setup)?;
    let mut got = Vec::new();
    match greeting(&sock, &mut got) {
        Ok(opened) => Ok(opened),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(BenchError::NoReply(format!(
                "no greeting from {target} in {} s \u{2014} is it serving chat? ({})",
                timeout.as_secs_f64(),
                shown(&got)
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(BenchError::NoReply(format!(
            "the first line from {target} is not WELCOME \u{2014} is it serving chat? ({})",
            shown(&got)
        ))),
        Err(e) => Err(setup(e)),
    }
}

/// What came instead of a greeting, for the messages.
fn shown(got: &[u8]) -> String {
    match got {
        [] => "nothing came back".to_string(),
        _ => format!(
            "the first bytes back were \"{}\"",
            got.get(..48).unwrap_or(got).escape_ascii()
        ),
    }
}

/// Reads the `WELCOME` line from `sock` into `got`, then makes the
/// stream nonblocking.
fn greeting(
    sock: &std::net::TcpStream,
    got: &mut Vec<u8>,
) -> io::Result<(TcpStream, Vec<u8>, Vec<u8>)> {
    let mut chunk = [0u8; 512];
    let mut reader = sock;
    let line_end = loop {
        if let Some(i) = got.iter().position(|&b| b == b'\n') {
            break i;
        }
        match reader.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    };
    let line = got.get(..line_end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let nick = line
        .strip_prefix(b"WELCOME ")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no WELCOME line"))?
        .to_vec();
    let rest = got.get(line_end + 1..).unwrap_or_default().to_vec();
    sock.set_nonblocking(true)?;
    Ok((TcpStream::from_std(sock.try_clone()?), nick, rest))
}

/// Drops the complete lines at the front of `carry`, keeping a partial one.
fn drop_lines(carry: &mut Vec<u8>) {
    if let Some(last) = carry.iter().rposition(|&b| b == b'\n') {
        carry.drain(..=last);
    }
}

/// Reads and drops what the room tells the receivers while it fills: the
/// spec announces every arrival to every member (`JOIN`), about N²/2
/// lines for N clients, which a server that skips them does not pay. The
/// run starts once no receiver has heard anything for [`SETTLE_QUIET`]
/// (at most [`SETTLE_MAX`]), so it times message delivery, not arrivals.
fn settle(poll: &mut Poll, receivers: &mut [Receiver]) -> Result<(), BenchError> {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    for r in receivers.iter_mut() {
        drop_lines(&mut r.carry);
    }
    let deadline = Instant::now() + SETTLE_MAX;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "onepoll-bench: warning: the room was still hearing arrivals after {} s; \
                 the run starts anyway, and the server's remaining notices are in its figures",
                SETTLE_MAX.as_secs()
            );
            return Ok(());
        }
        poll.poll(&mut events, Some(SETTLE_QUIET.min(left)))
            .map_err(BenchError::Io)?;
        if events.is_empty() {
            return Ok(());
        }
        for event in events.iter() {
            let Some(r) = receivers.get_mut(event.token().0) else {
                continue;
            };
            loop {
                match r.sock.read(&mut buf) {
                    Ok(0) => {
                        return Err(BenchError::Setup(
                            "the server closed a receiver while the room filled".into(),
                        ))
                    }
                    Ok(n) => {
                        r.carry.extend_from_slice(buf.get(..n).unwrap_or_default());
                        drop_lines(&mut r.carry);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(BenchError::Io(e)),
                }
            }
        }
    }
}

/// Runs the chat workload against `target`.
pub fn run(cfg: &BenchConfig, target: SocketAddr) -> Result<Report, BenchError> {
    let mut poll = Poll::new().map_err(BenchError::Io)?;
    let mut stats = Stats::new();
    let pad = payload(cfg.size.saturating_sub(HEADER_LEN));
    let (nr, ns) = (cfg.receivers, cfg.senders);
    let mut receivers = Vec::with_capacity(nr);
    for (i, (mut sock, _, carry)) in open_many(target, cfg.reply_timeout, nr)?
        .into_iter()
        .enumerate()
    {
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)
            .map_err(BenchError::Io)?;
        receivers.push(Receiver {
            sock,
            carry,
            next: vec![0; ns],
            alive: true,
        });
    }
    let mut senders = Vec::with_capacity(ns);
    let mut nicks = Vec::with_capacity(ns);
    let mut sender_socks = Vec::with_capacity(ns);
    for _ in 0..ns {
        let (sock, nick, _) = open(target, cfg.reply_timeout)?;
        sender_socks.push(sock);
        nicks.push(nick);
    }
    settle(&mut poll, &mut receivers)?;
    // Senders join the poll only now, so their first WRITABLE edge is
    // seen by the run.
    for (i, mut sock) in sender_socks.into_iter().enumerate() {
        poll.registry()
            .register(
                &mut sock,
                Token(nr + i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(BenchError::Io)?;
        senders.push(Sender {
            sock,
            out: Vec::new(),
            out_pos: 0,
            window: Window::default(),
            schedule: None,
            alive: true,
        });
    }
    let before = cfg.server_pid.and_then(|p| procfs::sample(p).ok());
    let bench_before = procfs::own_cpu();
    let epoch = Instant::now();
    let end = epoch + cfg.duration;
    let msg_cap = cfg
        .requests
        .map(|n| n.div_ceil(nr as u64))
        .unwrap_or(u64::MAX);
    if let Some(rate) = cfg.rate {
        for (i, s) in senders.iter_mut().enumerate() {
            s.schedule = Some(Schedule::new(epoch, rate, i, ns));
        }
    }
    // At a fixed rate the schedule paces the senders; the window only
    // bounds memory if receivers fall far behind.
    let window = match cfg.rate {
        Some(_) => (cfg.pipeline as u64).max(RATE_WINDOW),
        None => cfg.pipeline as u64,
    };
    let mut live_receivers = nr as u32;
    let mut progress = Progress::new(cfg, cfg.workload.unit());
    progress.start(epoch);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total_sent = 0u64;
    loop {
        let now = Instant::now();
        if now >= end || live_receivers == 0 || !senders.iter().any(|s| s.alive) {
            break;
        }
        // Senders send what they may.
        let mut wake = end.min(progress.next());
        for (i, s) in senders.iter_mut().enumerate() {
            if !s.alive {
                continue;
            }
            loop {
                if s.window.in_flight() >= window || total_sent >= msg_cap {
                    break;
                }
                let at = match &mut s.schedule {
                    None => now,
                    Some(sched) => match sched.take_due(now) {
                        Some(at) => at,
                        None => {
                            wake = wake.min(sched.next());
                            break;
                        }
                    },
                };
                let ts = at.saturating_duration_since(epoch).as_nanos() as u64;
                s.out
                    .extend_from_slice(message_text(i, s.window.sent, ts, &pad).as_bytes());
                s.out.push(b'\n');
                s.window.push(live_receivers);
                total_sent += 1;
            }
            if flush(s, &mut stats).is_err() {
                stats.disconnects += 1;
                s.alive = false;
            }
        }
        let timeout = match wake.saturating_duration_since(now) {
            t if cfg.rate.is_some() && t < Duration::from_millis(1) => Duration::ZERO,
            t => t,
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::Io(e)),
        }
        for event in events.iter() {
            let t = event.token().0;
            if t >= nr {
                let Some(s) = senders.get_mut(t - nr) else {
                    continue;
                };
                if s.alive && drain(&mut s.sock, &mut buf).is_err() {
                    stats.disconnects += 1;
                    s.alive = false;
                }
                continue;
            }
            let Some(r) = receivers.get_mut(t) else {
                continue;
            };
            if !r.alive {
                continue;
            }
            let ok = receive(r, &mut buf, &nicks, &pad, epoch, &mut senders, &mut stats);
            if !ok {
                r.alive = false;
                live_receivers -= 1;
                // Messages it will never get complete without it.
                for (si, s) in senders.iter_mut().enumerate() {
                    let from = r.next.get(si).copied().unwrap_or(0);
                    for seq in from..s.window.sent {
                        s.window.deliver(seq);
                    }
                }
                let _ = poll.registry().deregister(&mut r.sock);
            }
        }
        progress.tick(Instant::now(), &stats);
    }
    let elapsed = epoch.elapsed();
    let after = cfg.server_pid.and_then(|p| procfs::sample(p).ok());
    progress.finish();
    Ok(Report {
        config: cfg.clone(),
        target,
        elapsed,
        stats,
        conns: nr,
        server: usage(before, after),
        bench_cpu: procfs::own_cpu().saturating_sub(bench_before),
        probe: None,
    })
}

fn flush(s: &mut Sender, stats: &mut Stats) -> io::Result<()> {
    while s.out_pos < s.out.len() {
        match s.sock.write(s.out.get(s.out_pos..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                s.out_pos += n;
                stats.bytes_out += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if s.out_pos == s.out.len() {
        s.out.clear();
        s.out_pos = 0;
    }
    Ok(())
}

/// Reads and discards what the server sends a sender (notices, and other
/// senders' messages).
fn drain(sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match sock.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) if n < buf.len() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads a receiver dry, checking and timing every delivery; false when it
/// must be dropped (closed by the server, or a wrong line).
fn receive(
    r: &mut Receiver,
    buf: &mut [u8],
    nicks: &[Vec<u8>],
    pad: &[u8],
    epoch: Instant,
    senders: &mut [Sender],
    stats: &mut Stats,
) -> bool {
    loop {
        let n = match r.sock.read(buf) {
            Ok(0) => {
                stats.disconnects += 1;
                return false;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.disconnects += 1;
                return false;
            }
        };
        stats.bytes_in += n as u64;
        let now = Instant::now();
        let mut chunk = buf.get(..n).unwrap_or_default();
        // Lines split across reads: complete the carried one first.
        if !r.carry.is_empty() {
            let Some(i) = chunk.iter().position(|&b| b == b'\n') else {
                r.carry.extend_from_slice(chunk);
                continue;
            };
            let mut line = std::mem::take(&mut r.carry);
            line.extend_from_slice(chunk.get(..i).unwrap_or_default());
            chunk = chunk.get(i + 1..).unwrap_or_default();
            if !on_line(r, &line, nicks, pad, epoch, now, senders, stats) {
                return false;
            }
            line.clear();
            r.carry = line;
        }
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            let (line, rest) = chunk.split_at(i);
            if !on_line(r, line, nicks, pad, epoch, now, senders, stats) {
                return false;
            }
            chunk = rest.get(1..).unwrap_or_default();
        }
        r.carry.extend_from_slice(chunk);
        if n < buf.len() {
            return true;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn on_line(
    r: &mut Receiver,
    line: &[u8],
    nicks: &[Vec<u8>],
    pad: &[u8],
    epoch: Instant,
    now: Instant,
    senders: &mut [Sender],
    stats: &mut Stats,
) -> bool {
    match parse_line(line, nicks, pad) {
        Line::Notice => true,
        Line::Delivery(d) => {
            let (Some(next), Some(s)) = (r.next.get_mut(d.sender), senders.get_mut(d.sender))
            else {
                stats.errors += 1;
                return false;
            };
            if d.seq != *next {
                stats.errors += 1;
                return false;
            }
            *next += 1;
            s.window.deliver(d.seq);
            let sent_at = epoch + Duration::from_nanos(d.ts_ns);
            stats.record(now.saturating_duration_since(sent_at));
            true
        }
        Line::Wrong => {
            stats.errors += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nicks() -> Vec<Vec<u8>> {
        vec![b"guest7".to_vec(), b"guest8".to_vec()]
    }

    #[test]
    fn a_message_round_trips_through_its_line() {
        let pad = payload(10);
        let text = message_text(1, 42, 123_456_789, &pad);
        assert_eq!(text.len(), HEADER_LEN + 10);
        let line = format!("MSG guest8 {text}");
        assert_eq!(
            parse_line(line.as_bytes(), &nicks(), &pad),
            Line::Delivery(Delivery {
                sender: 1,
                seq: 42,
                ts_ns: 123_456_789
            })
        );
        let crlf = format!("{line}\r");
        assert!(matches!(
            parse_line(crlf.as_bytes(), &nicks(), &pad),
            Line::Delivery(_)
        ));
    }

    #[test]
    fn wrong_nick_padding_or_fields_are_errors() {
        let pad = payload(10);
        let text = message_text(1, 42, 5, &pad);
        for bad in [
            format!("MSG guest7 {text}"),
            format!("MSG guest8 {}", &text[..text.len() - 1]),
            format!("MSG guest8 {}X", &text[..text.len() - 1]),
            format!("MSG guest8 {}", text.replacen("00001", "0000x", 1)),
            "ERR invalid text".to_owned(),
            "MSG".to_owned(),
        ] {
            assert_eq!(
                parse_line(bad.as_bytes(), &nicks(), &pad),
                Line::Wrong,
                "{bad}"
            );
        }
    }

    #[test]
    fn notices_are_tolerated() {
        for notice in [
            "JOIN guest9",
            "LEAVE guest9 connection lost",
            "NICK a b",
            "WELCOME guest3",
        ] {
            assert_eq!(parse_line(notice.as_bytes(), &nicks(), b""), Line::Notice);
        }
    }

    #[test]
    fn a_message_completes_when_every_receiver_has_it() {
        let mut w = Window::default();
        w.push(2);
        w.push(2);
        w.deliver(0);
        w.deliver(1);
        assert_eq!((w.completed, w.in_flight()), (0, 2));
        w.deliver(0);
        assert_eq!((w.completed, w.in_flight()), (1, 1));
        w.deliver(1);
        assert_eq!((w.completed, w.in_flight()), (2, 0));
        w.push(0);
        assert_eq!(w.in_flight(), 0, "no receiver: complete at once");
    }
}
