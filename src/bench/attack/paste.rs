//! chat-paste: one chat client pastes `--size`-byte lines as fast as its
//! socket takes them, while `--conns` receivers (5) each read at most
//! `--read-rate` bytes a second. Without flood control the receivers
//! become slow consumers and are dropped; with it the sender is slowed.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::net::{self, Sources};
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// How often receivers read their allowance.
const TICK: Duration = Duration::from_millis(5);

struct Receiver {
    sock: Option<TcpStream>,
    tokens: f64,
    got: u64,
}

/// Reads from `sock` until it would block or `budget` bytes are read:
/// `Ok(n)` bytes read, `Err(())` if the server closed it.
fn read_some(sock: &mut TcpStream, buf: &mut [u8], budget: u64) -> Result<u64, ()> {
    let mut n = 0u64;
    while n < budget {
        let want = usize::try_from(budget - n)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match sock.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => return Err(()),
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(_) => return Err(()),
        }
    }
    Ok(n)
}

/// Runs chat-paste for `--duration`.
pub fn run(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Chat);
    let mut sources = Sources::new(config.source, config.per_addr);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    let mut receivers = Vec::with_capacity(config.conns);
    for i in 0..config.conns {
        let mut sock = net::connect_from(sources.next_addr(), dst)?;
        poll.registry()
            .register(&mut sock, Token(i + 1), Interest::READABLE)?;
        receivers.push(Receiver {
            sock: Some(sock),
            tokens: 0.0,
            got: 0,
        });
    }
    // The receivers are in the room before the paste starts.
    std::thread::sleep(left(deadline, Duration::from_millis(200)));
    let mut sender = net::connect_from(sources.fresh().next_addr(), dst)?;
    poll.registry().register(
        &mut sender,
        Token(0),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut line = vec![b'p'; config.size];
    for (i, b) in line.iter_mut().enumerate() {
        *b = b'!' + (i % 90) as u8;
    }
    line.push(b'\n');
    let start = Instant::now();
    let mut last = start;
    let mut sent = 0u64;
    let mut sender_open = true;
    let mut first_drop: Option<Duration> = None;
    let mut dropped = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let rate = config.read_rate as f64;
    while Instant::now() < deadline {
        poll.poll(&mut events, Some(left(deadline, TICK)))?;
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        if sender_open {
            // Write what the socket takes; read (and drop) what it gets.
            loop {
                let at = (sent % line.len() as u64) as usize;
                match sender.write(line.get(at..).unwrap_or_default()) {
                    Ok(n) => sent += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(_) => {
                        sender_open = false;
                        break;
                    }
                }
            }
            if sender_open && read_some(&mut sender, &mut buf, u64::MAX).is_err() {
                sender_open = false;
            }
        }
        for r in receivers.iter_mut() {
            let Some(sock) = r.sock.as_mut() else {
                continue;
            };
            r.tokens = (r.tokens + rate * dt).min(rate / 10.0);
            let budget = r.tokens.max(0.0) as u64;
            match read_some(sock, &mut buf, budget) {
                Ok(n) => {
                    r.tokens -= n as f64;
                    r.got += n;
                }
                Err(()) => {
                    r.sock = None;
                    dropped += 1;
                    first_drop.get_or_insert_with(|| start.elapsed());
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-3);
    let lines = sent / line.len() as u64;
    let got: Vec<String> = receivers
        .iter()
        .map(|r| format!("{:.1}", r.got as f64 / 1e6))
        .collect();
    let first = first_drop.map_or(String::new(), |t| {
        format!(", the first after {:.0} ms", t.as_secs_f64() * 1000.0)
    });
    Ok(Outcome::new(format!(
        "one sender pasted {} lines of {} B in {:.1} s ({:.0} lines/s{}); {} receivers reading {} B/s: {} dropped{}; they got [{}] MB",
        lines,
        config.size,
        elapsed,
        lines as f64 / elapsed,
        if sender_open { "" } else { ", then closed by the server" },
        config.conns,
        config.read_rate,
        dropped,
        first,
        got.join(", ")
    )))
}
