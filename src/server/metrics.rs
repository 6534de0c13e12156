//! The loop's own figures for the stats listener (spec section 6): per
//! protocol connection gauges and accept, refusal and close counters, and
//! the wake-up counters and duration histogram. One plain struct the loop
//! owns and updates where each event happens (one thread: no atomics, no
//! locks). The cores' counters (requests, bytes) live in
//! [`crate::proto::counts::Counts`]; the stats renderer reads both.

use std::time::{Duration, Instant, SystemTime};

use crate::config::Protocol;
use crate::proto::CloseReason;

/// Why a connection was refused at accept (the `reason` label): the
/// reasons the refusal log counts.
pub use super::refusals::RefusalReason as Refusal;

/// How a connection ended (the `reason` label of closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The peer closed first (end of stream).
    Peer,
    /// The peer reset the connection.
    Reset,
    /// `--idle-timeout`.
    Idle,
    /// A broadcast member over `--max-sendq`.
    SlowConsumer,
    /// Closed to bring `--max-memory` back (wired by the memory branch).
    Memory,
    /// A read or write failed otherwise, or the core panicked.
    Error,
    /// The server shut down.
    Shutdown,
    /// A protocol limit ended it (wired by the branches adding limits).
    Limit,
    /// The protocol's own end: BYE, `/quit`, `Q`, a stats response.
    Done,
}

impl Closed {
    /// Every reason, in label order.
    pub const ALL: [Closed; 9] = [
        Closed::Peer,
        Closed::Reset,
        Closed::Idle,
        Closed::SlowConsumer,
        Closed::Memory,
        Closed::Error,
        Closed::Shutdown,
        Closed::Limit,
        Closed::Done,
    ];

    /// The label of a connection that ended for `reason`.
    pub fn of(reason: CloseReason) -> Closed {
        match reason {
            CloseReason::Finished => Closed::Done,
            CloseReason::PeerClosed => Closed::Peer,
            CloseReason::Reset => Closed::Reset,
            CloseReason::Error => Closed::Error,
            CloseReason::IdleTimeout => Closed::Idle,
            CloseReason::SendqExceeded => Closed::SlowConsumer,
            CloseReason::MemoryLimit => Closed::Memory,
            CloseReason::Limit(_) => Closed::Limit,
            CloseReason::Shutdown => Closed::Shutdown,
        }
    }

    /// The Prometheus label value.
    pub fn label(self) -> &'static str {
        match self {
            Closed::Peer => "peer",
            Closed::Reset => "reset",
            Closed::Idle => "idle",
            Closed::SlowConsumer => "slow_consumer",
            Closed::Memory => "memory",
            Closed::Error => "error",
            Closed::Shutdown => "shutdown",
            Closed::Limit => "limit",
            Closed::Done => "done",
        }
    }
}

/// Upper bounds of the wake-up duration buckets, in nanoseconds: 10 µs to
/// 1 s, 1-2.5-5 per decade (the `+Inf` bucket is the count).
pub const WAKEUP_BUCKETS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// A fixed-bucket histogram of durations (non-cumulative counts; the
/// exposition sums them).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound of [`WAKEUP_BUCKETS_NS`] and
    /// above the one before; the last slot is above 1 s.
    pub buckets: [u64; WAKEUP_BUCKETS_NS.len() + 1],
    /// Sum of every observation, nanoseconds.
    pub sum_ns: u64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn observe(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let slot = WAKEUP_BUCKETS_NS.partition_point(|&bound| bound < ns);
        if let Some(n) = self.buckets.get_mut(slot) {
            *n += 1;
        }
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.count += 1;
    }
}

/// The loop's figures.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// When the server started (monotonic): uptime.
    pub started: Instant,
    /// When the server started (wall clock): `process_start_time_seconds`.
    pub started_wall: SystemTime,
    /// Connections open now, per protocol.
    pub open: [u64; Protocol::COUNT],
    /// Connections accepted, per protocol.
    pub accepted: [u64; Protocol::COUNT],
    /// Connections refused at accept, per protocol and [`Refusal`].
    pub refused: [[u64; 4]; Protocol::COUNT],
    /// Connections closed, per protocol and [`Closed`].
    pub closed: [[u64; 9]; Protocol::COUNT],
    /// Loop wake-ups (polls that returned).
    pub wakeups: u64,
    /// Events handled.
    pub events: u64,
    /// How long each wake-up's work took (not the wait in `poll`).
    pub wakeup_duration: Histogram,
    /// Bytes every client buffer holds together (wired by the memory
    /// branch; 0 until then).
    pub buffered_bytes: u64,
    /// `--max-memory` (wired by the memory branch; 0 until then).
    pub memory_limit: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Figures of a server starting now.
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            open: [0; Protocol::COUNT],
            accepted: [0; Protocol::COUNT],
            refused: [[0; 4]; Protocol::COUNT],
            closed: [[0; 9]; Protocol::COUNT],
            wakeups: 0,
            events: 0,
            wakeup_duration: Histogram::default(),
            buffered_bytes: 0,
            memory_limit: 0,
        }
    }

    /// A connection of `protocol` was accepted and is served.
    #[inline]
    pub fn opened(&mut self, protocol: Protocol) {
        let i = protocol.index();
        if let (Some(open), Some(accepted)) = (self.open.get_mut(i), self.accepted.get_mut(i)) {
            *open += 1;
            *accepted += 1;
        }
    }

    /// A served connection of `protocol` closed, as `how`.
    #[inline]
    pub fn closed(&mut self, protocol: Protocol, how: Closed) {
        let i = protocol.index();
        if let Some(open) = self.open.get_mut(i) {
            *open = open.saturating_sub(1);
        }
        let slot = Closed::ALL.iter().position(|&c| c == how).unwrap_or(0);
        if let Some(n) = self.closed.get_mut(i).and_then(|row| row.get_mut(slot)) {
            *n += 1;
        }
    }

    /// A connection of `protocol` was refused at accept for `why` (the
    /// loop's refusal log writes the line).
    pub fn refused(&mut self, protocol: Protocol, why: Refusal) {
        let slot = Refusal::ALL.iter().position(|&r| r == why).unwrap_or(0);
        if let Some(n) = self
            .refused
            .get_mut(protocol.index())
            .and_then(|row| row.get_mut(slot))
        {
            *n += 1;
        }
    }

    /// Connections open now, all protocols.
    pub fn open_total(&self) -> u64 {
        self.open.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_puts_each_duration_in_its_bucket() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(11));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[8], 1);
        assert_eq!(h.buckets[16], 1);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_ns, 10_000 + 11_000 + 3_000_000 + 2_000_000_000);
    }

    #[test]
    fn closes_are_labelled_as_the_close_reason_says() {
        use crate::proto::Limit;
        for reason in [
            CloseReason::Finished,
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::Error,
            CloseReason::IdleTimeout,
            CloseReason::SendqExceeded,
            CloseReason::MemoryLimit,
            CloseReason::Limit(Limit::MaxFiles),
            CloseReason::Shutdown,
        ] {
            assert_eq!(Closed::of(reason).label(), reason.label(), "{reason:?}");
        }
    }

    #[test]
    fn refusals_are_counted_per_protocol_and_reason() {
        let [_, one, two, ..] = Protocol::EVERY;
        let mut m = Metrics::new();
        for _ in 0..5 {
            m.refused(one, Refusal::ServerFull);
        }
        m.refused(two, Refusal::Rate);
        assert_eq!(m.refused[one.index()][0], 5);
        assert_eq!(m.refused[two.index()][2], 1);
        assert_eq!(m.refused[two.index()][0], 0);
    }
}
