//! The tuning of the reply buffers, in one place: how large a new buffer
//! is, which drained buffers a connection keeps, and how many the
//! per-thread pool ([`super::pool`]) keeps for any connection. What each
//! limit buys is measured in `benches/output.rs` and docs/PERFORMANCE.md
//! ("Reply buffers").

/// The limits on the memory reply queues allocate and keep. Every bound
/// here is a bound on memory held while idle: an idle connection owns
/// nothing, and the pool of one thread holds at most
/// `spare_buffers * spare_buffer_bytes` plus
/// `spare_queues * spare_queue_slots * SEGMENT_COST` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Smallest buffer allocated for owned bytes, so that a batch of tiny
    /// replies appended one by one does not reallocate on each append.
    pub min_buffer: usize,
    /// Largest buffer a connection keeps, emptied, once the kernel has
    /// taken all of it, for the replies to its next requests in the same
    /// wake-up. A larger one (grown by a burst) is freed as soon as it
    /// drains.
    pub keep_drained: usize,
    /// Drained buffers the pool keeps for any connection's next replies.
    pub spare_buffers: usize,
    /// Largest buffer (capacity, bytes) the pool keeps as a spare.
    pub spare_buffer_bytes: usize,
    /// Drained segment queues the pool keeps: a broadcast to a room of
    /// this many receivers, each with two messages or more waiting, takes
    /// them from the pool instead of the allocator.
    pub spare_queues: usize,
    /// Largest queue (capacity, in segment slots) the pool keeps.
    pub spare_queue_slots: usize,
}

impl Policy {
    /// The server's tuning: a 4 KiB first buffer, a drained buffer of up
    /// to 256 KiB kept while the connection is busy, and a pool of 64
    /// buffers of up to 16 KiB (1 MiB) and 1024 queues of up to 8 slots
    /// (320 KiB).
    pub const DEFAULT: Policy = Policy {
        min_buffer: 4096,
        keep_drained: 256 * 1024,
        spare_buffers: 64,
        spare_buffer_bytes: 16 * 1024,
        spare_queues: 1024,
        spare_queue_slots: 8,
    };

    /// No pooling and no retention: every buffer is allocated at the size
    /// first asked for and freed as soon as it drains, as plain code would.
    /// The baseline the benches measure [`Policy::DEFAULT`] against.
    pub const PLAIN: Policy = Policy {
        min_buffer: 0,
        keep_drained: 0,
        spare_buffers: 0,
        spare_buffer_bytes: 0,
        spare_queues: 0,
        spare_queue_slots: 0,
    };
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::DEFAULT
    }
}
