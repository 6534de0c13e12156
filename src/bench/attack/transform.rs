//! The transform attacks: shuffle (large shuffles back to back on one
//! connection: without slicing, each holds the loop for the whole
//! permutation) and transform-hold (reverse headers of maximum length,
//! then one byte per `--interval`: a budget taken at the header is held by
//! a few bytes; another client's reverse is watched meanwhile).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::net::{self, Sources, StateCount};
use super::{left, AttackConfig, AttackError, Outcome};
use crate::config::Protocol;
use crate::proto::transform::{encode_header, ERROR_REPLY};

/// Data of every request: the alphabet, over and over.
fn pattern() -> Vec<u8> {
    (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Reads responses: their LENGTH, then skips their data.
#[derive(Debug, Default)]
struct Responses {
    header: Vec<u8>,
    left: u64,
    length: u64,
    done: Vec<(Duration, u64)>,
}

impl Responses {
    fn feed(&mut self, mut bytes: &[u8], at: Duration) {
        while !bytes.is_empty() {
            if self.left == 0 && self.header.len() < 4 {
                let take = (4 - self.header.len()).min(bytes.len());
                let (head, rest) = bytes.split_at(take);
                self.header.extend_from_slice(head);
                bytes = rest;
                if let Ok(h) = <[u8; 4]>::try_from(self.header.as_slice()) {
                    self.length = u64::from(u32::from_be_bytes(h));
                    self.left = self.length;
                    if self.left == 0 {
                        self.done.push((at, 0));
                        self.header.clear();
                    }
                }
                continue;
            }
            let take = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            bytes = bytes.get(take..).unwrap_or_default();
            self.left -= take as u64;
            if self.left == 0 {
                self.done.push((at, self.length));
                self.header.clear();
            }
        }
    }
}

/// shuffle: `--count` shuffles of `--size` bytes, pipelined on one
/// connection; reports when each response was complete.
pub fn shuffle(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let size = config.size as u64;
    let header = encode_header(config.transform_code(true), config.size as u32);
    let unit = 4 + size;
    let total = unit * config.count;
    let data = pattern();
    let mut sock = net::connect_from(config.source, config.addr(Protocol::Transform))?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(16);
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE | Interest::WRITABLE)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut connected = false;
    let mut responses = Responses::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut end = "the duration";
    while Instant::now() < deadline && (responses.done.len() as u64) < config.count {
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
        while sent < total {
            let off = sent % unit;
            let piece = if off < 4 {
                header.get(off as usize..).unwrap_or_default()
            } else {
                let at = ((off - 4) % data.len() as u64) as usize;
                let rest = data.get(at..).unwrap_or_default();
                let room = usize::try_from(unit - off).unwrap_or(usize::MAX);
                rest.get(..room.min(rest.len())).unwrap_or_default()
            };
            match sock.write(piece) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    sent = total;
                    end = "write failed";
                }
            }
        }
        let mut closed = false;
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => responses.feed(buf.get(..n).unwrap_or_default(), start.elapsed()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            end = "closed by the server";
            break;
        }
    }
    if responses.done.len() as u64 >= config.count {
        end = "all answered";
    }
    let errors = responses
        .done
        .iter()
        .filter(|(_, len)| *len == ERROR_REPLY.len() as u64 && size != *len)
        .count();
    let times: Vec<String> = responses
        .done
        .iter()
        .map(|(t, _)| format!("{:.2}", t.as_secs_f64()))
        .collect();
    Ok(Outcome::new(format!(
        "{} shuffles of {} B pipelined: {} answered ({} error) at [{}] s; ended: {}",
        config.count,
        size,
        responses.done.len(),
        errors,
        times.join(", "),
        end
    )))
}

/// What the victim's reverses got.
#[derive(Debug, Default)]
struct Victim {
    ok: u64,
    error: u64,
    wrong: u64,
    no_reply: u64,
}

/// One reverse of `msg` on `sock`: true if the connection can go on.
fn reverse_once(sock: &mut std::net::TcpStream, code: u8, msg: &[u8], v: &mut Victim) -> bool {
    let mut request = encode_header(code, msg.len() as u32).to_vec();
    request.extend_from_slice(msg);
    let mut head = [0u8; 4];
    let got = sock
        .write_all(&request)
        .and_then(|()| sock.read_exact(&mut head))
        .and_then(|()| {
            let mut body = vec![0u8; u32::from_be_bytes(head).min(1 << 20) as usize];
            sock.read_exact(&mut body).map(|()| body)
        });
    match got {
        Ok(body) if body.as_slice() == ERROR_REPLY => v.error += 1,
        Ok(body) if body.iter().eq(msg.iter().rev()) => v.ok += 1,
        Ok(_) => v.wrong += 1,
        Err(_) => {
            v.no_reply += 1;
            return false;
        }
    }
    true
}

/// transform-hold: `--conns` holders each send a reverse header for
/// `--size` bytes and then one byte per `--interval`; meanwhile another
/// client sends a 1000-byte reverse every 100 ms and counts the answers.
pub fn hold(config: &AttackConfig, deadline: Instant) -> Result<Outcome, AttackError> {
    let dst = config.addr(Protocol::Transform);
    let code = config.transform_code(false);
    let mut sources = Sources::new(config.source, config.per_addr);
    let timeout = Duration::from_secs(5);
    let mut holders = Vec::with_capacity(config.conns);
    for _ in 0..config.conns {
        let mut s = net::connect_blocking(Some(sources.next_addr()), dst, timeout)?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(&encode_header(code, config.size as u32))?;
        holders.push(Some(s));
    }
    let victim_src = sources.fresh().next_addr();
    let connect_victim = || -> io::Result<std::net::TcpStream> {
        let s = net::connect_blocking(Some(victim_src), dst, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(s)
    };
    let mut victim = Some(connect_victim()?);
    let msg: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut v = Victim::default();
    let mut trickled = 0u64;
    let mut next_byte = Instant::now() + config.interval;
    // The headers reach the server before the first reverse.
    std::thread::sleep(left(deadline, Duration::from_millis(100)));
    while Instant::now() < deadline {
        if Instant::now() >= next_byte {
            next_byte += config.interval;
            for h in holders.iter_mut() {
                let ok = h.as_mut().is_some_and(|s| s.write_all(b"z").is_ok());
                if ok {
                    trickled += 1;
                } else {
                    *h = None;
                }
            }
        }
        match victim.as_mut() {
            Some(s) => {
                if !reverse_once(s, code, &msg, &mut v) {
                    victim = None;
                }
            }
            None => victim = connect_victim().ok(),
        }
        std::thread::sleep(left(deadline, Duration::from_millis(100)));
    }
    let states = StateCount::of(holders.iter().flatten());
    let gone = holders.iter().filter(|h| h.is_none()).count();
    Ok(Outcome::new(format!(
        "{} holders, reverse header for {} B then 1 byte every {:.1} s ({} bytes trickled; at the end {} open, {} closed by the server); another client's 1000 B reverse: {} ok, {} error, {} wrong, {} no reply",
        config.conns,
        config.size,
        config.interval.as_secs_f64(),
        trickled,
        states.open,
        states.closed + gone,
        v.ok,
        v.error,
        v.wrong,
        v.no_reply
    )))
}
