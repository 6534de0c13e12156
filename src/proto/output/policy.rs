//! The retention rules of the reply buffers, in one place: how large a new
//! buffer is, and which drained buffers are kept rather than freed. What
//! each rule buys is measured in `benches/output.rs` and
//! docs/PERFORMANCE.md ("Reply buffers").
//!
//! Nothing here pools memory between connections: a per-thread pool of
//! spare buffers and queues measured no better than the allocator (see
//! docs/PERFORMANCE.md) and was removed. What is kept is kept by its owner:
//! a busy connection its drained buffer, the loop its one warm reply
//! output, and an idle connection nothing.

/// The limits on the memory a reply queue allocates and keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Smallest buffer allocated for owned bytes, so that a batch of tiny
    /// replies appended one by one does not reallocate on each append.
    pub min_buffer: usize,
    /// Largest buffer a connection keeps, emptied, once the kernel has
    /// taken all of it, for the replies to its next requests while it is
    /// busy ([`Output::consume`](super::Output::consume)). A larger one,
    /// grown by a burst, is freed as soon as it drains; every kept buffer
    /// is freed when the connection is settled idle
    /// ([`Output::release_if_empty`](super::Output::release_if_empty)).
    pub keep_drained: usize,
    /// Largest buffer the loop's one reply output, lent to each
    /// request/reply connection in turn, keeps warm between turns
    /// ([`Output::release_if_large`](super::Output::release_if_large)).
    pub keep_warm: usize,
}

impl Policy {
    /// The server's rules: a 4 KiB first buffer, a drained buffer of up
    /// to 256 KiB kept while the connection is busy, and a warm reply
    /// buffer of up to 16 KiB.
    pub const DEFAULT: Policy = Policy {
        min_buffer: 4096,
        keep_drained: 256 * 1024,
        keep_warm: 16 * 1024,
    };

    /// Capacity of a new buffer that must take `additional` bytes.
    #[inline]
    pub const fn first_capacity(&self, additional: usize) -> usize {
        if additional > self.min_buffer {
            additional
        } else {
            self.min_buffer
        }
    }

    /// Whether a busy connection keeps a drained buffer of `capacity` bytes.
    #[inline]
    pub const fn keeps_drained(&self, capacity: usize) -> bool {
        capacity <= self.keep_drained
    }

    /// Whether the loop's reply output keeps a drained buffer of
    /// `capacity` bytes between turns.
    #[inline]
    pub const fn keeps_warm(&self, capacity: usize) -> bool {
        capacity <= self.keep_warm
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::DEFAULT
    }
}
