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
//! only for a second one. An empty output owns no heap memory: a drained
//! connection costs nothing.
//!
//! How large a buffer starts and which drained buffers are kept rather
//! than freed is not decided here but by the one [`Policy`] (the
//! [`policy`] submodule), with what each rule buys measured in
//! `benches/output.rs`.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

use super::budget::Reservation;

pub mod policy;
mod segment;

pub use policy::Policy;
use segment::Segment;

/// The rules this queue follows.
const POLICY: Policy = Policy::DEFAULT;

/// What one queued segment costs beyond its bytes: its slot in the queue.
pub const SEGMENT_COST: usize = std::mem::size_of::<Segment>();

/// Where the unsent segments live. Most connections never hold more than
/// one segment at a time (a request/reply connection's batch of replies,
/// a chat receiver's one delivery per wake-up), so one segment is held
/// inline and a queue is only allocated for a second: no queue to
/// allocate and free per reply. The same size as the queue
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
    /// second moves both into a queue.
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
                // is freed.
                drop(v);
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
    /// always see that it is empty and would call the drop for nothing,
    /// once per reply or delivery (what that costs: docs/PERFORMANCE.md,
    /// "Reply buffers").
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
        let mut tail = Vec::with_capacity(POLICY.first_capacity(additional));
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
            // match on the segment fewer per delivery: measured in
            // docs/PERFORMANCE.md, "Reply buffers").
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
                Store::Owned(v) if POLICY.keeps_drained(v.capacity()) => v.clear(),
                Store::Shared(_) => {
                    // A delivery sent whole, the usual case for a chat
                    // receiver: only the reference goes, inline (the
                    // general drop below is a call and a match; measured
                    // in docs/PERFORMANCE.md, "Reply buffers").
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
                // Drained: the queue is freed, and the last owned buffer
                // is kept inline for the next replies if it is small.
                self.store = match done {
                    Some(Segment::Owned(mut v)) if POLICY.keeps_drained(v.capacity()) => {
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

    /// Frees the buffer of a drained output larger than
    /// [`Policy::keep_warm`]: a long-lived output (the loop's reply
    /// output) keeps a small buffer warm, never a large one.
    pub fn release_if_large(&mut self) {
        if self.len == 0 && !POLICY.keeps_warm(self.heap_bytes()) {
            self.release();
        }
    }

    /// [`Output::release_if_empty`] when there is something to release.
    #[inline(never)]
    fn release(&mut self) {
        self.store = Store::Empty;
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
        match &self.store {
            Store::Empty | Store::Shared(_) => 0,
            Store::Owned(v) => v.capacity(),
            Store::Queue(queue) => {
                queue.iter().map(Segment::owned_capacity).sum::<usize>()
                    + queue.capacity() * SEGMENT_COST
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

/// A new queue holding `first`, then `second` if given.
fn queue_of(first: Segment, second: Option<Segment>) -> VecDeque<Segment> {
    let mut queue = VecDeque::with_capacity(4);
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
mod tests;
