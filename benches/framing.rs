//! The line framer and the tne/cmd cores on pipelined input: the cost per
//! line of short lines (the request/reply case) and the search speed on
//! long lines. `cargo bench --bench framing`.

use std::hint::black_box;
use std::ops::ControlFlow;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use onepoll::config::Config;
use onepoll::proto::framing::LineFramer;
use onepoll::proto::tne::TneSession;
use onepoll::proto::{Cx, Output, Session, Shared};

fn lines(count: usize, len: usize) -> Vec<u8> {
    let mut line = b"TNE20003:".to_vec();
    line.resize(len, b'x');
    line.push(b'\n');
    line.repeat(count)
}

fn framer(c: &mut Criterion) {
    let mut group = c.benchmark_group("framer");
    for (name, input) in [
        ("1000 lines of 24 B", lines(1000, 24)),
        ("16 lines of 8 KiB", lines(16, 8000)),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut framer = LineFramer::new(8192);
                let mut n = 0usize;
                let used = framer.each_line(black_box(&input), |line| {
                    n += line.map_or(0, <[u8]>::len);
                    ControlFlow::Continue(())
                });
                black_box((used, n))
            })
        });
    }
    group.finish();
}

fn tne(c: &mut Criterion) {
    let input = lines(1000, 24);
    let mut shared = Shared::new(&Config::default());
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut effects = Vec::new();
    let mut group = c.benchmark_group("tne");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 pipelined messages", |b| {
        b.iter_batched_ref(
            Output::new,
            |out| {
                let mut session = TneSession::new(8192);
                let mut cx = Cx::new(
                    out,
                    &mut shared,
                    &mut effects,
                    peer,
                    1,
                    std::time::SystemTime::UNIX_EPOCH,
                );
                black_box(session.on_input(black_box(&input), &mut cx))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, framer, tne);
criterion_main!(benches);
