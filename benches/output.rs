//! The reply queue's performance machinery against the plain code it
//! replaces: each trick is kept only while this shows it pays (figures in
//! docs/PERFORMANCE.md, "Reply buffers").
//!
//! Run: `cargo bench --bench output`. Every group runs the same `Output`
//! code under [`Policy::DEFAULT`] (pooled, retained) and [`Policy::PLAIN`]
//! (allocated and freed per use, as plain code would):
//!
//! - `output/reply`: one 64-byte reply queued, written and released, as a
//!   request/reply connection's turn does; `lent` is the loop's lent
//!   reply output (`Conn::borrow_replies`), a drained buffer kept warm
//!   and never released; `pooled` and `plain` take a buffer and give it
//!   back each turn.
//! - `output/burst`: 16 pipelined replies then the write, the same three ways.
//! - `output/fanout`: two 64-byte broadcasts queued to each of 1000
//!   receivers (so each needs a segment queue), then every queue drained
//!   and released, as a flush does.

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use onepoll::proto::output::{pool, Policy};
use onepoll::proto::Output;

const REPLY: &[u8] = &[b'r'; 64];

/// One turn: `replies` replies queued, all written, then released unless
/// the output is lent (kept warm between turns).
fn turn(out: &mut Output, replies: usize, lent: bool) {
    for _ in 0..replies {
        out.put(black_box(REPLY));
    }
    let n = out.len();
    out.consume(n);
    if !lent {
        out.release_if_empty();
    }
}

fn replies(c: &mut Criterion) {
    for (name, count) in [("output/reply", 1usize), ("output/burst", 16)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(count as u64));
        for (variant, policy, lent) in [
            ("lent", Policy::DEFAULT, true),
            ("pooled", Policy::DEFAULT, false),
            ("plain", Policy::PLAIN, false),
        ] {
            pool::set_policy(policy);
            let mut out = Output::new();
            group.bench_function(BenchmarkId::from_parameter(variant), |b| {
                b.iter(|| turn(&mut out, count, lent))
            });
        }
        pool::set_policy(Policy::DEFAULT);
        group.finish();
    }
}

fn fanout(c: &mut Criterion) {
    const RECEIVERS: usize = 1000;
    let mut group = c.benchmark_group("output/fanout");
    group.throughput(Throughput::Elements(2 * RECEIVERS as u64));
    let msg: Rc<[u8]> = Rc::from(REPLY);
    for (variant, policy) in [("pooled", Policy::DEFAULT), ("plain", Policy::PLAIN)] {
        pool::set_policy(policy);
        let mut queues: Vec<Output> = (0..RECEIVERS).map(|_| Output::new()).collect();
        group.bench_function(BenchmarkId::from_parameter(variant), |b| {
            b.iter(|| {
                for out in &mut queues {
                    out.put_shared(Rc::clone(&msg));
                    out.put_shared(Rc::clone(&msg));
                }
                for out in &mut queues {
                    let n = out.len();
                    out.consume(n);
                    out.release_if_empty();
                }
            })
        });
    }
    pool::set_policy(Policy::DEFAULT);
    group.finish();
}

criterion_group!(output, replies, fanout);
criterion_main!(output);
