//! udp-amp: `--count` datagrams of `--size` bytes (default 1) to tne's UDP
//! port, and the reply bytes they draw: the amplification a forged source
//! address would get.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::{AttackConfig, AttackError, Outcome};
use crate::config::Protocol;

/// Datagrams sent before replies are read again.
const BURST: u64 = 64;

/// Runs udp-amp: sends, reads replies, waits 500 ms for the last ones.
pub fn run(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let sock = UdpSocket::bind((config.source, 0))?;
    sock.connect(config.addr(Protocol::Tne))?;
    sock.set_nonblocking(true)?;
    let request = vec![b'x'; config.size];
    let (mut sent, mut replies, mut reply_bytes, mut largest) = (0u64, 0u64, 0u64, 0usize);
    let mut refused = 0u64;
    let mut buf = vec![0u8; 65_536];
    let mut quiet_from: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if sent < config.count {
            for _ in 0..BURST.min(config.count - sent) {
                match sock.send(&request) {
                    Ok(_) => sent += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        } else if quiet_from.is_none() {
            quiet_from = Some(now);
        }
        if quiet_from.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    replies += 1;
                    reply_bytes += n as u64;
                    largest = largest.max(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    refused += 1;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let request_bytes = sent * config.size as u64;
    let refused = if refused > 0 {
        format!(", {refused} refused (nothing listening?)")
    } else {
        String::new()
    };
    Ok(Outcome::new(format!(
        "{} datagrams of {} B: {} replies, {} B back for {} B sent = {:.1}x (largest reply {} B = {:.1}x){}",
        sent,
        config.size,
        replies,
        reply_bytes,
        request_bytes,
        reply_bytes as f64 / request_bytes.max(1) as f64,
        largest,
        largest as f64 / config.size as f64,
        refused
    )))
}
