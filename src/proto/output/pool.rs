//! The per-thread pool of drained reply buffers and segment queues, so
//! that a busy server does not pay a `malloc` and a `free` per batch of
//! replies or per receiver of a burst of broadcasts, while an idle
//! connection still owns nothing. What it keeps is bounded by the
//! thread's [`Policy`] (by default [`Policy::DEFAULT`]).
//!
//! The event loop is one thread, so one pool serves every connection;
//! tests and benches each run on their own thread and get their own.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use super::policy::Policy;
use super::segment::Segment;

thread_local! {
    static POLICY: Cell<Policy> = const { Cell::new(Policy::DEFAULT) };
    static BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static QUEUES: RefCell<Vec<VecDeque<Segment>>> = const { RefCell::new(Vec::new()) };
}

/// The policy this thread's reply queues follow.
pub fn policy() -> Policy {
    POLICY.with(Cell::get)
}

/// Makes this thread's reply queues follow `policy` from now on (benches
/// compare [`Policy::DEFAULT`] with [`Policy::PLAIN`]; the server keeps
/// the default). Spares beyond the new bounds are freed.
pub fn set_policy(policy: Policy) {
    POLICY.with(|p| p.set(policy));
    BUFFERS.with(|spares| {
        spares
            .borrow_mut()
            .retain(|b| b.capacity() <= policy.spare_buffer_bytes);
        spares.borrow_mut().truncate(policy.spare_buffers);
    });
    QUEUES.with(|spares| {
        spares
            .borrow_mut()
            .retain(|q| q.capacity() <= policy.spare_queue_slots);
        spares.borrow_mut().truncate(policy.spare_queues);
    });
}

/// Whether a connection keeps a drained buffer of `capacity` bytes for
/// its next replies ([`Policy::keep_drained`]).
#[inline]
pub(super) fn keeps_drained(capacity: usize) -> bool {
    capacity <= POLICY.with(|p| p.get().keep_drained)
}

/// An empty buffer with room for `additional` bytes, from the spares if
/// one is there.
pub(super) fn buffer(additional: usize) -> Vec<u8> {
    match BUFFERS.with(|spares| spares.borrow_mut().pop()) {
        Some(mut buffer) => {
            buffer.reserve(additional);
            buffer
        }
        None => Vec::with_capacity(additional.max(policy().min_buffer)),
    }
}

/// Takes back a buffer whose bytes are all sent: kept as a spare if it is
/// small enough and the pool has room, freed otherwise.
pub(super) fn give_back_buffer(mut buffer: Vec<u8>) {
    let policy = policy();
    if buffer.capacity() > 0 && buffer.capacity() <= policy.spare_buffer_bytes {
        buffer.clear();
        BUFFERS.with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < policy.spare_buffers {
                spares.push(buffer);
            }
        });
    }
}

/// An empty segment queue with room for one segment at least, from the
/// spares if one is there.
pub(super) fn queue() -> VecDeque<Segment> {
    QUEUES
        .with(|spares| spares.borrow_mut().pop())
        .unwrap_or_else(|| VecDeque::with_capacity(4))
}

/// Takes back a drained segment queue: kept as a spare if it is small
/// enough and the pool has room, freed otherwise.
pub(super) fn give_back_queue(queue: VecDeque<Segment>) {
    debug_assert!(queue.is_empty());
    let policy = policy();
    if queue.capacity() > 0 && queue.capacity() <= policy.spare_queue_slots {
        QUEUES.with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < policy.spare_queues {
                spares.push(queue);
            }
        });
    }
}

/// What the pool holds now: spare buffers, their bytes (capacity), and
/// spare queues. For tests.
#[cfg(test)]
pub(super) fn held() -> (usize, usize, usize) {
    let (buffers, bytes) = BUFFERS.with(|spares| {
        let spares = spares.borrow();
        (spares.len(), spares.iter().map(Vec::capacity).sum())
    });
    (buffers, bytes, QUEUES.with(|spares| spares.borrow().len()))
}
