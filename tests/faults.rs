//! Fault injection end to end, built only with `--features fault-injection`
//! (see `server::faults`): the real `onepoll` binary serves all five
//! protocols while its reads, writes and accepts fail on a seeded schedule
//! — short reads and writes, `WouldBlock` and `EINTR` at every call,
//! `ECONNRESET`/`EPIPE` mid-reply, `EINTR`/`ECONNABORTED`/`EMFILE` on
//! accept — and every reply must be the one a fault-free server gives.
//!
//! A connection ended by an injected fatal fault, or shed by an injected
//! `EMFILE`, may lose replies: it is counted as cut, what it received must
//! still be an exact prefix of what it was owed, and there may be no more
//! cut connections than the fatal faults and `EMFILE`s the server reports
//! having injected. Every other connection must get exactly its replies.
//! Nothing may hang (every wait is bounded), the chat room keeps no ghost,
//! no upload leaves a torn file or a temporary, and the server still shuts
//! down cleanly on SIGINT.
//!
//! More schedules: `ONEPOLL_FAULT_SEEDS=1-100 cargo test --features
//! fault-injection --test faults` (a range, or seeds separated by commas);
//! harsher ones with `ONEPOLL_FAULT_RATE`, `ONEPOLL_FAULT_FATAL` and
//! `ONEPOLL_FAULT_ACCEPT` (probabilities per call).
//!
//! Last, a core made to panic (the poison bytes `FF FF FF FF`) must cost
//! its one connection only, on every protocol.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use onepoll::proto::rng::Rng;

use common::{Server, TempDir, PATIENCE};

// ----------------------------------------------------------------------
// Schedules and the server under test
// ----------------------------------------------------------------------

/// Non-fatal faults (short, `WouldBlock`, `EINTR`) per read or write.
const RATE: f64 = 0.3;
/// Fatal faults (`ECONNRESET`, `EPIPE`) per read or write.
const FATAL: f64 = 0.001;
/// Failed accepts (`EINTR`, `ECONNABORTED`, `EMFILE`).
const ACCEPT: f64 = 0.05;

/// The seeds run by default (override with `ONEPOLL_FAULT_SEEDS`).
const DEFAULT_SEEDS: [u64; 4] = [1, 2, 3, 4];

/// The fault schedule a server runs under.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    seed: u64,
    rate: f64,
    fatal: f64,
    accept: f64,
}

impl Schedule {
    fn fault_free() -> Schedule {
        Schedule {
            seed: 0,
            rate: 0.0,
            fatal: 0.0,
            accept: 0.0,
        }
    }

    /// The default rates, or those of `ONEPOLL_FAULT_RATE`, `_FATAL` and
    /// `_ACCEPT` in the test's environment (to explore harsher schedules).
    fn seeded(seed: u64) -> Schedule {
        let rate = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Schedule {
            seed,
            rate: rate("ONEPOLL_FAULT_RATE", RATE),
            fatal: rate("ONEPOLL_FAULT_FATAL", FATAL),
            accept: rate("ONEPOLL_FAULT_ACCEPT", ACCEPT),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ONEPOLL_FAULT_SEED", self.seed.to_string()),
            ("ONEPOLL_FAULT_RATE", self.rate.to_string()),
            ("ONEPOLL_FAULT_FATAL", self.fatal.to_string()),
            ("ONEPOLL_FAULT_ACCEPT", self.accept.to_string()),
        ]
    }
}

/// `ONEPOLL_FAULT_SEEDS`: `A-B` or `A,B,C`; [`DEFAULT_SEEDS`] if unset.
fn seeds() -> Vec<u64> {
    let Ok(spec) = std::env::var("ONEPOLL_FAULT_SEEDS") else {
        return DEFAULT_SEEDS.to_vec();
    };
    if let Some((a, b)) = spec.split_once('-') {
        let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        return (a..=b).collect();
    }
    spec.split(',').map(|s| s.trim().parse().unwrap()).collect()
}

/// Every protocol on an OS-chosen port, uploads saved per connection so
/// that concurrent uploads can all be checked.
fn start(schedule: &Schedule, dir: &TempDir) -> Server {
    let mut args = vec![
        "-d",
        dir.str(),
        "--upload-layout",
        "per-connection",
        "tne=0",
        "cmd=0",
        "chat=0",
        "upload=0",
        "transform=0",
    ];
    // Debug logs (every read and write error) for hunting a failure.
    if std::env::var_os("ONEPOLL_TEST_VERBOSE").is_some() {
        args.push("-vv");
    }
    Server::start_env(&schedule.env(), &args)
}

/// The server's `fault injection totals:` line, as `kind -> count`.
fn injected(log: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .find_map(|l| l.split("fault injection totals: ").nth(1))
        .unwrap_or_else(|| panic!("no totals line in the log:\n{log}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

// ----------------------------------------------------------------------
// Request/reply connections: what to send, what is owed
// ----------------------------------------------------------------------

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Send everything, shut the write side, read to the server's close.
    HalfClose,
    /// Send everything, read exactly the replies owed, then close.
    ReadExact,
    /// Send everything (ending with a goodbye), read to the server's close.
    ServerCloses,
}

/// One connection's script.
struct Job {
    protocol: &'static str,
    /// The bytes to send, in the writes to send them in.
    chunks: Vec<Vec<u8>>,
    /// Every byte of reply the connection is owed, in order.
    expected: Vec<u8>,
    mode: Mode,
    /// For upload: the connection's files, to find on disk afterwards.
    files: Vec<Vec<u8>>,
    /// Read the replies slowly, so that they pile up in the server past
    /// its backpressure threshold.
    slow: bool,
}

/// How a connection went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Every reply, exactly.
    Exact,
    /// Ended early (a reset, or a close with replies missing), having
    /// received an exact prefix of this many bytes.
    Cut(usize),
}

/// Printable excerpt of `bytes` around `at`.
fn around(bytes: &[u8], at: usize) -> String {
    let from = at.saturating_sub(24);
    let to = (at + 24).min(bytes.len());
    bytes[from..to].escape_ascii().to_string()
}

/// Runs one connection: a writer thread sends the chunks while this one
/// reads. A wait that runs out is a hang, reported as an error, as is any
/// byte that differs from what is owed.
fn run_job(addr: SocketAddr, job: &Job) -> Result<Outcome, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    if job.slow {
        small_receive_buffer(&stream);
    }
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let chunks = job.chunks.clone();
    let half_close = job.mode == Mode::HalfClose;
    let sender = thread::spawn(move || -> io::Result<()> {
        for chunk in &chunks {
            writer.write_all(chunk)?;
        }
        if half_close {
            writer.shutdown(Shutdown::Write)?;
        }
        Ok(())
    });
    let expected = &job.expected;
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = vec![0u8; if job.slow { 16 * 1024 } else { 64 * 1024 }];
    let hang = loop {
        if job.slow {
            thread::sleep(Duration::from_millis(1));
        }
        if job.mode == Mode::ReadExact && got.len() >= expected.len() {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break true
            }
            Err(_) => break false,
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let sent = sender.join().unwrap();
    let diverge = got
        .iter()
        .zip(expected.iter())
        .position(|(a, b)| a != b)
        .or((got.len() > expected.len()).then_some(expected.len()));
    if let Some(at) = diverge {
        return Err(format!(
            "{}: reply differs at byte {at} of {}: got ..{}.. owed ..{}..",
            job.protocol,
            expected.len(),
            around(&got, at),
            around(expected, at)
        ));
    }
    if got.len() == expected.len() {
        return Ok(Outcome::Exact);
    }
    if hang {
        return Err(format!(
            "{}: hung after {} of {} bytes (writer: {sent:?})",
            job.protocol,
            got.len(),
            expected.len()
        ));
    }
    Ok(Outcome::Cut(got.len()))
}

/// Caps the socket's receive buffer (and turns off its autotuning), so
/// that replies a slow reader leaves unread pile up in the server.
fn small_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt reads `size`, an int that lives across the call,
    // on a descriptor `stream` keeps open.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
}

/// Splits `bytes` into writes of random sizes, one-byte writes included.
fn split(rng: &mut Rng, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let cap = 1u64 << rng.below(17);
        let n = 1 + rng.below(cap.min(rest.len() as u64)) as usize;
        let n = n.min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    chunks
}

/// Printable text of `len` random bytes.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-_";
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
        .collect()
}

/// Printable text of up to `max - 1` random bytes.
fn some_text(rng: &mut Rng, max: u64) -> Vec<u8> {
    let len = rng.below(max) as usize;
    text(rng, len)
}

fn pick_mode(rng: &mut Rng) -> Mode {
    if rng.below(2) == 0 {
        Mode::HalfClose
    } else {
        Mode::ReadExact
    }
}

fn transform_header(action: u8, len: usize) -> [u8; 4] {
    ((u32::from(action) << 27) | len as u32).to_be_bytes()
}

/// The fault-free response to a transform request (shuffle aside).
fn transform_reply(action: u8, data: &[u8]) -> Vec<u8> {
    let body: Vec<u8> = match action {
        0x01 => data.to_ascii_uppercase(),
        0x02 => data.to_ascii_lowercase(),
        0x04 => {
            let mut after_letter = false;
            data.iter()
                .map(|&b| {
                    let out = match (b.is_ascii_alphabetic(), after_letter) {
                        (true, false) => b.to_ascii_uppercase(),
                        (true, true) => b.to_ascii_lowercase(),
                        (false, _) => b,
                    };
                    after_letter = b.is_ascii_alphabetic();
                    out
                })
                .collect()
        }
        0x08 => data.iter().rev().copied().collect(),
        _ => b"error".to_vec(),
    };
    let mut reply = (body.len() as u32).to_be_bytes().to_vec();
    reply.extend_from_slice(&body);
    reply
}

/// Many small pipelined transforms of every deterministic action, and
/// unknown actions, on one connection.
fn transform_pipelined(rng: &mut Rng) -> Job {
    const ACTIONS: [u8; 7] = [0x01, 0x02, 0x04, 0x08, 0x00, 0x03, 0x11];
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..1 + rng.below(30) {
        let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
        let data = some_text(rng, 400);
        wire.extend_from_slice(&transform_header(action, data.len()));
        wire.extend_from_slice(&data);
        expected.extend(transform_reply(action, &data));
    }
    Job {
        protocol: "transform",
        chunks: split(rng, &wire),
        expected,
        mode: pick_mode(rng),
        files: Vec::new(),
        slow: false,
    }
}

/// A few large streamed transforms (sent in big writes while the replies
/// stream back) on one connection.
fn transform_streamed(rng: &mut Rng) -> Job {
    const STREAMED: [u8; 3] = [0x01, 0x02, 0x04];
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let action = STREAMED[rng.below(3) as usize];
        let len = 100_000 + rng.below(300_000) as usize;
        let data = text(rng, len);
        wire.extend_from_slice(&transform_header(action, data.len()));
        wire.extend_from_slice(&data);
        expected.extend(transform_reply(action, &data));
    }
    let chunks = wire
        .chunks(1 + rng.below(64 * 1024) as usize)
        .map(<[u8]>::to_vec)
        .collect();
    Job {
        protocol: "transform",
        chunks,
        expected,
        mode: Mode::ReadExact,
        files: Vec::new(),
        slow: false,
    }
}

/// Pipelined reverses whose replies (5 MiB and more) outrun a slow
/// reader: the server stops reading at its backpressure threshold and
/// resumes as the replies drain.
fn transform_backpressure(rng: &mut Rng) -> Job {
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let len = 48 * 1024 + rng.below(16 * 1024) as usize;
        let data = text(rng, len);
        wire.extend_from_slice(&transform_header(0x08, data.len()));
        wire.extend_from_slice(&data);
        expected.extend(transform_reply(0x08, &data));
    }
    let chunks = wire
        .chunks(1 + rng.below(256 * 1024) as usize)
        .map(<[u8]>::to_vec)
        .collect();
    Job {
        protocol: "transform",
        chunks,
        expected,
        mode: pick_mode(rng),
        files: Vec::new(),
        slow: true,
    }
}

/// tne over TCP: good messages, bad ones, CRLF endings.
fn tne(rng: &mut Rng, conn: usize) -> Job {
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for j in 0..1 + rng.below(30) {
        match rng.below(6) {
            0 => {
                wire.extend_from_slice(b"hello\n");
                expected.extend_from_slice(b"TNE20003:E:missing TNE20003 header\n");
            }
            1 => {
                wire.extend_from_slice(b"TNE20003:\r\n");
                expected.extend_from_slice(b"TNE20003:E:empty message\n");
            }
            _ => {
                let mut msg = format!("c{conn} m{j} ").into_bytes();
                msg.extend(some_text(rng, 200));
                wire.extend_from_slice(b"TNE20003:");
                wire.extend_from_slice(&msg);
                wire.extend_from_slice(if rng.below(4) == 0 { b"\r\n" } else { b"\n" });
                expected.extend_from_slice(b"TNE20003:A:");
                expected.extend_from_slice(&msg);
                expected.push(b'\n');
            }
        }
    }
    Job {
        protocol: "tne",
        chunks: split(rng, &wire),
        expected,
        mode: pick_mode(rng),
        files: Vec::new(),
        slow: false,
    }
}

/// cmd: before and after HELO, known and unknown verbs; most say BYE.
fn cmd(rng: &mut Rng, conn: usize) -> Job {
    let mut wire = b"ECHO early\n".to_vec();
    let mut expected = b"ERR say HELO first\n".to_vec();
    wire.extend_from_slice(format!("HELO h{conn}\n").as_bytes());
    expected.extend_from_slice(format!("Hello h{conn}, pleased to meet you.\n").as_bytes());
    for _ in 0..rng.below(20) {
        match rng.below(4) {
            0 => {
                wire.extend_from_slice(b"REQIP\n");
                expected.extend_from_slice(b"127.0.0.1\n");
            }
            1 => {
                wire.extend_from_slice(b"FROB\n");
                expected.extend_from_slice(b"ERR unknown command\n");
            }
            _ => {
                let t = some_text(rng, 300);
                wire.extend_from_slice(b"echo ");
                wire.extend_from_slice(&t);
                wire.extend_from_slice(b"\r\n");
                expected.extend_from_slice(&t);
                expected.push(b'\n');
            }
        }
    }
    let mode = if rng.below(4) == 0 {
        pick_mode(rng)
    } else {
        wire.extend_from_slice(b"BYE\nECHO never answered\n");
        expected.extend_from_slice(b"See ya later\n");
        Mode::ServerCloses
    };
    Job {
        protocol: "cmd",
        chunks: split(rng, &wire),
        expected,
        mode,
        files: Vec::new(),
        slow: false,
    }
}

/// upload: a few files, each line naming its connection, file and line
/// (so that the files can be found and checked on disk), then the
/// zero-line goodbye.
fn upload(rng: &mut Rng, seed: u64, conn: usize) -> Job {
    let (mut wire, mut expected, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..1 + rng.below(3) {
        let lines = 1 + rng.below(40) as u32;
        let mut file = Vec::new();
        for j in 0..lines {
            file.extend_from_slice(format!("s{seed} c{conn} f{k} l{j} ").as_bytes());
            file.extend(some_text(rng, 200));
            file.push(b'\n');
        }
        wire.extend_from_slice(&lines.to_be_bytes());
        wire.extend_from_slice(&file);
        expected.push(b'A');
        files.push(file);
    }
    wire.extend_from_slice(&0u32.to_be_bytes());
    expected.push(b'Q');
    Job {
        protocol: "upload",
        chunks: split(rng, &wire),
        expected,
        mode: Mode::ServerCloses,
        files,
        slow: false,
    }
}

/// Many transforms of one fixed size (16 bytes with the header): every
/// 16th byte ends a request, so reads that end on a request boundary with
/// more queued are common.
fn transform_fixed(rng: &mut Rng) -> Job {
    let (mut wire, mut expected) = (Vec::new(), Vec::new());
    for _ in 0..100 + rng.below(200) {
        let data = text(rng, 12);
        wire.extend_from_slice(&transform_header(0x01, 12));
        wire.extend_from_slice(&data);
        expected.extend(transform_reply(0x01, &data));
    }
    Job {
        protocol: "transform",
        chunks: vec![wire],
        expected,
        mode: Mode::ReadExact,
        files: Vec::new(),
        slow: false,
    }
}

/// Every request/reply connection of one run.
fn jobs(seed: u64) -> Vec<Job> {
    let mut rng = Rng::from_seed(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xfa17);
    let mut jobs = Vec::new();
    for conn in 0..240 {
        jobs.push(transform_pipelined(&mut rng));
        jobs.push(tne(&mut rng, conn));
        jobs.push(cmd(&mut rng, conn));
        if conn % 3 == 0 {
            jobs.push(upload(&mut rng, seed, conn));
        }
        if conn % 16 == 0 {
            jobs.push(transform_streamed(&mut rng));
        }
        if conn % 80 == 0 {
            jobs.push(transform_backpressure(&mut rng));
        }
    }
    // Interleave the protocols' arrivals differently on every run.
    for i in (1..jobs.len()).rev() {
        jobs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    jobs
}

/// Connections run at once.
const WORKERS: usize = 16;

/// Runs every job, [`WORKERS`] at a time.
fn run_jobs(server: &Server, jobs: &[Job]) -> Vec<Result<Outcome, String>> {
    let addrs: HashMap<&str, SocketAddr> = ["tne", "cmd", "upload", "transform"]
        .into_iter()
        .map(|p| (p, server.addr(p)))
        .collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; jobs.len()]);
    thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let outcome = run_job(addrs[job.protocol], job);
                results.lock().unwrap()[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

// ----------------------------------------------------------------------
// Chat: a room talking at once
// ----------------------------------------------------------------------

/// A line reader on a chat connection; `None` once it has ended (closed or
/// reset), a panic if it hangs.
struct ChatConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl ChatConn {
    fn connect(addr: SocketAddr) -> ChatConn {
        let stream = TcpStream::connect(addr).expect("connect chat");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        ChatConn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn line(&mut self, who: &str) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) if !line.ends_with('\n') => None,
            Ok(_) => {
                line.pop();
                Some(line)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{who}: chat connection hung")
            }
            Err(_) => None,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok()
    }
}

/// What one member of a room saw.
#[derive(Default)]
struct Member {
    joined: bool,
    cut: bool,
    /// Texts received from each member, by index.
    heard: BTreeMap<usize, Vec<String>>,
    /// The members heard leaving, by index.
    left: Vec<usize>,
}

impl Member {
    /// Notes a `MSG` or `LEAVE` line of a member of this room, whenever it
    /// comes (a member may leave before this one has its nick).
    fn hear(&mut self, round: usize, line: &str) {
        let mut words = line.splitn(3, ' ');
        let (kind, nick, rest) = (words.next(), words.next(), words.next());
        let from = nick
            .and_then(|n| n.strip_prefix(&format!("r{round}c")))
            .and_then(|k| k.parse::<usize>().ok());
        match (kind, from) {
            (Some("MSG"), Some(k)) => self
                .heard
                .entry(k)
                .or_default()
                .push(rest.unwrap_or("").to_string()),
            (Some("LEAVE"), Some(k)) => self.left.push(k),
            _ => {}
        }
    }

    /// Whether every one of `others` has said `lines` lines or left.
    fn heard_all(&self, others: &[usize], lines: usize) -> bool {
        others
            .iter()
            .all(|k| self.left.contains(k) || self.heard.get(k).map_or(0, Vec::len) >= lines)
    }
}

/// One member: joins, takes its nick, waits for the room, says its lines,
/// listens until every other member has said all of theirs (or left),
/// then quits.
fn chat_member(
    addr: SocketAddr,
    round: usize,
    me: usize,
    lines: usize,
    joined: &[Mutex<bool>],
    ready: &Barrier,
) -> Member {
    let who = format!("r{round}c{me}");
    let mut member = Member::default();
    let mut conn = ChatConn::connect(addr);
    let welcomed =
        matches!(conn.line(&format!("{who} before WELCOME")), Some(l) if l.starts_with("WELCOME "));
    let mut nicked = welcomed && conn.send(format!("/nick {who}\n").as_bytes());
    while nicked {
        match conn.line(&format!("{who} before OK nick")) {
            Some(l) if l == format!("OK nick {who}") => break,
            Some(l) => member.hear(round, &l),
            None => nicked = false,
        }
    }
    member.joined = nicked;
    member.cut = !nicked;
    *joined[me].lock().unwrap() = nicked;
    ready.wait();
    if !nicked {
        return member;
    }
    let others: Vec<usize> = (0..joined.len())
        .filter(|&k| k != me && *joined[k].lock().unwrap())
        .collect();
    let mut said = Vec::new();
    for j in 0..lines {
        said.extend_from_slice(format!("line {j} from {me}\n").as_bytes());
    }
    if !conn.send(&said) {
        member.cut = true;
        return member;
    }
    while !member.heard_all(&others, lines) {
        let Some(line) = conn.line(&format!(
            "{who} listening to {others:?}: heard {:?}, left {:?}",
            member
                .heard
                .iter()
                .map(|(k, v)| (k, v.len()))
                .collect::<Vec<_>>(),
            member.left
        )) else {
            member.cut = true;
            return member;
        };
        member.hear(round, &line);
    }
    if !conn.send(b"/quit\n") {
        member.cut = true;
        return member;
    }
    loop {
        match conn.line(&format!("{who} before BYE")) {
            Some(l) if l == "BYE" => break,
            Some(_) => {}
            None => {
                member.cut = true;
                return member;
            }
        }
    }
    // The server closes after BYE.
    if conn.line(&who).is_some() {
        panic!("{who}: a line after BYE");
    }
    member
}

/// Runs `rounds` rooms of `size` members saying `lines` lines each, and
/// checks what every member heard from every other. Returns (members,
/// exact, cut) and the failures.
fn chat_rooms(addr: SocketAddr, rounds: usize, size: usize, lines: usize) -> (Tally, Vec<String>) {
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let joined: Vec<Mutex<bool>> = (0..size).map(|_| Mutex::new(false)).collect();
        let ready = Barrier::new(size);
        let members: Vec<Member> = thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|me| {
                    let (joined, ready) = (&joined, &ready);
                    scope.spawn(move || chat_member(addr, round, me, lines, joined, ready))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, member) in members.iter().enumerate() {
            tally.conns += 1;
            if member.cut {
                tally.cut += 1;
            } else {
                tally.exact += 1;
            }
            if !member.joined {
                continue;
            }
            for (k, sender) in members.iter().enumerate() {
                if k == i || !sender.joined {
                    continue;
                }
                let owed: Vec<String> = (0..lines).map(|j| format!("line {j} from {k}")).collect();
                let heard = member.heard.get(&k).cloned().unwrap_or_default();
                let prefix = heard.len() <= owed.len() && owed[..heard.len()] == heard[..];
                let whole = heard.len() == owed.len();
                if !prefix || (!whole && !member.cut && !sender.cut) {
                    failures.push(format!(
                        "chat round {round}: member {i} heard from {k}: {heard:?}, owed {} lines \
                         (member cut: {}, sender cut: {})",
                        owed.len(),
                        member.cut,
                        sender.cut
                    ));
                }
            }
        }
    }
    (tally, failures)
}

/// Waits (bounded) until `/who` from a fresh member names only that
/// member: nobody who left, was cut or panicked stays in the room. A
/// fresh member cut by a fault simply tries again.
fn assert_no_ghost(server: &Server) {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut conn = ChatConn::connect(server.addr("chat"));
        let Some(welcome) = conn.line("ghost check") else {
            continue;
        };
        let nick = welcome.strip_prefix("WELCOME ").unwrap().to_string();
        if conn.send(b"/who\n") {
            while let Some(line) = conn.line("ghost check") {
                if line.starts_with("WHO ") {
                    if line == format!("WHO {nick}") {
                        return;
                    }
                    last = line;
                    break;
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("the room keeps ghosts: {last}");
}

// ----------------------------------------------------------------------
// A whole run under one schedule
// ----------------------------------------------------------------------

/// Connections of one protocol: how many, how many got every reply, how
/// many were cut.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    conns: usize,
    exact: usize,
    cut: usize,
}

/// What a run under one schedule did.
struct Report {
    tallies: BTreeMap<&'static str, Tally>,
    injected: BTreeMap<String, u64>,
}

impl Report {
    fn total(&self) -> Tally {
        self.tallies.values().fold(Tally::default(), |a, t| Tally {
            conns: a.conns + t.conns,
            exact: a.exact + t.exact,
            cut: a.cut + t.cut,
        })
    }
}

/// Checks the upload directory: no temporary left, every file whole, and
/// every file a connection was owed (or got `A` for) present.
fn check_uploads(dir: &Path, jobs: &[Job], results: &[Result<Outcome, String>]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut on_disk: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for conn_dir in fs::read_dir(dir).unwrap() {
        let conn_dir = conn_dir.unwrap().path();
        if !conn_dir.is_dir() {
            failures.push(format!("upload: left behind: {}", conn_dir.display()));
            continue;
        }
        for file in fs::read_dir(&conn_dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".txt") || name.starts_with('.') {
                failures.push(format!("upload: left behind: {}", path.display()));
                continue;
            }
            let bytes = fs::read(&path).unwrap();
            let key = bytes
                .split(|&b| b == b' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(&b' ');
            on_disk.insert(key, bytes);
        }
    }
    for (job, result) in jobs.iter().zip(results) {
        if job.protocol != "upload" {
            continue;
        }
        let acked = match result {
            Ok(Outcome::Exact) => job.files.len(),
            Ok(Outcome::Cut(n)) => *n,
            Err(_) => 0,
        };
        for (k, file) in job.files.iter().enumerate() {
            let key = file
                .split(|&b| b == b' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(&b' ');
            match on_disk.get(&key) {
                Some(bytes) if bytes == file => {}
                Some(_) => failures.push(format!(
                    "upload: {} is torn or mixed",
                    String::from_utf8_lossy(&key)
                )),
                None if k < acked => failures.push(format!(
                    "upload: {} was acknowledged but is not on disk",
                    String::from_utf8_lossy(&key)
                )),
                None => {}
            }
        }
    }
    failures
}

/// Runs every protocol's connections under `schedule` against one server,
/// checks every reply, the room and the upload directory, shuts the server
/// down with SIGINT and returns what happened.
fn run_schedule(schedule: Schedule) -> Report {
    let dir = TempDir::new(&format!("seed{}", schedule.seed));
    let mut server = start(&schedule, &dir);
    let jobs = jobs(schedule.seed);
    let chat_addr = server.addr("chat");
    let (results, chat) = thread::scope(|scope| {
        let chat = scope.spawn(|| chat_rooms(chat_addr, 3, 10, 30));
        let results = run_jobs(&server, &jobs);
        (results, chat.join())
    });
    let (chat, mut failures) = chat.unwrap_or_else(|panic| {
        let log = server.log();
        let chat_log: Vec<&str> = log.lines().filter(|l| l.contains("chat")).collect();
        eprintln!(
            "seed {}: the server's chat log:\n{}",
            schedule.seed,
            chat_log.join("\n")
        );
        std::panic::resume_unwind(panic)
    });
    let mut tallies = BTreeMap::new();
    tallies.insert("chat", chat);
    for (job, result) in jobs.iter().zip(&results) {
        let tally: &mut Tally = tallies.entry(job.protocol).or_default();
        tally.conns += 1;
        match result {
            Ok(Outcome::Exact) => tally.exact += 1,
            Ok(Outcome::Cut(_)) => tally.cut += 1,
            Err(e) => failures.push(e.clone()),
        }
    }
    assert_no_ghost(&server);
    server.signal(libc::SIGINT);
    let status = server.wait_exit();
    // The log's last line, once the reader has caught up with the exit.
    server.wait_for_log("fault injection totals");
    let log = server.log();
    assert!(
        status.success(),
        "seed {}: exit {status}; log tail:\n{}",
        schedule.seed,
        tail(&log)
    );
    failures.extend(check_uploads(&dir.0, &jobs, &results));
    if log.contains("panicked") {
        failures.push("the server logged a panic".to_string());
    }
    assert!(
        failures.is_empty(),
        "seed {}: {} failure(s):\n{}\nlog tail:\n{}",
        schedule.seed,
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&log)
    );
    Report {
        tallies,
        injected: injected(&log),
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ----------------------------------------------------------------------
// The tests
// ----------------------------------------------------------------------

#[test]
fn without_faults_every_connection_gets_exactly_its_replies() {
    let report = run_schedule(Schedule::fault_free());
    eprintln!("fault free: {:?}", report.tallies);
    for (protocol, tally) in &report.tallies {
        assert_eq!(tally.cut, 0, "{protocol}: {tally:?}");
        assert_eq!(tally.exact, tally.conns, "{protocol}: {tally:?}");
    }
    assert!(
        report.injected.values().all(|&n| n == 0),
        "{:?}",
        report.injected
    );
}

#[test]
fn under_seeded_faults_every_reply_is_the_fault_free_one() {
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    let (mut conns, mut cut) = (0, 0);
    for seed in seeds() {
        let report = run_schedule(Schedule::seeded(seed));
        let total = report.total();
        let fatal = report.injected["reset_read"]
            + report.injected["reset_write"]
            + report.injected["emfile_accept"];
        eprintln!(
            "seed {seed}: {} connections, {} exact, {} cut ({fatal} fatal faults injected); {:?}; {:?}",
            total.conns, total.exact, total.cut, report.tallies, report.injected
        );
        assert!(
            total.cut as u64 <= fatal,
            "seed {seed}: {} connections cut, but only {fatal} fatal faults injected",
            total.cut
        );
        assert!(
            total.exact * 10 >= total.conns * 9,
            "seed {seed}: too few exact ({total:?}): the schedule is too harsh to prove anything"
        );
        for (kind, n) in report.injected {
            *all.entry(kind).or_default() += n;
        }
        conns += total.conns;
        cut += total.cut;
    }
    eprintln!("all seeds: {conns} connections ({cut} cut); injected {all:?}");
    for (kind, n) in &all {
        assert!(*n > 0, "no {kind} was ever injected: {all:?}");
    }
}

/// SIGINT while requests wait in the kernel unread, and the seam cuts the
/// reads short and refuses them: every request sent before the signal is
/// answered, then the server closes.
#[test]
fn under_faults_sigint_still_answers_every_request_sent_before_it() {
    let seeds = match std::env::var("ONEPOLL_FAULT_SEEDS") {
        Ok(_) => seeds(),
        Err(_) => (11..=16).collect(),
    };
    for seed in seeds {
        let schedule = Schedule {
            seed,
            rate: RATE,
            fatal: 0.0,
            accept: 0.0,
        };
        let dir = TempDir::new(&format!("sigint{seed}"));
        let mut server = start(&schedule, &dir);
        let mut rng = Rng::from_seed(seed);
        let mut jobs = Vec::new();
        for conn in 0..30 {
            jobs.push(transform_pipelined(&mut rng));
            jobs.push(transform_fixed(&mut rng));
            jobs.push(tne(&mut rng, conn));
            jobs.push(cmd(&mut rng, conn));
            if conn % 3 == 0 {
                jobs.push(upload(&mut rng, seed, conn));
            }
        }
        let mut streams: Vec<TcpStream> = jobs
            .iter()
            .map(|job| {
                let stream = TcpStream::connect(server.addr(job.protocol)).unwrap();
                stream.set_read_timeout(Some(PATIENCE)).unwrap();
                stream.set_write_timeout(Some(PATIENCE)).unwrap();
                stream
            })
            .collect();
        // Every connection accepted before the signal (a peer still in the
        // backlog is not a client yet).
        let deadline = Instant::now() + PATIENCE;
        while server.log().matches(" open ").count() < jobs.len() {
            assert!(Instant::now() < deadline, "not all connections opened");
            thread::sleep(Duration::from_millis(5));
        }
        // Stopped, the server reads nothing: every request is in the
        // kernel when the loop wakes up to the signal.
        server.signal(libc::SIGSTOP);
        for (stream, job) in streams.iter_mut().zip(&jobs) {
            stream.write_all(&job.chunks.concat()).unwrap();
        }
        server.signal(libc::SIGINT);
        server.signal(libc::SIGCONT);
        let mut failures = Vec::new();
        for (i, (stream, job)) in streams.iter_mut().zip(&jobs).enumerate() {
            let mut got = Vec::new();
            let end = stream.read_to_end(&mut got);
            let _ = stream.shutdown(Shutdown::Both);
            if got != job.expected || end.is_err() {
                failures.push((
                    format!(
                        "{} #{i}: got {} of {} bytes ({end:?}): ..{}..",
                        job.protocol,
                        got.len(),
                        job.expected.len(),
                        around(&got, got.len()),
                    ),
                    stream.local_addr().unwrap().port(),
                ));
            }
        }
        let status = server.wait_exit();
        assert!(status.success(), "exit {status}");
        let log = server.log();
        let failures: Vec<String> = failures
            .into_iter()
            .map(|(failure, port)| {
                let port = format!(":{port}");
                let said: Vec<&str> = log
                    .lines()
                    .filter(|l| l.ends_with(&port) || l.contains(&format!("{port} ")))
                    .collect();
                format!("{failure}; the log of it:\n{}", said.join("\n"))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "seed {seed}: {} of {} connections lost replies:\n{}\nlog tail:\n{}",
            failures.len(),
            jobs.len(),
            failures.join("\n"),
            tail(&log)
        );
    }
}

// ----------------------------------------------------------------------
// A panicking core
// ----------------------------------------------------------------------

/// The bytes that make a core panic in the fault-injection build
/// (`server::faults::POISON`).
const POISON: &[u8] = b"\xff\xff\xff\xff";

fn round_trip(stream: &mut TcpStream, request: &[u8], reply: &[u8]) {
    stream.write_all(request).unwrap();
    let mut got = vec![0; reply.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(
        got.escape_ascii().to_string(),
        reply.escape_ascii().to_string()
    );
}

/// One request/reply exchange per request/reply protocol, on `streams`
/// (transform, tne, cmd after HELO), tagged with `tag`.
fn serve_each(streams: &mut [TcpStream; 3], tag: &str) {
    let data = format!("data {tag}");
    let mut request = transform_header(0x08, data.len()).to_vec();
    request.extend_from_slice(data.as_bytes());
    round_trip(
        &mut streams[0],
        &request,
        &transform_reply(0x08, data.as_bytes()),
    );
    round_trip(
        &mut streams[1],
        format!("TNE20003:{tag}\n").as_bytes(),
        format!("TNE20003:A:{tag}\n").as_bytes(),
    );
    round_trip(
        &mut streams[2],
        format!("ECHO {tag}\n").as_bytes(),
        format!("{tag}\n").as_bytes(),
    );
}

fn bystanders(server: &Server) -> [TcpStream; 3] {
    let mut cmd = server.connect("cmd");
    round_trip(&mut cmd, b"HELO b\n", b"Hello b, pleased to meet you.\n");
    [server.connect("transform"), server.connect("tne"), cmd]
}

/// A chat member with `nick`, its `OK nick` read.
fn chat_join(server: &Server, nick: &str) -> ChatConn {
    let mut conn = ChatConn::connect(server.addr("chat"));
    assert!(conn.line(nick).unwrap().starts_with("WELCOME "));
    assert!(conn.send(format!("/nick {nick}\n").as_bytes()));
    chat_until(&mut conn, nick, &format!("OK nick {nick}"));
    conn
}

/// Reads lines until one starts with `prefix`; returns it.
fn chat_until(conn: &mut ChatConn, who: &str, prefix: &str) -> String {
    loop {
        let line = conn
            .line(who)
            .unwrap_or_else(|| panic!("{who}: closed while waiting for {prefix:?}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

/// Sends `bytes`, then expects the server to close the connection: EOF
/// or a reset, not a hang, and not a reply that the panic should have
/// dropped with the connection.
fn expect_closed(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "the poisoned connection was not closed"
        ),
    }
}

#[test]
fn a_panicking_core_costs_its_one_connection_and_nothing_else() {
    let dir = TempDir::new("panic");
    let mut server = start(&Schedule::fault_free(), &dir);
    let mut others = bystanders(&server);
    serve_each(&mut others, "before");
    let mut ann = chat_join(&server, "ann");
    let mut bob = chat_join(&server, "bob");
    // An upload half sent when the others panic.
    let mut upload = server.connect("upload");
    upload.write_all(&2u32.to_be_bytes()).unwrap();
    upload.write_all(b"first line\n").unwrap();

    // A request/reply protocol's core panics, one connection of each.
    let mut transform_poison = transform_header(0x1f, (1 << 27) - 1).to_vec();
    assert_eq!(transform_poison, POISON, "action 0x1f, LENGTH 0x7FFFFFF");
    transform_poison.extend_from_slice(b"more");
    let mut upload_poison = 3u32.to_be_bytes().to_vec();
    upload_poison.extend_from_slice(b"saved to a temporary\n");
    upload_poison.extend_from_slice(POISON);
    upload_poison.push(b'\n');
    let poisons: [(&str, Vec<u8>); 4] = [
        ("transform", transform_poison),
        ("tne", [b"TNE20003:".as_slice(), POISON, b"\n"].concat()),
        ("cmd", [b"HELO p\nECHO ".as_slice(), POISON, b"\n"].concat()),
        ("upload", upload_poison),
    ];
    for (protocol, bytes) in &poisons {
        expect_closed(server.connect(protocol), bytes);
        server.wait_for_log(&format!("{protocol} core panicked on connection #"));
    }

    // A chat member's core panics: the others hear it leave, and the room
    // forgets it.
    let mut pat = chat_join(&server, "pat");
    chat_until(&mut ann, "ann", "NICK ");
    chat_until(&mut bob, "bob", "NICK ");
    assert!(pat.send(&[b"hi\n".as_slice(), POISON, b"\n"].concat()));
    assert_eq!(pat.line("pat"), None, "pat's connection is closed");
    server.wait_for_log("chat core panicked on connection #");
    assert_eq!(
        chat_until(&mut ann, "ann", "LEAVE "),
        "LEAVE pat connection lost"
    );
    assert_eq!(
        chat_until(&mut bob, "bob", "LEAVE "),
        "LEAVE pat connection lost"
    );
    assert!(ann.send(b"/who\n"));
    assert_eq!(chat_until(&mut ann, "ann", "WHO "), "WHO ann bob");

    // Everyone else is served on, old connections and new.
    serve_each(&mut others, "after");
    let mut fresh = bystanders(&server);
    serve_each(&mut fresh, "fresh");
    assert!(bob.send(b"still here\n"));
    assert_eq!(chat_until(&mut ann, "ann", "MSG "), "MSG bob still here");
    upload.write_all(b"second line\n\0\0\0\0").unwrap();
    let mut status = Vec::new();
    upload.read_to_end(&mut status).unwrap();
    assert_eq!(status, b"AQ");
    drop((others, fresh, ann, bob, pat, upload));

    server.signal(libc::SIGINT);
    assert!(server.wait_exit().success());
    let log = server.log();
    assert_eq!(log.matches("core panicked").count(), 5, "{log}");
    // The poisoned upload left no temporary; the other one was saved.
    let mut saved = Vec::new();
    for entry in fs::read_dir(&dir.0).unwrap() {
        for file in fs::read_dir(entry.unwrap().path()).unwrap() {
            saved.push(fs::read(file.unwrap().path()).unwrap());
        }
    }
    assert_eq!(saved, [b"first line\nsecond line\n".to_vec()]);
}
