//! tne over UDP: `--conns` sockets, each connected to the server and
//! keeping `--pipeline` datagrams outstanding (or sending at its share of
//! `--rate`). Each reply datagram must be exactly `TNE20003:A:<msg>`; a
//! socket that hears nothing for [`LOSS_TIMEOUT`] counts its outstanding
//! requests as lost and starts again.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::args::BenchConfig;
use super::progress::Progress;
use super::rate::Schedule;
use super::report::Report;
use super::reqrep::usage;
use super::script::payload;
use super::stats::Stats;
use super::{procfs, BenchError};

/// Silence after which outstanding datagrams count as lost.
pub const LOSS_TIMEOUT: Duration = Duration::from_secs(1);

/// The request datagram and its reply, without LF (spec 1.1).
pub fn datagrams(size: usize) -> (Vec<u8>, Vec<u8>) {
    let msg = payload(size.max(1));
    let mut request = b"TNE20003:".to_vec();
    request.extend_from_slice(&msg);
    let mut reply = b"TNE20003:A:".to_vec();
    reply.extend_from_slice(&msg);
    (request, reply)
}

struct Sock {
    sock: UdpSocket,
    times: VecDeque<Instant>,
    to_send: usize,
    heard: Instant,
    schedule: Option<Schedule>,
    alive: bool,
}

/// Runs tne over UDP against `target`.
pub fn run(cfg: &BenchConfig, target: SocketAddr) -> Result<Report, BenchError> {
    let mut poll = Poll::new().map_err(BenchError::Io)?;
    let (request, reply) = datagrams(cfg.size);
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    }
    .parse()
    .map_err(|_| BenchError::Setup("bad local address".into()))?;
    let now = Instant::now();
    let mut socks = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let mut sock = UdpSocket::bind(local).map_err(BenchError::Io)?;
        sock.connect(target).map_err(BenchError::Io)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(BenchError::Io)?;
        socks.push(Sock {
            sock,
            times: VecDeque::with_capacity(cfg.pipeline.min(1024)),
            to_send: 0,
            heard: now,
            schedule: None,
            alive: true,
        });
    }
    let mut stats = Stats::new();
    let before = cfg.server_pid.and_then(|p| procfs::sample(p).ok());
    let bench_before = procfs::own_cpu();
    let t0 = Instant::now();
    let end = t0 + cfg.duration;
    if let Some(rate) = cfg.rate {
        let n = socks.len();
        for (i, s) in socks.iter_mut().enumerate() {
            s.schedule = Some(Schedule::new(t0, rate, i, n));
        }
    }
    let cap = cfg.requests.unwrap_or(u64::MAX);
    let mut begun = 0u64;
    let mut progress = Progress::new(cfg, cfg.workload.unit());
    progress.start(t0);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        let live = socks.iter().filter(|s| s.alive).count();
        let drained = socks.iter().all(|s| s.times.is_empty());
        if now >= end || live == 0 || (begun >= cap && drained) {
            break;
        }
        let mut wake = end.min(progress.next()).min(now + LOSS_TIMEOUT);
        for s in socks.iter_mut().filter(|s| s.alive) {
            if !s.times.is_empty() && now.saturating_duration_since(s.heard) > LOSS_TIMEOUT {
                stats.lost += s.times.len() as u64;
                s.times.clear();
                s.to_send = 0;
                s.heard = now;
            }
            while s.times.len() < cfg.pipeline && begun < cap {
                let at = match &mut s.schedule {
                    None => now,
                    Some(sched) => match sched.take_due(now) {
                        Some(at) => at,
                        None => {
                            wake = wake.min(sched.next());
                            break;
                        }
                    },
                };
                if s.times.is_empty() {
                    s.heard = now;
                }
                s.times.push_back(at);
                s.to_send += 1;
                begun += 1;
            }
            while s.to_send > 0 {
                match s.sock.send(&request) {
                    Ok(_) => {
                        s.to_send -= 1;
                        stats.bytes_out += request.len() as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        stats.connect_errors += 1;
                        s.alive = false;
                        break;
                    }
                }
            }
        }
        let timeout = match wake.saturating_duration_since(now) {
            t if cfg.rate.is_some() && t < Duration::from_millis(1) => Duration::ZERO,
            t => t,
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::Io(e)),
        }
        for event in events.iter() {
            let Some(s) = socks.get_mut(event.token().0) else {
                continue;
            };
            if !s.alive || !event.is_readable() {
                continue;
            }
            loop {
                match s.sock.recv(&mut buf) {
                    Ok(n) => {
                        let now = Instant::now();
                        s.heard = now;
                        stats.bytes_in += n as u64;
                        match (buf.get(..n) == Some(&reply[..]), s.times.pop_front()) {
                            (true, Some(t)) => stats.record(now.saturating_duration_since(t)),
                            _ => stats.errors += 1,
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        // ICMP port unreachable: nobody serves UDP there.
                        stats.connect_errors += 1;
                        s.alive = false;
                        break;
                    }
                }
            }
        }
        progress.tick(Instant::now(), &stats);
    }
    let elapsed = t0.elapsed();
    let after = cfg.server_pid.and_then(|p| procfs::sample(p).ok());
    progress.finish();
    Ok(Report {
        config: cfg.clone(),
        target,
        elapsed,
        stats,
        conns: socks.iter().filter(|s| s.alive).count(),
        server: usage(before, after),
        bench_cpu: procfs::own_cpu().saturating_sub(bench_before),
        probe: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Workload;

    #[test]
    fn datagrams_carry_no_lf() {
        let (req, rep) = datagrams(3);
        assert_eq!(req, b"TNE20003:the");
        assert_eq!(rep, b"TNE20003:A:the");
    }

    #[test]
    fn a_udp_echo_server_is_measured_and_checked() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut served = 0u32;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    served += 1;
                    // Every 7th reply is wrong, to show errors are counted.
                    let mut out = b"TNE20003:A:".to_vec();
                    out.extend_from_slice(&buf[9..n]);
                    if served % 7 == 0 {
                        out[12] ^= 0x20;
                    }
                    let _ = server.send_to(&out, from);
                }
            }
        });
        let mut cfg = BenchConfig::new(Workload::TneUdp);
        cfg.port = port;
        cfg.conns = 2;
        cfg.pipeline = 2;
        cfg.requests = Some(70);
        cfg.quiet = true;
        let report = run(&cfg, cfg.target().unwrap()).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        thread.join().unwrap();
        assert_eq!(report.stats.ops + report.stats.errors, 70);
        assert_eq!(report.stats.errors, 10);
        assert_eq!(report.stats.lost, 0);
    }
}
