//! The reply queue of one connection: bytes a protocol core has produced and
//! the socket has not yet taken.
//!
//! It is I/O-free: cores append to it, the event loop offers its contents to
//! `writev` through [`Output::io_slices`] and reports what the kernel took
//! with [`Output::consume`]. Three kinds of segment share the queue:
//!
//! - owned bytes, where small replies are appended back to back (a pipelined
//!   batch of replies becomes one segment and one `write`);
//! - shared bytes (`Rc<[u8]>`), one allocation sent to many receivers (chat);
//! - held bytes, a whole message still charged to a [`Budget`](super::Budget)
//!   until the kernel has taken its last byte.
//!
//! One segment, the usual case, is held inline; a queue of segments is taken
//! (from a per-thread cache of spares) only for a second one. An empty
//! output owns no heap memory: a drained connection costs nothing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;
use std::thread::LocalKey;

use super::budget::Reservation;

/// Smallest buffer allocated for owned bytes, so that a burst of tiny replies
/// does not reallocate on each append.
const MIN_OWNED_CAPACITY: usize = 4096;

/// Drained reply buffers kept for reuse by any connection: a busy server
/// then pays no malloc and free per batch of replies, while an idle
/// connection still owns nothing. Bounded to [`SPARE_BUFFERS`] buffers of
/// at most [`SPARE_CAPACITY`] bytes each (1 MiB in all).
const SPARE_BUFFERS: usize = 64;

/// Largest buffer the spare cache keeps.
const SPARE_CAPACITY: usize = 16 * 1024;

/// Drained segment queues kept for reuse, so that a burst of broadcasts to
/// a thousand receivers (two or more messages each before a flush) does
/// not allocate a thousand queues and free them again after the flush
/// (glibc's per-thread cache holds seven blocks of a size; the rest took
/// the slow path, 2-3% of the server's CPU at 1000 receivers). Enough for
/// a room of [`SPARE_QUEUES`] receivers.
const SPARE_QUEUES: usize = 1024;

/// Largest queue (in segment slots) the spare cache keeps: 8 slots of
/// [`SEGMENT_COST`] bytes, so the cache holds at most 320 KiB.
const SPARE_QUEUE_SLOTS: usize = 8;

thread_local! {
    static SPARES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SPARE_QUEUES_CACHE: RefCell<Vec<VecDeque<Segment>>> = const { RefCell::new(Vec::new()) };
}

/// One of the per-thread caches above: a spare, if it holds one.
fn take_spare<T: 'static>(cache: &'static LocalKey<RefCell<Vec<T>>>) -> Option<T> {
    cache.with(|spares| spares.borrow_mut().pop())
}

/// Keeps `item` in a per-thread cache if the cache has fewer than `limit`.
fn keep_spare<T: 'static>(cache: &'static LocalKey<RefCell<Vec<T>>>, item: T, limit: usize) {
    cache.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < limit {
            spares.push(item);
        }
    });
}

/// An empty segment queue with room for one segment at least, from the
/// spares if one is there.
fn fresh_queue() -> VecDeque<Segment> {
    take_spare(&SPARE_QUEUES_CACHE).unwrap_or_else(|| VecDeque::with_capacity(4))
}

/// Keeps a drained, small segment queue for reuse if the cache has room.
fn give_back_queue(queue: VecDeque<Segment>) {
    debug_assert!(queue.is_empty());
    if queue.capacity() > 0 && queue.capacity() <= SPARE_QUEUE_SLOTS {
        keep_spare(&SPARE_QUEUES_CACHE, queue, SPARE_QUEUES);
    }
}

/// An empty buffer with room for `additional` bytes, from the spares if
/// one is there.
fn fresh_buffer(additional: usize) -> Vec<u8> {
    match take_spare(&SPARES) {
        Some(mut buffer) => {
            buffer.reserve(additional);
            buffer
        }
        None => Vec::with_capacity(additional.max(MIN_OWNED_CAPACITY)),
    }
}

/// Keeps a drained buffer for reuse if it is small and the cache has room.
fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() > 0 && buffer.capacity() <= SPARE_CAPACITY {
        buffer.clear();
        keep_spare(&SPARES, buffer, SPARE_BUFFERS);
    }
}

/// Largest owned buffer kept for reuse once fully written, while the
/// connection is busy. Larger ones are freed.
const KEEP_CAPACITY: usize = 256 * 1024;

enum Segment {
    Owned(Vec<u8>),
    Shared(Rc<[u8]>),
    /// The reservation is only held, never read: dropping the segment
    /// gives the bytes back to the budget.
    Held(Vec<u8>, #[allow(dead_code)] Reservation),
}

impl Segment {
    fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(v) | Segment::Held(v, _) => v,
            Segment::Shared(rc) => rc,
        }
    }
}

/// What one queued segment costs beyond its bytes: its slot in the queue.
pub const SEGMENT_COST: usize = std::mem::size_of::<Segment>();

/// Where the unsent segments live. Most connections never hold more than
/// one segment at a time (a request/reply connection's batch of replies,
/// a chat receiver's one delivery per wake-up), so one segment is held
/// inline and a queue is only taken from the spares for a second: no
/// queue to take and give back per reply. The same size as the queue
/// alone (32 bytes), so a connection grows by nothing.
#[derive(Default)]
enum Store {
    /// Nothing queued, no memory owned.
    #[default]
    Empty,
    /// One owned buffer: a batch of replies, or (written out, cleared) the
    /// buffer kept for the next batch while the connection is busy.
    Owned(Vec<u8>),
    /// One shared message.
    Shared(Rc<[u8]>),
    /// Two segments or more (or a held one), in order; never empty while
    /// bytes are queued.
    Queue(VecDeque<Segment>),
}

impl Store {
    /// A store of `segment` alone: inline, unless it is held (rare, and
    /// it needs its reservation kept beside it: a queue).
    fn holding(segment: Segment) -> Store {
        match segment {
            Segment::Owned(v) => Store::Owned(v),
            Segment::Shared(rc) => Store::Shared(rc),
            held @ Segment::Held(..) => Store::Queue(queue_of(held, None)),
        }
    }
}

/// The unsent output of one connection, in the order it must reach the peer.
#[derive(Default)]
pub struct Output {
    store: Store,
    /// Bytes of the front segment the socket has already taken.
    front_sent: usize,
    /// Unsent bytes in all segments.
    len: usize,
    /// Bytes of the shared segments held (a partly sent front one whole):
    /// the part of the queue the memory budget does not charge to this
    /// connection (see [`Output::charge`]).
    shared: usize,
}

impl Output {
    /// An empty queue; allocates nothing.
    pub fn new() -> Output {
        Output::default()
    }

    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Unsent bytes plus [`SEGMENT_COST`] per queued segment: the memory
    /// this connection's queue holds, which is what chat's `--max-sendq`
    /// bounds. A queue of short broadcast lines, each its own shared
    /// segment, costs a few times its bytes.
    pub fn footprint(&self) -> usize {
        self.len + self.segment_count() * SEGMENT_COST
    }

    /// True when everything has been sent.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues a segment at the back. The first segment is held inline; a
    /// second moves both into a queue, taken from the spares.
    fn push(&mut self, segment: Segment) {
        if let Store::Empty = self.store {
            // The usual case: a first reply, or a delivery to a receiver
            // with nothing queued.
            return self.fill_empty(Store::holding(segment));
        }
        self.store = match std::mem::take(&mut self.store) {
            Store::Empty => Store::holding(segment),
            Store::Owned(v) if v.is_empty() => {
                // The drained buffer kept for the next batch: a segment
                // that is not an owned buffer takes its place, and it
                // goes back to the spares.
                give_back(v);
                self.front_sent = 0;
                Store::holding(segment)
            }
            Store::Owned(v) => Store::Queue(queue_of(Segment::Owned(v), Some(segment))),
            Store::Shared(rc) => Store::Queue(queue_of(Segment::Shared(rc), Some(segment))),
            Store::Queue(mut queue) => {
                queue.push_back(segment);
                Store::Queue(queue)
            }
        };
    }

    /// Puts `store` in place of an empty one. The empty store owns
    /// nothing, so it is forgotten, not dropped: the compiler does not
    /// always see that it is empty and would call the drop for nothing
    /// (23 instructions, once per reply or delivery).
    fn fill_empty(&mut self, store: Store) {
        debug_assert!(matches!(self.store, Store::Empty));
        std::mem::forget(std::mem::replace(&mut self.store, store));
    }

    /// Runs `append` on the owned tail buffer, which has room for at least
    /// `additional` bytes (a new one is queued if the tail is not owned).
    fn with_tail(&mut self, additional: usize, append: impl FnOnce(&mut Vec<u8>)) {
        let tail = match &mut self.store {
            Store::Owned(tail) => Some(tail),
            Store::Queue(queue) => match queue.back_mut() {
                Some(Segment::Owned(tail)) => Some(tail),
                _ => None,
            },
            Store::Empty | Store::Shared(_) => None,
        };
        if let Some(tail) = tail {
            tail.reserve(additional);
            append(tail);
            return;
        }
        let mut tail = fresh_buffer(additional);
        append(&mut tail);
        self.push(Segment::Owned(tail));
    }

    /// Appends bytes to the queue.
    pub fn put(&mut self, bytes: &[u8]) {
        self.put_all(&[bytes]);
    }

    /// Appends several pieces of one reply (a prefix, the text, the line
    /// end): one room check for all of them.
    pub fn put_all(&mut self, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return;
        }
        self.with_tail(total, |tail| {
            for part in parts {
                tail.extend_from_slice(part);
            }
        });
        self.len += total;
    }

    /// Appends a big-endian `u32` (network order), as length prefixes are sent.
    pub fn put_u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    /// Appends `head` as it is (a reply header, or nothing), then `src`
    /// with every byte passed through `map` on the way (a case change,
    /// say): one room check for both, and one pass over memory, where
    /// copying then rewriting the copy would be two (the difference shows
    /// once a message outgrows the cache: 64 MiB requests).
    ///
    /// The head's length is part of its type, so appending it is a store
    /// of that many bytes, not a call to `memcpy`.
    pub fn put_each_mapped<const N: usize>(
        &mut self,
        head: [u8; N],
        src: &[u8],
        map: impl Fn(u8) -> u8,
    ) {
        let total = N + src.len();
        if total == 0 {
            return;
        }
        self.with_tail(total, |tail| {
            tail.extend_from_slice(&head);
            tail.extend(src.iter().map(|&b| map(b)));
        });
        self.len += total;
    }

    /// Appends `head` as it is, then `src` after passing it through `map`,
    /// which rewrites the copy in place (for maps that carry state from
    /// byte to byte): one room check, one copy, no temporary.
    pub fn put_mapped<const N: usize>(
        &mut self,
        head: [u8; N],
        src: &[u8],
        map: impl FnOnce(&mut [u8]),
    ) {
        let total = N + src.len();
        if total == 0 {
            return;
        }
        self.with_tail(total, |tail| {
            tail.extend_from_slice(&head);
            let start = tail.len();
            tail.extend_from_slice(src);
            if let Some(copy) = tail.get_mut(start..) {
                map(copy);
            }
        });
        self.len += total;
    }

    /// Queues a buffer without copying it.
    pub fn put_vec(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.push(Segment::Owned(bytes));
    }

    /// Queues one shared copy of a message (a broadcast): the receiver holds a
    /// reference, not a copy.
    #[inline]
    pub fn put_shared(&mut self, bytes: Rc<[u8]>) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.shared += bytes.len();
        if let Store::Empty = self.store {
            // A receiver with nothing queued, the usual case: written in
            // place, not through the general push (one call and its
            // match on the segment fewer per delivery).
            return self.fill_empty(Store::Shared(bytes));
        }
        self.push(Segment::Shared(bytes));
    }

    /// Queues a whole message whose memory stays charged to `reservation`
    /// until the socket has taken all of it.
    pub fn put_held(&mut self, bytes: Vec<u8>, reservation: Reservation) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        self.push(Segment::Held(bytes, reservation));
    }

    /// The whole of the one inline segment, if there is one.
    fn single(&self) -> Option<&[u8]> {
        match &self.store {
            Store::Owned(v) => Some(v),
            Store::Shared(rc) => Some(rc),
            Store::Empty | Store::Queue(_) => None,
        }
    }

    /// Fills `slices` with the unsent bytes, in order, for one `writev`;
    /// returns how many slices were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let Store::Queue(queue) = &self.store else {
            let front = self.front();
            return match slices.first_mut() {
                Some(slot) if !front.is_empty() => {
                    *slot = IoSlice::new(front);
                    1
                }
                _ => 0,
            };
        };
        let mut filled = 0;
        for (i, (slot, segment)) in slices.iter_mut().zip(queue).enumerate() {
            let bytes = segment.bytes();
            let bytes = if i == 0 {
                bytes.get(self.front_sent..).unwrap_or_default()
            } else {
                bytes
            };
            *slot = IoSlice::new(bytes);
            filled += 1;
        }
        filled
    }

    /// The first unsent contiguous run of bytes (for a plain `write`).
    pub fn front(&self) -> &[u8] {
        let whole = match &self.store {
            Store::Queue(queue) => queue.front().map(Segment::bytes),
            _ => self.single(),
        };
        whole
            .and_then(|bytes| bytes.get(self.front_sent..))
            .unwrap_or_default()
    }

    /// The unsent bytes if they are one contiguous run (one segment), for
    /// a plain `write`; `None` if they span segments (or there are none).
    #[inline]
    pub fn contiguous(&self) -> Option<&[u8]> {
        let whole = match &self.store {
            Store::Owned(v) => v,
            Store::Shared(rc) => &rc[..],
            Store::Queue(queue) if queue.len() == 1 => queue.front().map(Segment::bytes)?,
            Store::Empty | Store::Queue(_) => return None,
        };
        whole.get(self.front_sent..).filter(|rest| !rest.is_empty())
    }

    /// Number of segments, which is how many slices a full `writev` needs.
    pub fn segment_count(&self) -> usize {
        match &self.store {
            Store::Empty => 0,
            Store::Owned(v) if v.is_empty() => 0,
            Store::Owned(_) | Store::Shared(_) => 1,
            Store::Queue(queue) => queue.len(),
        }
    }

    /// Records that the socket took the next `n` bytes. Fully sent segments
    /// are released (a held segment gives its budget back here); the last
    /// owned buffer keeps its capacity for the next replies unless it is
    /// large.
    pub fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len, "consumed more than was queued");
        n = n.min(self.len);
        self.len -= n;
        if self.len > 0 {
            if let Some(whole) = self.single() {
                // Part of the one segment went: only the offset moves.
                debug_assert!(self.front_sent + n < whole.len());
                self.front_sent += n;
                return;
            }
        }
        let Store::Queue(queue) = &mut self.store else {
            // All of the one segment went: a small buffer is kept for the
            // next replies, anything else is dropped.
            self.front_sent = 0;
            self.shared = 0;
            match &mut self.store {
                Store::Owned(v) if v.capacity() <= KEEP_CAPACITY => v.clear(),
                Store::Shared(_) => {
                    // A delivery sent whole, the usual case for a chat
                    // receiver: only the reference goes, inline (the
                    // general drop below is a call and a match).
                    if let Store::Shared(rc) = std::mem::take(&mut self.store) {
                        drop(rc);
                    }
                }
                _ => self.store = Store::Empty,
            }
            return;
        };
        while n > 0 {
            let Some(front) = queue.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_sent;
            if n < left {
                self.front_sent += n;
                return;
            }
            n -= left;
            self.front_sent = 0;
            let done = queue.pop_front();
            if let Some(Segment::Shared(rc)) = &done {
                self.shared = self.shared.saturating_sub(rc.len());
            }
            if queue.is_empty() {
                // Drained: the queue goes back to the spares, and the last
                // owned buffer is kept inline for the next replies.
                let queue = std::mem::take(queue);
                give_back_queue(queue);
                self.store = match done {
                    Some(Segment::Owned(mut v)) if v.capacity() <= KEEP_CAPACITY => {
                        v.clear();
                        Store::Owned(v)
                    }
                    _ => Store::Empty,
                };
                return;
            }
        }
    }

    /// Frees every buffer of a drained queue, so an idle connection owns no
    /// heap memory. Does nothing while bytes are pending.
    #[inline(always)]
    pub fn release_if_empty(&mut self) {
        // Most calls find nothing to release (a drained connection is
        // settled more than once per wake-up): that case costs two loads,
        // inlined.
        if self.len == 0 && !matches!(self.store, Store::Empty) {
            self.release();
        }
    }

    /// Frees the buffer of a drained output that holds more than a spare
    /// may (16 KiB): a long-lived output (the loop's reply
    /// output) keeps a small buffer warm, never a large one.
    pub fn release_if_large(&mut self) {
        if self.len == 0 && self.heap_bytes() > SPARE_CAPACITY {
            self.release();
        }
    }

    /// [`Output::release_if_empty`] when there is something to release.
    #[inline(never)]
    fn release(&mut self) {
        match std::mem::take(&mut self.store) {
            Store::Owned(buffer) => give_back(buffer),
            Store::Queue(mut queue) => {
                while let Some(segment) = queue.pop_front() {
                    if let Segment::Owned(buffer) = segment {
                        give_back(buffer);
                    }
                }
                give_back_queue(queue);
            }
            Store::Empty | Store::Shared(_) => {}
        }
        self.front_sent = 0;
        self.shared = 0;
    }

    /// What the queue holds in memory that is this connection's alone, for
    /// the loop's memory budget, in constant time: an inline buffer's
    /// capacity; for a queue, its owned and held bytes (the front's sent
    /// part too) plus its slots. The bytes of shared segments (chat
    /// broadcasts, one allocation for every receiver) are not charged to
    /// each receiver: see `server::memory_budget` for how they are bounded.
    #[inline]
    pub fn charge(&self) -> usize {
        match &self.store {
            Store::Empty | Store::Shared(_) => 0,
            Store::Owned(v) => v.capacity(),
            Store::Queue(queue) => {
                (self.len + self.front_sent).saturating_sub(self.shared)
                    + queue.capacity() * SEGMENT_COST
            }
        }
    }

    /// Bytes of heap memory owned by the queue (buffers' capacity), for
    /// memory accounting and tests.
    pub fn heap_bytes(&self) -> usize {
        let owned = |s: &Segment| match s {
            Segment::Owned(v) | Segment::Held(v, _) => v.capacity(),
            Segment::Shared(_) => 0,
        };
        match &self.store {
            Store::Empty | Store::Shared(_) => 0,
            Store::Owned(v) => v.capacity(),
            Store::Queue(queue) => {
                queue.iter().map(owned).sum::<usize>()
                    + queue.capacity() * std::mem::size_of::<Segment>()
            }
        }
    }

    /// Removes and returns every unsent byte, concatenated. For tests and
    /// for clients; the server flushes with [`io_slices`](Self::io_slices).
    pub fn take_all(&mut self) -> Vec<u8> {
        let mut all = Vec::with_capacity(self.len);
        all.extend_from_slice(self.front());
        if let Store::Queue(queue) = &self.store {
            for segment in queue.iter().skip(1) {
                all.extend_from_slice(segment.bytes());
            }
        }
        self.store = Store::Empty;
        self.front_sent = 0;
        self.len = 0;
        self.shared = 0;
        all
    }
}

/// A queue from the spares holding `first`, then `second` if given.
fn queue_of(first: Segment, second: Option<Segment>) -> VecDeque<Segment> {
    let mut queue = fresh_queue();
    queue.push_back(first);
    queue.extend(second);
    queue
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("segments", &self.segment_count())
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
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

    fn spare_queues() -> usize {
        SPARE_QUEUES_CACHE.with(|spares| spares.borrow().len())
    }

    #[test]
    fn one_delivery_needs_no_queue() {
        let msg: Rc<[u8]> = Rc::from(&b"MSG a hi\n"[..]);
        let before = spare_queues();
        let mut out = Output::new();
        out.put_shared(Rc::clone(&msg));
        assert_eq!(spare_queues(), before, "held inline, no queue taken");
        assert_eq!(out.heap_bytes(), 0, "a shared message is not owned");
        assert_eq!(out.footprint(), 9 + SEGMENT_COST);
        out.consume(4);
        assert_eq!(out.front(), b"a hi\n");
        out.consume(5);
        assert_eq!(Rc::strong_count(&msg), 1, "sent, the copy is released");
        assert_eq!(out.segment_count(), 0);
    }

    #[test]
    fn drained_segment_queues_are_reused_not_freed() {
        let msg: Rc<[u8]> = Rc::from(&b"MSG a hi\n"[..]);
        let mut receivers: Vec<Output> = (0..3).map(|_| Output::new()).collect();
        let before = spare_queues();
        for out in &mut receivers {
            // Two deliveries: the second moves both into a queue.
            out.put_shared(Rc::clone(&msg));
            out.put_shared(Rc::clone(&msg));
            assert_eq!(out.segment_count(), 2);
            out.consume(out.len());
            out.release_if_empty();
            assert_eq!(out.heap_bytes(), 0, "a drained receiver owns nothing");
        }
        // Each gave its queue back in turn and the next one took it.
        assert_eq!(spare_queues(), before + 1);
        receivers[0].put_shared(Rc::clone(&msg));
        receivers[0].put_shared(Rc::clone(&msg));
        assert_eq!(spare_queues(), before, "the next queue is the spare");
        assert_eq!(receivers[0].take_all(), b"MSG a hi\nMSG a hi\n");
        assert_eq!(Rc::strong_count(&msg), 1, "sent copies are released");
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
    fn large_segment_queues_are_not_kept() {
        let before = spare_queues();
        let mut out = Output::new();
        for _ in 0..=SPARE_QUEUE_SLOTS {
            out.put_vec(vec![1; 3]);
        }
        out.consume(out.len());
        out.release_if_empty();
        assert_eq!(spare_queues(), before);
        assert_eq!(out.heap_bytes(), 0);
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
}
