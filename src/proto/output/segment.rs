//! One queued piece of a connection's output: owned bytes, a shared
//! broadcast, or a message still charged to a budget.

use std::rc::Rc;

use crate::proto::budget::Reservation;

/// A run of bytes queued whole, in one of three forms.
pub(in crate::proto::output) enum Segment {
    /// Bytes this connection owns: a batch of replies appended back to back.
    Owned(Vec<u8>),
    /// One allocation sent to many receivers (chat).
    Shared(Rc<[u8]>),
    /// A whole message still charged to a [`Budget`](crate::proto::Budget)
    /// until the kernel has taken its last byte. The reservation is only
    /// held, never read: dropping the segment gives the bytes back.
    Held(Vec<u8>, #[allow(dead_code)] Reservation),
}

impl Segment {
    /// The segment's bytes, sent or not.
    pub(in crate::proto::output) fn bytes(&self) -> &[u8] {
        match self {
            Segment::Owned(v) | Segment::Held(v, _) => v,
            Segment::Shared(rc) => rc,
        }
    }

    /// Heap bytes this connection owns in the segment (a shared one is
    /// not its alone).
    pub(in crate::proto::output) fn owned_capacity(&self) -> usize {
        match self {
            Segment::Owned(v) | Segment::Held(v, _) => v.capacity(),
            Segment::Shared(_) => 0,
        }
    }
}
