//! The per-address admission policy at accept and close: what one accept
//! costs the loop for an exempt peer (loopback: the benchmark matrix), for
//! a counted peer among 10,000 tracked addresses, and for a refused one.
//! `cargo bench --bench admission`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use onepoll::server::admission::{default_exempt, Admission};

/// A policy allowing 32 open and `rate` a second, with `tracked`
/// addresses holding one connection each.
fn policy(tracked: u32, rate: u32) -> Admission {
    let mut p = Admission::new(default_exempt(), 32, rate);
    for i in 0..tracked {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = p.admit(ip, 0);
    }
    p
}

fn admission(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission");
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut p = policy(10_000, 20);
    group.bench_function("exempt peer: admit + release", |b| {
        b.iter(|| {
            let r = p.admit(black_box(loopback), 0);
            p.release(black_box(loopback), 0);
            black_box(r)
        })
    });
    let peer = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    // 1,000 a second and a millisecond between accepts: the bucket never
    // runs dry, and the once-a-second sweep of the 10,000 entries is
    // amortised over 1,000 accepts, as a server accepting 1,000 a second
    // would see it.
    let mut p = policy(10_000, 1_000);
    let mut now = 0;
    group.bench_function("counted peer among 10,000: admit + release", |b| {
        b.iter(|| {
            now += 1;
            let r = p.admit(black_box(peer), now);
            p.release(black_box(peer), now);
            black_box(r)
        })
    });
    let mut p = policy(10_000, 20);
    for _ in 0..32 {
        let _ = p.admit(peer, 0);
    }
    group.bench_function("peer at its cap: refused", |b| {
        b.iter(|| black_box(p.admit(black_box(peer), 1)))
    });
    let mut p = policy(10_000, 20);
    let mut now = 0;
    group.bench_function("sweep of 10,000 entries", |b| {
        b.iter(|| {
            now += 1_000;
            p.sweep(black_box(now));
        })
    });
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
