//! Measures chat fan-out against a running server: R receivers, one sender,
//! one loop (mio) for all of them.
//!
//! ```text
//! cargo build --release --bin onepoll --example chat_fanout
//! target/release/onepoll -q -b 127.0.0.1 chat=6000 &
//! target/release/examples/chat_fanout 127.0.0.1:6000 1000 20000 64 paced 1 $!
//! ```
//!
//! Arguments: ADDR RECEIVERS LINES LINE_BYTES MODE SLEEPERS [SERVER_PID].
//! MODE `burst` writes every line as fast as the socket takes them;
//! `paced` keeps the sender at most 256 lines ahead of the slowest reading
//! receiver (a steady sender). SLEEPERS of the receivers never read.
//! Prints the time until every reading receiver has every line,
//! deliveries per second, receivers dropped, and the server's peak RSS
//! (sampled from /proc when SERVER_PID is given). Stops by itself: every
//! wait is bounded by 60 s without progress.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const SENDER: Token = Token(usize::MAX);
const WINDOW: usize = 256;
const STALL: Duration = Duration::from_secs(60);

struct Receiver {
    stream: TcpStream,
    sleeper: bool,
    partial: Vec<u8>,
    lines: usize,
    dropped: bool,
    closed: bool,
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let std = std::net::TcpStream::connect(addr)?;
    std.set_nonblocking(true)?;
    Ok(TcpStream::from_std(std))
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!("usage: chat_fanout ADDR RECEIVERS LINES LINE_BYTES burst|paced SLEEPERS [PID]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[0].parse().expect("ADDR");
    let count: usize = args[1].parse().expect("RECEIVERS");
    let lines: usize = args[2].parse().expect("LINES");
    let line_bytes: usize = args[3].parse().expect("LINE_BYTES");
    let paced = args[4] == "paced";
    let sleepers: usize = args[5].parse().expect("SLEEPERS");
    let pid: Option<u32> = args.get(6).and_then(|p| p.parse().ok());

    let mut poll = Poll::new()?;
    let mut receivers = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = connect(addr)?;
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        receivers.push(Receiver {
            stream,
            sleeper: i < sleepers,
            partial: Vec::new(),
            lines: 0,
            dropped: false,
            closed: false,
        });
    }
    let mut sender = connect(addr)?;
    poll.registry()
        .register(&mut sender, SENDER, Interest::READABLE | Interest::WRITABLE)?;
    // Greetings (WELCOME, JOIN) are read in the loop and not counted.
    std::thread::sleep(Duration::from_millis(300));
    let baseline_rss = rss_kib(pid);
    let mut line = vec![b'x'; line_bytes];
    line.push(b'\n');
    let mut sent = 0usize;
    let mut offset = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut peak_rss = baseline_rss;
    let mut last_sample = Instant::now();
    let mut last_progress = Instant::now();
    let msg_prefix = b"MSG ";
    let start = Instant::now();
    loop {
        let readers_done = receivers
            .iter()
            .filter(|r| !r.sleeper && !r.closed)
            .all(|r| r.lines >= lines);
        if readers_done && sent == lines {
            break;
        }
        // Write lines while allowed.
        let slowest = receivers
            .iter()
            .filter(|r| !r.sleeper && !r.closed)
            .map(|r| r.lines)
            .min()
            .unwrap_or(sent);
        while sent < lines && (!paced || sent < slowest + WINDOW) {
            match sender.write(&line[offset..]) {
                Ok(n) => {
                    offset += n;
                    if offset == line.len() {
                        offset = 0;
                        sent += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            if event.token() == SENDER {
                // Drain the sender's own notices (LEAVE ...).
                loop {
                    match sender.read(&mut buf) {
                        Ok(0) => panic!("server closed the sender"),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let Some(r) = receivers.get_mut(event.token().0) else {
                continue;
            };
            if r.sleeper || r.closed {
                continue;
            }
            loop {
                match r.stream.read(&mut buf) {
                    Ok(0) => {
                        r.closed = true;
                        r.dropped = true;
                        break;
                    }
                    Ok(n) => {
                        last_progress = Instant::now();
                        let mut data = &buf[..n];
                        while let Some(lf) = data.iter().position(|&b| b == b'\n') {
                            let whole = if r.partial.is_empty() {
                                &data[..lf]
                            } else {
                                r.partial.extend_from_slice(&data[..lf]);
                                &r.partial[..]
                            };
                            if whole.starts_with(msg_prefix) {
                                r.lines += 1;
                            }
                            r.partial.clear();
                            data = &data[lf + 1..];
                        }
                        r.partial.extend_from_slice(data);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        r.closed = true;
                        r.dropped = true;
                        break;
                    }
                }
            }
        }
        if last_sample.elapsed() >= Duration::from_millis(50) {
            peak_rss = peak_rss.max(rss_kib(pid));
            last_sample = Instant::now();
        }
        if last_progress.elapsed() > STALL {
            eprintln!("no progress for {STALL:?}; giving up");
            break;
        }
    }
    let elapsed = start.elapsed();
    peak_rss = peak_rss.max(rss_kib(pid));
    let reading: Vec<&Receiver> = receivers.iter().filter(|r| !r.sleeper).collect();
    let dropped = reading.iter().filter(|r| r.dropped).count();
    let delivered: usize = reading.iter().map(|r| r.lines).sum();
    println!(
        "{} receivers ({} never reading), {} lines of {} B, {}: {:.3} s, {} deliveries, {:.0} deliveries/s, {} reading receivers dropped, server RSS {} KiB before, peak {} KiB",
        count,
        sleepers,
        lines,
        line_bytes,
        if paced { "paced" } else { "burst" },
        elapsed.as_secs_f64(),
        delivered,
        delivered as f64 / elapsed.as_secs_f64(),
        dropped,
        baseline_rss,
        peak_rss
    );
    Ok(())
}
