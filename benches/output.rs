//! The reply queue's performance machinery against the plain code it
//! replaces: each trick is kept only while this (and callgrind on a
//! server run) shows it pays. Figures in docs/PERFORMANCE.md, "Reply
//! buffers".
//!
//! Run: `cargo bench --bench output`.
//!
//! - `output/reply`: one 64-byte reply queued and written, as a
//!   request/reply connection's turn does. `lent` is the loop's reply
//!   output lent to each connection in turn (`Conn::borrow_replies`): its
//!   drained buffer stays warm between turns. `plain` frees the buffer
//!   after each turn and allocates the next, as a connection's own output
//!   settled idle does.
//! - `output/burst`: 16 pipelined replies then the write, the same two ways.
//! - `output/fanout`: one 64-byte broadcast queued to each of 1000 idle
//!   receivers (the inline, `mem::forget` path of `Output::put_shared`),
//!   then a second to each (a queue), then every queue drained and
//!   released, as a flush does: the cost per delivery.

use std::hint::black_box;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use onepoll::proto::Output;

const REPLY: &[u8] = &[b'r'; 64];

/// One turn: `replies` replies queued, all written, then the buffer freed
/// unless the output is lent (kept warm between turns).
fn turn(out: &mut Output, replies: usize, lent: bool) {
    for _ in 0..replies {
        out.put(black_box(REPLY));
    }
    let n = out.len();
    out.consume(n);
    if lent {
        out.release_if_large();
    } else {
        out.release_if_empty();
    }
}

fn replies(c: &mut Criterion) {
    for (name, count) in [("output/reply", 1usize), ("output/burst", 16)] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(count as u64));
        for (variant, lent) in [("lent", true), ("plain", false)] {
            let mut out = Output::new();
            group.bench_function(BenchmarkId::from_parameter(variant), |b| {
                b.iter(|| turn(&mut out, count, lent))
            });
        }
        group.finish();
    }
}

fn fanout(c: &mut Criterion) {
    const RECEIVERS: usize = 1000;
    let mut group = c.benchmark_group("output/fanout");
    group.throughput(Throughput::Elements(2 * RECEIVERS as u64));
    let msg: Rc<[u8]> = Rc::from(REPLY);
    let mut queues: Vec<Output> = (0..RECEIVERS).map(|_| Output::new()).collect();
    group.bench_function("1000x2", |b| {
        b.iter(|| {
            for out in &mut queues {
                out.put_shared(Rc::clone(&msg));
            }
            for out in &mut queues {
                out.put_shared(Rc::clone(&msg));
            }
            for out in &mut queues {
                let n = out.len();
                out.consume(n);
                out.release_if_empty();
            }
        })
    });
    group.finish();
}

criterion_group!(output, replies, fanout);
criterion_main!(output);
