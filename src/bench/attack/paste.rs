//! chat-paste: one chat client pastes `--size`-byte lines as fast as its
//! socket takes them, while `--conns` receivers (5) each read at most
//! `--read-rate` bytes a second. Without flood control the receivers
//! become slow consumers and are dropped; with it the sender is slowed.
//!
//! A dropped receiver cannot tell by itself soon: the server's close
//! waits in the kernel behind megabytes it has not read yet. The sender
//! tells: it reads everything it gets, and the room announces
//! `LEAVE NICK …` for each receiver dropped (each receiver's nick is taken
//! from its `WELCOME` line before the paste starts).

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
    nick: Option<String>,
    head: Vec<u8>,
    tokens: f64,
    got: u64,
    dropped: bool,
}

/// Reads from `sock` until it would block or `budget` bytes are read,
/// handing each piece to `sink`: `Ok(n)` bytes read, `Err(())` if the
/// server closed it.
fn read_some(
    sock: &mut TcpStream,
    buf: &mut [u8],
    budget: u64,
    mut sink: impl FnMut(&[u8]),
) -> Result<u64, ()> {
    let mut n = 0u64;
    while n < budget {
        let want = usize::try_from(budget - n)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match sock.read(buf.get_mut(..want).unwrap_or_default()) {
            Ok(0) => return Err(()),
            Ok(k) => {
                n += k as u64;
                sink(buf.get(..k).unwrap_or_default());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(_) => return Err(()),
        }
    }
    Ok(n)
}

/// The nick in a `WELCOME NICK` line at the start of `head`, once whole.
fn welcome_nick(head: &[u8]) -> Option<String> {
    let end = head.iter().position(|b| *b == b'\n')?;
    let line = String::from_utf8_lossy(head.get(..end)?);
    let nick = line.trim_end_matches('\r').strip_prefix("WELCOME ")?;
    Some(nick.to_owned())
}

/// Runs chat-paste for `--duration`.
pub fn run(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Chat);
    let mut sources = Sources::new(config.source, config.per_addr);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    let mut receivers = Vec::with_capacity(config.conns);
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..config.conns {
        let mut sock = net::connect_from(sources.next_addr(), dst)?;
        poll.registry()
            .register(&mut sock, Token(i + 1), Interest::READABLE)?;
        receivers.push(Receiver {
            sock: Some(sock),
            nick: None,
            head: Vec::new(),
            tokens: 0.0,
            got: 0,
            dropped: false,
        });
    }
    // The receivers are in the room, their nicks known, before the paste.
    let setup_by = Instant::now() + Duration::from_secs(2).min(config.duration / 4);
    while Instant::now() < setup_by && receivers.iter().any(|r| r.nick.is_none()) {
        poll.poll(&mut events, Some(left(setup_by, TICK)))?;
        for r in receivers.iter_mut().filter(|r| r.nick.is_none()) {
            let Some(sock) = r.sock.as_mut() else {
                continue;
            };
            let head = &mut r.head;
            let _ = read_some(sock, &mut buf, 256, |b| head.extend_from_slice(b));
            r.nick = welcome_nick(&r.head);
        }
    }
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
    let mut heard = Vec::new();
    let mut first_drop: Option<Duration> = None;
    let rate = config.read_rate as f64;
    while Instant::now() < deadline {
        poll.poll(&mut events, Some(left(deadline, TICK)))?;
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        if sender_open {
            // Write what the socket takes; read what it gets.
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
            let read = read_some(&mut sender, &mut buf, u64::MAX, |b| {
                heard.extend_from_slice(b)
            });
            sender_open &= read.is_ok();
            // `LEAVE NICK …` lines for the receivers.
            while let Some(end) = heard.iter().position(|b| *b == b'\n') {
                let text = String::from_utf8_lossy(heard.get(..end).unwrap_or_default());
                let mut words = text.split_ascii_whitespace();
                if let (Some("LEAVE"), Some(nick)) = (words.next(), words.next()) {
                    for r in receivers.iter_mut() {
                        if !r.dropped && r.nick.as_deref() == Some(nick) {
                            r.dropped = true;
                            first_drop.get_or_insert_with(|| start.elapsed());
                        }
                    }
                }
                heard.drain(..=end);
            }
        }
        for r in receivers.iter_mut() {
            let Some(sock) = r.sock.as_mut() else {
                continue;
            };
            r.tokens = (r.tokens + rate * dt).min(rate / 10.0);
            let budget = r.tokens.max(0.0) as u64;
            match read_some(sock, &mut buf, budget, |_| {}) {
                Ok(n) => {
                    r.tokens -= n as f64;
                    r.got += n;
                }
                Err(()) => {
                    r.sock = None;
                    if !r.dropped {
                        r.dropped = true;
                        first_drop.get_or_insert_with(|| start.elapsed());
                    }
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
    let dropped = receivers.iter().filter(|r| r.dropped).count();
    let first = first_drop.map_or(String::new(), |t| {
        format!(
            ", the first {:.0} ms into the paste",
            t.as_secs_f64() * 1000.0
        )
    });
    let unnamed = receivers.iter().filter(|r| r.nick.is_none()).count();
    let unnamed = if unnamed > 0 {
        format!(" ({unnamed} got no WELCOME in time)")
    } else {
        String::new()
    };
    Ok(Outcome::new(format!(
        "one sender wrote {} lines of {} B in {:.1} s ({:.0} lines/s{}); {} receivers reading {} B/s{}: {} dropped{}; they read [{}] MB",
        lines,
        config.size,
        elapsed,
        lines as f64 / elapsed,
        if sender_open { "" } else { ", then closed by the server" },
        config.conns,
        config.read_rate,
        unnamed,
        dropped,
        first,
        got.join(", ")
    )))
}
