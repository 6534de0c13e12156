//! The bystander: one honest cmd client on its own thread and connection
//! (from 127.0.0.1, blocking socket), saying HELO once and then `ECHO x`
//! every period, timing each round trip into an HdrHistogram. It runs
//! beside the attack's loop so that the attack's own work never delays
//! the measurement.

use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::net;
use crate::bench::stats::Stats;

/// How long the bystander waits for its first HELO reply.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// After the attack ends, how long an outstanding `ECHO` may still take.
const GRACE: Duration = Duration::from_secs(10);
/// Socket read timeout: how often a waiting read looks at the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// What the bystander saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Round trips (`ops` is their number), an unanswered echo counted
    /// with the time it was waited for.
    pub stats: Stats,
    /// Echoes not answered (the connection lost, or no reply within the
    /// grace after the attack): the maximum is then a lower bound.
    pub unanswered: u64,
    /// Replies that were not `x`.
    pub wrong: u64,
    /// Times it had to connect again.
    pub reconnects: u64,
}

/// A running bystander.
#[derive(Debug)]
pub struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Bystander {
    /// Connects to the cmd listener `addr`, says HELO, and starts echoing
    /// every `every`; returns once the first HELO was answered.
    pub fn start(addr: SocketAddrV4, every: Duration) -> io::Result<Bystander> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("bystander".to_owned())
            .spawn(move || run(addr, every, &flag, &ready_tx))?;
        match ready_rx.recv_timeout(READY_WITHIN) {
            Ok(Ok(())) => Ok(Bystander {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the bystander's HELO got no reply",
                ))
            }
        }
    }

    /// Stops it (after its outstanding `ECHO`, within a grace) and returns
    /// what it saw.
    pub fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.thread.take().and_then(|t| t.join().ok());
        seen.unwrap_or_else(|| Seen {
            stats: Stats::new(),
            unanswered: 0,
            wrong: 0,
            reconnects: 0,
        })
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One session: connected, HELO answered.
fn session(addr: SocketAddrV4) -> io::Result<std::net::TcpStream> {
    let mut s = net::connect_blocking(None, addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(TICK))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"HELO bystander\n")?;
    let mut line = Vec::new();
    let deadline = Instant::now() + READY_WITHIN;
    match read_line(&mut s, &mut line, &|| Instant::now() > deadline)? {
        true if line.starts_with(b"Hello bystander") => Ok(s),
        true => Err(io::Error::other(format!(
            "HELO answered {:?}",
            String::from_utf8_lossy(&line)
        ))),
        false => Err(io::Error::new(io::ErrorKind::TimedOut, "no HELO reply")),
    }
}

/// Reads one line (without LF) into `line`, byte by byte from the kernel's
/// buffer (replies are tiny). `Ok(false)` when `give_up` said so first.
fn read_line(
    s: &mut std::net::TcpStream,
    line: &mut Vec<u8>,
    give_up: &dyn Fn() -> bool,
) -> io::Result<bool> {
    line.clear();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if byte == *b"\n" => return Ok(true),
            Ok(_) => line.extend_from_slice(&byte),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if give_up() {
                    return Ok(false);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn run(
    addr: SocketAddrV4,
    every: Duration,
    stop: &AtomicBool,
    ready: &mpsc::Sender<io::Result<()>>,
) -> Seen {
    let mut seen = Seen {
        stats: Stats::new(),
        unanswered: 0,
        wrong: 0,
        reconnects: 0,
    };
    let mut sock = match session(addr) {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            Some(s)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return seen;
        }
    };
    let stopped_at: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let Some(s) = sock.as_mut() else {
            // Lost: try again (it is part of what the bystander sees).
            thread::sleep(every.max(Duration::from_millis(100)));
            seen.reconnects += 1;
            sock = session(addr).ok();
            continue;
        };
        let give_up = || {
            if stop.load(Ordering::Relaxed) {
                let t = stopped_at.get().unwrap_or_else(Instant::now);
                stopped_at.set(Some(t));
                t.elapsed() > GRACE
            } else {
                false
            }
        };
        let outcome = s
            .write_all(b"ECHO x\n")
            .and_then(|()| read_line(s, &mut line, &give_up));
        match outcome {
            Ok(true) => {
                seen.stats.record(sent.elapsed());
                if line != b"x" {
                    seen.wrong += 1;
                }
            }
            Ok(false) => {
                // Still waiting when the grace ran out: counted with the
                // time waited so far, a lower bound the report marks.
                seen.stats.record(sent.elapsed());
                seen.unanswered += 1;
                break;
            }
            Err(_) => {
                seen.stats.record(sent.elapsed());
                seen.unanswered += 1;
                sock = None;
            }
        }
        if let Some(rest) = (sent + every).checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
    }
    seen
}
