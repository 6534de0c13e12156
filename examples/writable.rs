//! # writable — an output queue, and WRITABLE interest only while bytes are left
//!
//! What it teaches: a reply can be larger than the socket will take at once.
//! Each request line is a byte count N; the reply is N bytes of text
//! (`abc…z` lines). A 100 MB reply meets a full socket within microseconds,
//! so the server keeps an output queue, writes what the socket takes, asks
//! mio for WRITABLE, and writes the rest when the event comes. The queue is
//! bounded: it is refilled from the replies owed, 64 KiB at a time, only
//! as the socket drains, so a huge reply costs no memory.
//!
//! Why WRITABLE only while bytes are left? A socket with room in its send
//! buffer is writable nearly all the time. With select() or poll() (level-
//! triggered), a socket left in the write set makes every call return at
//! once: the loop spins at 100% CPU doing nothing. mio is edge-triggered, so
//! merely keeping WRITABLE costs less (an extra event now and then), but the
//! usual way code keeps it — re-registering READABLE | WRITABLE after each
//! event — re-arms the edge, and the kernel reports the writable socket at
//! once: the same spin. `--always-writable` does that; the wake-up count
//! printed every second shows it.
//!
//! Run:  cargo run --example writable -- 9002 [--always-writable]
//! Try:  echo 100000000 | nc -N 127.0.0.1 9002 | wc -c    100000000
//!       printf '5\n3\n' | nc -N 127.0.0.1 9002   two in one read: abcdeabc
//!       nc 127.0.0.1 9002, idle: 0 wake-ups a second; with
//!       --always-writable, hundreds of thousands.
//!
//! Questions learners ask (mio issues #1076, #1337, #1611):
//! - Must I read until WouldBlock? Yes, or remember you stopped: `pump`
//!   stops reading at `MAX_OWED` replies and reads on after a write.
//! - WRITABLE spins? Above. And the opposite surprise, WRITABLE reported
//!   once and never again (#1337): edge-triggered, the next one comes only
//!   after a write met WouldBlock. So `pump` writes until WouldBlock (or
//!   nothing is owed), then waits for the event.
//! - Two requests in one read? `take_requests` answers every complete line.
#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
/// What the replies are made of.
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz\n";
/// Most reply bytes generated ahead of the socket.
const CHUNK: usize = 64 * 1024;
/// Replies owed before we stop reading requests (backpressure).
const MAX_OWED: usize = 64;
/// Longest request line.
const MAX_LINE: usize = 32;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// READABLE, and WRITABLE when `writable`.
fn interest(writable: bool) -> Interest {
    if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

struct Conn {
    stream: TcpStream,
    /// Bytes of a request line not ended yet.
    line: Vec<u8>,
    /// Replies owed, in order: (bytes still to generate, bytes generated).
    owed: VecDeque<(u64, u64)>,
    /// Generated and not yet written: the output queue.
    queue: Vec<u8>,
    read_closed: bool,
    wants_writable: bool,
}

fn main() -> io::Result<()> {
    let mut port = std::env::var("PORT").map_or(Ok(9002), |p| p.parse());
    let mut always_writable = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--always-writable" => always_writable = true,
            p => port = p.parse(),
        }
    }
    let port: u16 = port.map_err(|_| io::Error::other("usage: [PORT] [--always-writable]"))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut wakeups, mut next_report) = (0u64, Instant::now() + Duration::from_secs(1));
    loop {
        let timeout = next_report.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if !interrupted(&e) {
                return Err(e);
            }
        }
        if !events.is_empty() {
            wakeups += 1;
        }
        if Instant::now() >= next_report {
            if wakeups > 0 || !conns.is_empty() {
                println!("wake-ups in the last second: {wakeups}");
            }
            wakeups = 0;
            next_report += Duration::from_secs(1);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, always_writable);
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let done = pump(conn, &mut buf).unwrap_or(true);
            let interest = if always_writable {
                // The mistake: ask for everything, every time.
                poll.registry()
                    .reregister(&mut conn.stream, Token(key), interest(true))
            } else {
                set_interest(conn, &poll, key)
            };
            if done || interest.is_err() {
                conns.remove(key);
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>, always: bool) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let entry = conns.vacant_entry();
                if poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest(always))
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        line: Vec::new(),
                        owed: VecDeque::new(),
                        queue: Vec::new(),
                        read_closed: false,
                        wants_writable: always,
                    });
                }
            }
            Err(e) if would_block(&e) => return,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return println!("accept: {e}"),
        }
    }
}

/// Writes until WouldBlock or nothing is owed, reads while fewer than
/// `MAX_OWED` replies are owed, until WouldBlock. True when finished.
fn pump(conn: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    loop {
        loop {
            refill(conn);
            if conn.queue.is_empty() {
                break;
            }
            match conn.stream.write(&conn.queue) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(conn.queue.drain(..n)), // a short write keeps the rest
                Err(e) if would_block(&e) => break,   // full: wait for WRITABLE
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if conn.read_closed || conn.owed.len() >= MAX_OWED {
            // Not reading on: a WRITABLE event brings us back when the
            // client takes its replies, and we read on then.
            return Ok(conn.read_closed && conn.owed.is_empty() && conn.queue.is_empty());
        }
        match conn.stream.read(buf) {
            Ok(0) => conn.read_closed = true,
            Ok(n) => take_requests(conn, &buf[..n]),
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Every complete line in `bytes` is a request (several may come in one
/// read); an incomplete one waits in `conn.line` for the next read.
fn take_requests(conn: &mut Conn, bytes: &[u8]) {
    for &b in bytes {
        if b != b'\n' {
            if conn.line.len() < MAX_LINE {
                conn.line.push(b);
            }
            continue;
        }
        let text = String::from_utf8_lossy(&conn.line);
        // A bad count is answered with 0 bytes: this protocol has no errors.
        let n = text.trim().parse::<u64>().unwrap_or(0);
        conn.owed.push_back((n, 0));
        conn.line.clear();
    }
}

/// Tops the queue up to `CHUNK` bytes from the replies owed, in order.
fn refill(conn: &mut Conn) {
    while conn.queue.len() < CHUNK {
        let Some((left, done)) = conn.owed.front_mut() else {
            return;
        };
        let take = (*left).min((CHUNK - conn.queue.len()) as u64);
        for i in *done..*done + take {
            conn.queue
                .push(PATTERN[(i % PATTERN.len() as u64) as usize]);
        }
        *left -= take;
        *done += take;
        if *left == 0 {
            conn.owed.pop_front();
        }
    }
}

/// WRITABLE while bytes are left (queued or owed), and only then.
fn set_interest(conn: &mut Conn, poll: &Poll, key: usize) -> io::Result<()> {
    let wants_writable = !conn.queue.is_empty() || !conn.owed.is_empty();
    if wants_writable != conn.wants_writable {
        poll.registry()
            .reregister(&mut conn.stream, Token(key), interest(wants_writable))?;
        conn.wants_writable = wants_writable;
    }
    Ok(())
}
