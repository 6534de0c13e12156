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
//! Cores measured: the transform header parser and each action, one
//! slice of a large shuffle, chat
//! fan-out into N queues, the upload line counter, and chat's text check; the line framer of
//! tne, cmd and chat has its own bench, `benches/framing.rs`. Adding a core: write `fn <core>(c: &mut Criterion)`, using
//! [`feed`], and list it in `criterion_group!`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use onepoll::config::Config;
use onepoll::proto::transform::{encode_header, Action, Table, TransformSession};
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
fn transform_requests(table: Table, action: Action, size: usize, count: usize) -> Vec<u8> {
    let code = table.code(action).unwrap_or(0);
    const TEXT: &[u8] = b"the Quick bROWN fox jumps OVER the lazy DOG 0123 ";
    let data: Vec<u8> = TEXT.iter().copied().cycle().take(size).collect();
    let mut input = Vec::with_capacity((4 + size) * count);
    for _ in 0..count {
        input.extend_from_slice(&encode_header(code, size as u32));
        input.extend_from_slice(&data);
    }
    input
}

// ---------------------------------------------------------------- transform

/// The header parser alone: empty uppercase requests (header in, empty
/// response header out).
fn transform_header(c: &mut Criterion) {
    const COUNT: usize = 4096;
    let input = transform_requests(Table::Y2021, Action::Uppercase, 0, COUNT);
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
        // Every action of the 2021 table, and random from the 2023 one.
        let actions = Table::Y2021
            .actions()
            .map(|a| (Table::Y2021, a))
            .into_iter()
            .chain([(Table::Y2023, Action::Random)]);
        for (table, action) in actions {
            let input = transform_requests(table, action, size, count);
            group.throughput(match per_message {
                true => Throughput::Elements(count as u64),
                false => Throughput::Bytes(input.len() as u64),
            });
            let config = Config {
                transform_table: table,
                ..Config::default()
            };
            let mut shared = Shared::new(&config);
            let mut out = Output::new();
            let mut session = TransformSession::new();
            group.bench_with_input(BenchmarkId::from_parameter(action), &input, |b, input| {
                b.iter(|| feed(&mut session, &mut shared, &mut out, black_box(input)))
            });
        }
        group.finish();
    }
}

/// One slice of a shuffle of a 128 MiB message, the size the loop gives a
/// large shuffle before it serves the others (`Slices::DEFAULT`): each
/// swap touches a random byte of the message, a cache miss or two, so the
/// slice's time is what a large shuffle makes every other connection wait.
fn transform_shuffle_slice(c: &mut Criterion) {
    use onepoll::proto::held::Slices;
    use onepoll::proto::rng::Rng;
    const SIZE: usize = 128 << 20;
    let swaps = Slices::DEFAULT.shuffle_swaps;
    let mut message: Vec<u8> = (0..SIZE).map(|i| i as u8).collect();
    let mut rng = Rng::from_seed(1);
    let mut done = 0;
    let mut group = c.benchmark_group("transform/shuffle-128MiB");
    group.throughput(Throughput::Elements(swaps as u64));
    group.bench_function("one slice", |b| {
        b.iter(|| {
            if done + swaps >= SIZE - 1 {
                done = 0;
            }
            done = rng.shuffle_some(black_box(&mut message), done, swaps);
        })
    });
    group.finish();
}

// -------------------------------------------------------------------- chat

/// One 64-byte message routed into N receivers' queues: the cost of a
/// delivery (one shared allocation, one queue push per receiver).
fn chat_fanout(c: &mut Criterion) {
    use onepoll::proto::{effects, Deliver, Effect};
    use std::rc::Rc;

    struct Queues(Vec<Output>);
    impl Deliver for Queues {
        fn deliver(&mut self, to: u64, msg: &Rc<[u8]>) {
            if let Some(out) = self.0.get_mut(to as usize) {
                out.put_shared(Rc::clone(msg));
            }
        }
    }

    let mut group = c.benchmark_group("chat/fanout");
    for receivers in [10u64, 1000] {
        let mut shared = Shared::new(&Config::default());
        for id in 0..=receivers {
            shared.chat.room.join(id);
        }
        let mut queues = Queues((0..=receivers).map(|_| Output::new()).collect());
        let msg: Rc<[u8]> = Rc::from(&[b'm'; 64][..]);
        let mut pending = Vec::new();
        group.throughput(Throughput::Elements(receivers));
        group.bench_function(BenchmarkId::from_parameter(receivers), |b| {
            b.iter(|| {
                pending.push(Effect::Broadcast {
                    msg: Rc::clone(&msg),
                    except: 0,
                });
                effects::route(&mut pending, &shared, &mut queues);
                for out in &mut queues.0 {
                    let n = out.len();
                    out.consume(n);
                }
            })
        });
    }
    group.finish();
}

// ------------------------------------------------------------------ upload

/// The upload core counting LFs and passing a file's bytes to the store
/// (in memory): MB/s of 100-byte lines.
fn upload_lines(c: &mut Criterion) {
    use onepoll::config::UploadLayout;
    use onepoll::proto::upload::{MemStore, Shared as UploadShared, UploadSession};
    const LINES: usize = 10_000;
    let mut input = (LINES as u32).to_be_bytes().to_vec();
    for i in 0..LINES {
        input.extend((0..99).map(|j| b'a' + ((i + j) % 26) as u8));
        input.push(b'\n');
    }
    let mut group = c.benchmark_group("upload/lines");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("100B", |b| {
        b.iter(|| {
            let mut shared = Shared::new(&Config::default());
            shared.upload =
                UploadShared::new(Box::new(MemStore::new(UploadLayout::Flat)), u64::MAX);
            let mut out = Output::new();
            let mut session = UploadSession::new();
            feed(&mut session, &mut shared, &mut out, black_box(&input))
        })
    });
    group.finish();
}

// --------------------------------------------------------------- chat text

/// chat's text check (UTF-8, and the control characters SPEC 1.3 lists) on
/// 1000 lines of 80 bytes: ASCII (the fast path) and not (lines/s).
fn chat_text(c: &mut Criterion) {
    use onepoll::proto::chat::check_text;
    let mut group = c.benchmark_group("chat/text");
    for (name, line) in [
        ("ascii", "the quick brown fox jumps over the lazy dog, again and again, and then some"),
        ("utf8", "h\u{e9}llo w\u{f6}rld \u{2603} caf\u{e9} na\u{ef}ve \u{201c}quoted\u{201d} r\u{e9}sum\u{e9}"),
    ] {
        let lines: Vec<&[u8]> = vec![line.as_bytes(); 1000];
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                lines
                    .iter()
                    .filter(|l| check_text(black_box(l)).is_ok())
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(
    cores,
    transform_header,
    transform_actions,
    transform_shuffle_slice,
    chat_fanout,
    upload_lines,
    chat_text
);
criterion_main!(cores);
