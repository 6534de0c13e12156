//! Connection deadlines: idle timeouts, close grace periods and line
//! pacing refills.
//!
//! Activity costs nothing here: a read or write only stores the time in the
//! connection. Each connection has at most one pending entry per kind in a
//! min-heap; when an entry comes due the loop looks at the connection's real
//! last activity and either acts or re-arms the entry for the real deadline.
//! So the heap is touched once per idle period of a connection, never per
//! event, and a wake-up with nothing due does no work at all. Entries carry
//! the connection's unique id, so an entry outliving its connection (or one
//! whose slab key was reused) is recognised and dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, SystemTime};

use crate::sys::process::{monotonic_coarse, realtime_coarse};

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// `--idle-timeout`: no traffic either way for that long.
    Idle,
    /// A closing connection's last replies and the peer's EOF have not come
    /// in time: drop it.
    CloseGrace,
    /// Line pacing: the client's next token is due; read it again
    /// (`server::pacing`).
    Refill,
}

/// A due entry: which connection, and why. 24 bytes: one per connection,
/// so it counts in an idle connection's cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When, in loop milliseconds.
    pub at: u64,
    /// The connection's unique id (guards against reused keys).
    pub id: u64,
    /// Slab key of the connection (connections are bounded by
    /// `--max-conns`, far below 2^32).
    key: u32,
    /// What for.
    pub kind: TimerKind,
}

impl Due {
    /// Slab key of the connection.
    pub fn key(&self) -> usize {
        self.key as usize
    }
}

/// The loop's deadlines, earliest first.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Due>>,
}

impl Timers {
    /// No deadlines.
    pub fn new() -> Timers {
        Timers::default()
    }

    /// No deadlines, room for `capacity` without reallocating. Untouched
    /// capacity costs address space, not memory.
    pub fn with_capacity(capacity: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(capacity),
        }
    }

    /// Drops the entries of connections that are gone (`live(key, id)` is
    /// false). A closed connection's idle entry would otherwise stay until
    /// it comes due: at 10,000 connections a second and a 300 s timeout,
    /// three million stale entries. The loop calls this when stale entries
    /// outnumber live connections, so the cost per close stays constant.
    pub fn retain_live(&mut self, mut live: impl FnMut(usize, u64) -> bool) {
        self.heap.retain(|Reverse(due)| live(due.key(), due.id));
    }

    /// Arms a deadline.
    pub fn arm(&mut self, at: u64, key: usize, id: u64, kind: TimerKind) {
        let Ok(key) = u32::try_from(key) else {
            log::error!("slab key {key} does not fit a timer entry; deadline dropped");
            return;
        };
        self.heap.push(Reverse(Due { at, id, key, kind }));
    }

    /// The earliest deadline, if any.
    pub fn next_at(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(due)| due.at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<Due> {
        match self.heap.peek() {
            Some(Reverse(due)) if due.at <= now => self.heap.pop().map(|Reverse(due)| due),
            _ => None,
        }
    }

    /// Entries pending (stale ones included until they come due).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The loop's clock, read once per wake-up: monotonic milliseconds for
/// deadlines and wall-clock time for the protocols that tell the time.
///
/// Both are Linux's coarse clocks, which the kernel advances at each
/// scheduler tick (1 to 4 ms) and the process reads from a page the kernel
/// shares with it: several times cheaper than the precise clocks, which
/// read the TSC (docs/PERFORMANCE.md). A loop that wakes twice per
/// short connection reads it four times per connection; deadlines here are
/// seconds long (idle timeout, close grace) and the time is told to the
/// second, so a few milliseconds of resolution cost nothing.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The monotonic clock when the loop started: the origin of `now`.
    start: Duration,
    /// Milliseconds since the loop started.
    pub now: u64,
    /// Wall-clock time of this wake-up.
    pub wall: SystemTime,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            start: monotonic_coarse(),
            now: 0,
            wall: SystemTime::UNIX_EPOCH + realtime_coarse(),
        }
    }

    /// Reads the time (once per wake-up). `now` never goes back.
    pub fn tick(&mut self) {
        let since_start = monotonic_coarse().saturating_sub(self.start);
        self.now = self.now.max(millis(since_start));
        self.wall = SystemTime::UNIX_EPOCH + realtime_coarse();
    }

    /// The loop time `d` from now.
    pub fn after(&self, d: Duration) -> u64 {
        self.now.saturating_add(millis(d))
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_real_time_to_a_few_milliseconds() {
        let mut clock = Clock::new();
        let wall_before = SystemTime::now();
        std::thread::sleep(Duration::from_millis(120));
        clock.tick();
        let wall_after = SystemTime::now();
        // Sleeping 120 ms moves it 120 ms, give or take a scheduler tick
        // (4 ms at HZ=250) plus a generous allowance for a loaded machine.
        assert!((110..2_000).contains(&clock.now), "now = {}", clock.now);
        let slack = Duration::from_millis(20);
        assert!(clock.wall + slack >= wall_before + Duration::from_millis(120));
        assert!(clock.wall <= wall_after + slack);
        let before = clock.now;
        clock.tick();
        assert!(clock.now >= before);
    }

    #[test]
    fn stale_entries_can_be_dropped() {
        let mut t = Timers::new();
        for key in 0..10 {
            t.arm(5, key, key as u64, TimerKind::Idle);
        }
        t.retain_live(|key, _| key % 2 == 0);
        assert_eq!(t.len(), 5);
        assert!(std::iter::from_fn(|| t.pop_due(5)).all(|d| d.key() % 2 == 0));
    }

    #[test]
    fn entries_come_due_in_deadline_order() {
        let mut t = Timers::new();
        t.arm(30, 3, 3, TimerKind::Idle);
        t.arm(10, 1, 1, TimerKind::CloseGrace);
        t.arm(20, 2, 2, TimerKind::Idle);
        assert_eq!(t.next_at(), Some(10));
        assert!(t.pop_due(9).is_none());
        let keys: Vec<usize> = std::iter::from_fn(|| t.pop_due(25))
            .map(|d| d.key())
            .collect();
        assert_eq!(keys, [1, 2]);
        assert_eq!(t.len(), 1);
    }
}
