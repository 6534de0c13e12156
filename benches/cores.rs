//! Throughput of the sans-IO protocol cores, without sockets: a regression
//! in a core shows here before it hides in a load test's noise.
//!
//! Run: `cargo bench --bench cores` (one core: `cargo bench --bench cores
//! -- transform`). Each core is fed a buffer of pipelined requests through
//! the public `Session` API, the way the event loop feeds it one read, and
//! its replies are then drained from the `Output` as a flush would.
//!
//! Figures are reported as messages/s (small messages: the per-message
//! cost of parsing and queueing) and MB/s (large messages: the per-byte
//! cost of the action).
//!
//! Adding a core: write `fn <core>(c: &mut Criterion)` in the section
//! "Other cores" below, using [`feed`], and list it in `criterion_group!`.
//! Planned: the line framer (tne, cmd, chat), chat fan-out into N queues,
//! the upload line counter.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use onepoll::config::Config;
use onepoll::proto::transform::{encode_header, Action, TransformSession};
use onepoll::proto::{Cx, Output, Session, Shared};

/// Feeds `input` to `session` as one read, then drains the replies as a
/// complete flush would; returns the bytes of reply produced.
fn feed(session: &mut impl Session, shared: &mut Shared, out: &mut Output, input: &[u8]) -> usize {
    let peer: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut effects = Vec::new();
    let mut cx = Cx::new(out, shared, &mut effects, peer, 1, SystemTime::UNIX_EPOCH);
    let consumed = session.on_input(input, &mut cx);
    debug_assert_eq!(consumed, input.len());
    let produced = out.len();
    out.consume(produced);
    out.release_if_empty();
    produced
}

/// `count` pipelined transform requests of `action` with `size` bytes of
/// mixed-case text each.
fn transform_requests(action: Action, size: usize, count: usize) -> Vec<u8> {
    const TEXT: &[u8] = b"the Quick bROWN fox jumps OVER the lazy DOG 0123 ";
    let data: Vec<u8> = TEXT.iter().copied().cycle().take(size).collect();
    let mut input = Vec::with_capacity((4 + size) * count);
    for _ in 0..count {
        input.extend_from_slice(&encode_header(action.code(), size as u32));
        input.extend_from_slice(&data);
    }
    input
}

// ---------------------------------------------------------------- transform

/// The header parser alone: empty uppercase requests (header in, empty
/// response header out).
fn transform_header(c: &mut Criterion) {
    const COUNT: usize = 4096;
    let input = transform_requests(Action::Uppercase, 0, COUNT);
    let mut shared = Shared::new(&Config::default());
    let mut out = Output::new();
    let mut session = TransformSession::new();
    let mut group = c.benchmark_group("transform/header");
    group.throughput(Throughput::Elements(COUNT as u64));
    group.bench_function("parse", |b| {
        b.iter(|| feed(&mut session, &mut shared, &mut out, black_box(&input)))
    });
    group.finish();
}

/// Each action on small pipelined messages (messages/s) and on large ones
/// (MB/s).
fn transform_actions(c: &mut Criterion) {
    for (name, size, count, per_message) in [
        ("transform/64B", 64, 1024, true),
        ("transform/64KiB", 64 * 1024, 4, false),
    ] {
        let mut group = c.benchmark_group(name);
        for action in Action::ALL {
            let input = transform_requests(action, size, count);
            group.throughput(match per_message {
                true => Throughput::Elements(count as u64),
                false => Throughput::Bytes(input.len() as u64),
            });
            let mut shared = Shared::new(&Config::default());
            let mut out = Output::new();
            let mut session = TransformSession::new();
            group.bench_with_input(BenchmarkId::from_parameter(action), &input, |b, input| {
                b.iter(|| feed(&mut session, &mut shared, &mut out, black_box(input)))
            });
        }
        group.finish();
    }
}

// ------------------------------------------------------------- Other cores
//
// fn line_framer(c: &mut Criterion) { ... }   tne / cmd / chat lines
// fn chat_fanout(c: &mut Criterion) { ... }   one message into N queues
// fn upload_lines(c: &mut Criterion) { ... }  the line counter

criterion_group!(cores, transform_header, transform_actions);
criterion_main!(cores);
