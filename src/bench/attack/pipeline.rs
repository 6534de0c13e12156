//! cmd-pipeline: `--conns` cmd connections (from `--per-addr` per
//! address) each write HELO and then `--size` bytes of pipelined `ECHO`
//! lines, and never read a reply: without backpressure and a memory
//! budget the server holds every reply.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::net::{self, Sources};
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// HELO, then 64-byte ECHO lines, `size` bytes of them (whole lines).
pub fn stream(size: usize) -> Vec<u8> {
    let mut line = b"ECHO ".to_vec();
    line.resize(63, b'x');
    line.push(b'\n');
    let mut s = b"HELO attacker\n".to_vec();
    let lines = size.div_ceil(line.len()).max(1);
    s.reserve(lines * line.len());
    for _ in 0..lines {
        s.extend_from_slice(&line);
    }
    s
}

struct Piper {
    sock: Option<TcpStream>,
    connected: bool,
    sent: usize,
}

/// Runs cmd-pipeline until every connection has written its bytes and
/// `--duration` has passed.
pub fn run(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Cmd);
    let data = stream(config.size);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sources = Sources::new(config.source, config.per_addr);
    let mut pipers: Vec<Piper> = Vec::with_capacity(config.conns);
    let mut failed = 0usize;
    let start = Instant::now();
    let mut all_written: Option<Duration> = None;
    while Instant::now() < deadline {
        for _ in 0..200 {
            if pipers.len() >= config.conns {
                break;
            }
            match net::connect_from(sources.next_addr(), dst) {
                Ok(mut sock) => {
                    poll.registry()
                        .register(&mut sock, Token(pipers.len()), Interest::WRITABLE)?;
                    pipers.push(Piper {
                        sock: Some(sock),
                        connected: false,
                        sent: 0,
                    });
                }
                Err(_) => {
                    failed += 1;
                    pipers.push(Piper {
                        sock: None,
                        connected: false,
                        sent: 0,
                    });
                }
            }
        }
        poll.poll(&mut events, Some(left(deadline, Duration::from_millis(20))))?;
        for ev in events.iter() {
            let Some(p) = pipers.get_mut(ev.token().0) else {
                continue;
            };
            let Some(sock) = p.sock.as_mut() else {
                continue;
            };
            if !p.connected {
                match net::connected(sock) {
                    Ok(true) => p.connected = true,
                    Ok(false) => continue,
                    Err(_) => {
                        p.sock = None;
                        failed += 1;
                        continue;
                    }
                }
            }
            while let Some(rest) = data.get(p.sent..).filter(|r| !r.is_empty()) {
                match sock.write(rest) {
                    Ok(n) => p.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        p.sock = None;
                        break;
                    }
                }
            }
        }
        if all_written.is_none()
            && pipers.len() >= config.conns
            && pipers
                .iter()
                .all(|p| p.sock.is_none() || p.sent >= data.len())
        {
            all_written = Some(start.elapsed());
        }
    }
    let total: usize = pipers.iter().map(|p| p.sent).sum();
    let whole = pipers.iter().filter(|p| p.sent >= data.len()).count();
    let states = net::probe_states(pipers.iter_mut().filter_map(|p| p.sock.as_mut()));
    let written = match all_written {
        Some(t) => format!("all written in {:.2} s", t.as_secs_f64()),
        None => "not all written by the end".to_owned(),
    };
    Ok(Outcome::new(format!(
        "{} cmd connections from {} address(es), {} B each: {:.1} MiB written, {} wrote it all ({}), {} failed; at the end {} open, {} closed by the server",
        config.conns,
        sources.addresses,
        data.len(),
        total as f64 / (1024.0 * 1024.0),
        whole,
        written,
        failed,
        states.open,
        states.closed + pipers.iter().filter(|p| p.connected && p.sock.is_none()).count()
    )))
}
