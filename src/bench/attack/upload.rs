//! upload-tiny: one connection sends `--count` one-line upload files
//! (`x`), back to back, then the end message: every file is a create, a
//! write and a rename in the loop.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::net;
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// One file: line count 1, the line `x`.
const FILE: [u8; 6] = [0, 0, 0, 1, b'x', b'\n'];
/// The end message.
const END: [u8; 4] = [0; 4];

/// Runs upload-tiny until the server's `Q` (or close), or `--duration`.
pub fn run(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let chunk: Vec<u8> = FILE.repeat(10_000);
    let files_bytes = config.count.saturating_mul(FILE.len() as u64);
    let total = files_bytes + END.len() as u64;
    let mut sock = net::connect_from(config.source, config.addr(Protocol::Upload))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let start = Instant::now();
    let (mut sent, mut acks, mut errs, mut other) = (0u64, 0u64, 0u64, 0u64);
    let mut connected = false;
    let mut end: Option<&str> = None;
    let mut buf = [0u8; 16 * 1024];
    while end.is_none() && Instant::now() < deadline {
        poll.poll(&mut events, Some(left(deadline, Duration::from_millis(50))))?;
        if events.is_empty() {
            continue;
        }
        if !connected {
            match net::connected(&sock) {
                Ok(true) => connected = true,
                Ok(false) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Write what the socket takes.
        while sent < total {
            let piece = if sent < files_bytes {
                let at = (sent % chunk.len() as u64) as usize;
                let room = usize::try_from(files_bytes - sent).unwrap_or(usize::MAX);
                let rest = chunk.get(at..).unwrap_or_default();
                rest.get(..room.min(rest.len())).unwrap_or_default()
            } else {
                END.get((sent - files_bytes) as usize..).unwrap_or_default()
            };
            match sock.write(piece) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    end = Some("write failed (closed by the server)");
                    break;
                }
            }
        }
        // Read the statuses.
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    end = end.or(Some("closed by the server"));
                    break;
                }
                Ok(n) => {
                    for b in buf.get(..n).unwrap_or_default() {
                        match b {
                            b'A' => acks += 1,
                            b'E' => errs += 1,
                            b'Q' => end = Some("Q"),
                            _ => other += 1,
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    end = end.or(Some("reset by the server"));
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome::new(format!(
        "{} one-line files asked, {} sent in {:.1} s; {} A ({:.0} files/s), {} E, {} other; ended by {}",
        config.count,
        sent.min(files_bytes) / FILE.len() as u64,
        elapsed.as_secs_f64(),
        acks,
        acks as f64 / elapsed.as_secs_f64().max(1e-3),
        errs,
        other,
        end.unwrap_or("the duration")
    )))
}
