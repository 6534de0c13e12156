//! Unit tests of the reply queue and its retention policy.

use super::*;
use crate::proto::Budget;

fn drain_by(out: &mut Output, step: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = out.io_slices(&mut slices);
        let mut budget = step;
        for s in &slices[..n] {
            let take = s.len().min(budget);
            got.extend_from_slice(&s[..take]);
            budget -= take;
        }
        let taken = step - budget;
        out.consume(taken);
    }
    got
}

#[test]
fn footprint_counts_each_queued_segment_slot() {
    let mut out = Output::new();
    assert_eq!(out.footprint(), 0);
    out.put(b"abc");
    out.put(b"de");
    assert_eq!(
        out.footprint(),
        5 + SEGMENT_COST,
        "appended to one owned buffer"
    );
    let line: Rc<[u8]> = Rc::from(&b"MSG a x\n"[..]);
    for _ in 0..10 {
        out.put_shared(Rc::clone(&line));
    }
    assert_eq!(out.footprint(), 5 + 80 + 11 * SEGMENT_COST);
    out.release_if_empty();
    out.consume(85);
    out.release_if_empty();
    assert_eq!(out.footprint(), 0);
}

#[test]
fn small_replies_share_one_segment() {
    let mut out = Output::new();
    out.put(b"ab");
    out.put(b"cd");
    out.put_u32(1);
    assert_eq!(out.segment_count(), 1);
    assert_eq!(out.front(), b"abcd\0\0\0\x01");
}

#[test]
fn partial_writes_keep_their_place_across_segment_kinds() {
    let budget = Budget::new(100);
    let mut out = Output::new();
    out.put(b"hello ");
    out.put_shared(Rc::from(&b"shared "[..]));
    out.put_held(b"held ".to_vec(), budget.try_reserve(5).unwrap());
    out.put(b"tail");
    assert_eq!(budget.held(), 5);
    assert_eq!(drain_by(&mut out, 3), b"hello shared held tail");
    assert_eq!(
        budget.held(),
        0,
        "held bytes give their budget back once sent"
    );
}

#[test]
fn mapped_put_copies_once_and_transforms() {
    let mut out = Output::new();
    out.put_mapped([], b"abc", |b| b.make_ascii_uppercase());
    out.put_each_mapped(*b"[", b"def", |b| b.to_ascii_uppercase());
    out.put_mapped(*b"]", b"", |b| b.make_ascii_uppercase());
    assert_eq!(out.len(), 8);
    assert_eq!(out.segment_count(), 1, "one buffer for all three");
    assert_eq!(out.take_all(), b"ABC[DEF]", "heads are copied unmapped");
}

#[test]
fn drained_queue_can_release_all_memory() {
    let mut out = Output::new();
    out.put(&[7; 100]);
    out.consume(100);
    assert!(out.heap_bytes() > 0, "a small buffer is kept while busy");
    out.release_if_empty();
    assert_eq!(out.heap_bytes(), 0);
}

#[test]
fn one_delivery_needs_no_queue() {
    let msg: Rc<[u8]> = Rc::from(&b"MSG a hi\n"[..]);
    let mut out = Output::new();
    out.put_shared(Rc::clone(&msg));
    assert!(
        matches!(out.store, Store::Shared(_)),
        "held inline, no queue"
    );
    assert_eq!(out.heap_bytes(), 0, "a shared message is not owned");
    assert_eq!(out.footprint(), 9 + SEGMENT_COST);
    out.consume(4);
    assert_eq!(out.front(), b"a hi\n");
    out.consume(5);
    assert_eq!(Rc::strong_count(&msg), 1, "sent, the copy is released");
    assert_eq!(out.segment_count(), 0);
}

/// Every way of queueing, interleaved with partial writes of any size,
/// sends the bytes in the order they were queued, whichever of the
/// inline and queued forms the output is in at each step.
mod random_sequences {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Put(Vec<u8>),
        PutVec(Vec<u8>),
        PutShared(Vec<u8>),
        PutHeld(Vec<u8>),
        Write(usize),
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..12);
        prop_oneof![
            bytes().prop_map(Op::Put),
            bytes().prop_map(Op::PutVec),
            bytes().prop_map(Op::PutShared),
            bytes().prop_map(Op::PutHeld),
            (0usize..40).prop_map(Op::Write),
            Just(Op::Release),
        ]
    }

    /// Takes up to `n` bytes the way a `writev` would, checking that
    /// the plain `write` the loop makes of one contiguous run would
    /// offer the same bytes.
    fn write(out: &mut Output, n: usize, sent: &mut Vec<u8>) {
        let mut slices = [IoSlice::new(&[]); 4];
        let count = out.io_slices(&mut slices);
        match out.contiguous() {
            Some(run) => assert!(count == 1 && run == &*slices[0], "one run, the writev's"),
            None => assert_ne!(count, 1, "a single slice is a contiguous run"),
        }
        let mut taken = 0;
        for slice in &slices[..count] {
            let take = slice.len().min(n - taken);
            sent.extend_from_slice(&slice[..take]);
            taken += take;
        }
        out.consume(taken);
    }

    proptest! {
        #[test]
        fn bytes_leave_in_the_order_queued(ops in proptest::collection::vec(op(), 0..40)) {
            let budget = Budget::new(1 << 20);
            let mut out = Output::new();
            let (mut queued, mut sent) = (Vec::new(), Vec::new());
            for op in ops {
                match op {
                    Op::Put(b) => { queued.extend_from_slice(&b); out.put(&b) }
                    Op::PutVec(b) => { queued.extend_from_slice(&b); out.put_vec(b) }
                    Op::PutShared(b) => { queued.extend_from_slice(&b); out.put_shared(Rc::from(b)) }
                    Op::PutHeld(b) => {
                        queued.extend_from_slice(&b);
                        let reservation = budget.try_reserve(b.len()).unwrap();
                        out.put_held(b, reservation);
                    }
                    Op::Write(n) => write(&mut out, n, &mut sent),
                    Op::Release => out.release_if_empty(),
                }
                prop_assert_eq!(out.len(), queued.len() - sent.len());
                prop_assert_eq!(out.is_empty(), out.segment_count() == 0);
            }
            while !out.is_empty() {
                write(&mut out, 7, &mut sent);
            }
            prop_assert_eq!(&sent, &queued);
            prop_assert_eq!(budget.held(), 0, "every held byte was given back");
            out.release_if_empty();
            prop_assert_eq!(out.heap_bytes(), 0);
        }
    }
}

#[test]
fn drained_segment_queues_are_freed() {
    let msg: Rc<[u8]> = Rc::from(&b"MSG a hi\n"[..]);
    let mut out = Output::new();
    for _ in 0..9 {
        out.put_shared(Rc::clone(&msg));
    }
    out.put_vec(vec![1; 3]);
    assert!(out.heap_bytes() > 3, "a queue of ten slots");
    out.consume(out.len());
    out.release_if_empty();
    assert_eq!(out.heap_bytes(), 0);
    assert_eq!(Rc::strong_count(&msg), 1, "sent copies are released");
}

#[test]
fn empty_puts_queue_nothing() {
    let mut out = Output::new();
    out.put(b"");
    out.put_vec(Vec::new());
    out.put_shared(Rc::from(&b""[..]));
    assert!(out.is_empty());
    assert_eq!(out.segment_count(), 0);
}

#[test]
fn the_charge_counts_owned_bytes_and_slots_not_shared_text() {
    let mut out = Output::new();
    let line: Rc<[u8]> = Rc::from(&b"MSG a 0123456789\n"[..]);
    out.put_shared(Rc::clone(&line));
    assert_eq!(out.charge(), 0, "one inline shared message");
    out.put_shared(Rc::clone(&line));
    out.put(b"OK\n");
    let slots = match &out.store {
        Store::Queue(q) => q.capacity() * SEGMENT_COST,
        _ => unreachable!(),
    };
    assert_eq!(out.charge(), 3 + slots, "the owned reply and the slots");
    // Part of the first shared message goes: still not charged.
    out.consume(4);
    assert_eq!(out.charge(), 3 + slots);
    // Both shared messages go: the owned reply is left.
    out.consume(2 * line.len() - 4);
    assert_eq!(out.shared, 0);
    out.consume(3);
    assert!(out.is_empty());
    assert_eq!(out.charge(), out.heap_bytes());
}

/// Queues `total` bytes in replies of 64 KiB, as a burst of large
/// replies would, and returns the output.
fn burst(total: usize) -> Output {
    let mut out = Output::new();
    let piece = vec![b'x'; 64 * 1024];
    for _ in 0..total / piece.len() {
        out.put(&piece);
    }
    out
}

#[test]
fn a_buffer_grown_by_a_burst_is_given_back_once_it_drains() {
    let policy = Policy::DEFAULT;
    let mut out = burst(1 << 20);
    assert!(out.heap_bytes() >= 1 << 20);
    assert!(out.heap_bytes() > policy.keep_drained);
    // Written in three pieces: kept until the last byte is taken.
    out.consume(300 * 1024);
    out.consume(300 * 1024);
    assert!(out.heap_bytes() >= 1 << 20, "still sending");
    out.consume(out.len());
    assert_eq!(out.heap_bytes(), 0, "over keep_drained: freed on draining");
}

#[test]
fn a_burst_behind_a_broadcast_is_given_back_once_it_drains() {
    let mut out = Output::new();
    out.put_shared(Rc::from(&b"MSG a hi\n"[..]));
    out.put(&vec![b'x'; 1 << 20]);
    assert_eq!(out.segment_count(), 2);
    out.consume(out.len());
    assert_eq!(
        out.heap_bytes(),
        0,
        "the last owned buffer is over keep_drained"
    );
}

#[test]
fn a_mid_sized_buffer_is_kept_while_busy_then_freed_once_idle() {
    let policy = Policy::DEFAULT;
    let mut out = burst(128 * 1024);
    let grown = out.heap_bytes();
    assert!(grown > policy.keep_warm && grown <= policy.keep_drained);
    out.consume(out.len());
    assert_eq!(out.heap_bytes(), grown, "kept for the next replies");
    out.release_if_empty();
    assert_eq!(out.heap_bytes(), 0, "an idle connection owns nothing");
}

#[test]
fn the_warm_reply_output_keeps_a_small_buffer_only() {
    let policy = Policy::DEFAULT;
    let mut small = Output::new();
    small.put(b"OK\n");
    small.consume(3);
    small.release_if_large();
    let kept = small.heap_bytes();
    assert!(kept > 0 && kept <= policy.keep_warm, "kept warm: {kept}");
    let mut grown = burst(128 * 1024);
    grown.consume(grown.len());
    assert!(grown.heap_bytes() > policy.keep_warm, "kept while busy");
    grown.release_if_large();
    assert_eq!(grown.heap_bytes(), 0, "over keep_warm: freed");
}

#[test]
fn a_first_buffer_has_room_for_a_batch() {
    let policy = Policy::DEFAULT;
    assert_eq!(policy.first_capacity(3), policy.min_buffer);
    assert_eq!(policy.first_capacity(1 << 20), 1 << 20);
    let mut out = Output::new();
    out.put(b"OK\n");
    assert!(out.heap_bytes() >= policy.min_buffer);
    for _ in 0..100 {
        out.put(b"OK\n");
    }
    assert_eq!(
        out.heap_bytes(),
        policy.first_capacity(3),
        "no reallocation"
    );
}

#[test]
fn the_inline_segment_costs_no_room() {
    assert_eq!(
        std::mem::size_of::<Store>(),
        std::mem::size_of::<VecDeque<Segment>>(),
        "holding one segment inline grows a connection by nothing"
    );
}
