//! The total memory budget (spec section 5, `--max-memory`): every client
//! buffer together — unsent output (broadcast deliveries included),
//! carried partial input, messages a session holds (`Session::held_bytes`)
//! — stays under the limit. When the total passes it, the connections
//! that hold the most are closed until it is back under 90%.
//!
//! **Counting.** Each connection remembers what it was last charged
//! ([`Marks::charged`](super::marks::Marks::charged)); the loop recounts a
//! connection once per wake-up that touched it, at its flush (and a
//! broadcast receiver after each delivery to it), and adds the difference
//! to one running total,
//! [`MemoryBudget::buffered_bytes`]. A recount is a few loads
//! ([`Conn::memory_charge`], constant time), so nothing is summed per
//! message and nothing walks the connections until the total is over.
//!
//! **Shared broadcast deliveries: each receiver is charged its queue slot, the
//! text is not charged per receiver.** One broadcast is one allocation
//! that every receiver's queue points to. Charging its bytes to each
//! receiver (as `--max-sendq` does, per connection) would count a line
//! sent to 10,000 members 10,000 times: the budget would then close
//! members for memory the process does not hold, and closing them would
//! make it worse (each closed member's leaving notice, charged to every
//! remaining member, counts more than the member held: measured, a storm
//! of 10,000 silent members ended with 8,000 of them closed, bystanders
//! too). What the broadcast texts themselves hold is bounded without
//! counting them: every member receives the group's broadcasts in one
//! order, so the texts still queued anywhere are those of the longest
//! queue, which `--max-sendq` bounds (1 MiB by default); that bound is part
//! of the constant the process may hold above `--max-memory`. A private
//! message (`Effect::SendTo`) is this receiver's alone: it is copied into its queue
//! and charged in full, as are replies and carried input.
//!
//! **Closing.** Only when the total is over: one pass over the connections
//! collects what each holds that would not go anyway
//! ([`Conn::lasting_charge`]: unsent output counts only where the socket is
//! full, since a client that reads gets its queue written at the end of
//! this wake-up), sorted largest first, and closes from the top until the
//! projected total is under 90% of the limit. So in a storm of deliveries
//! a member that reads is not taken for one that does not. The notices
//! of the broadcast members closed together go out as one message, one queue slot for each remaining member, which the projection
//! counts. Closing is logged one line per connection, at most [`LOG_LINES_PER_SECOND`] a second; the rest are
//! counted into one line per second.
//!
//! **Giving memory back.** glibc keeps freed memory in its arenas. After a
//! large amount was freed (the total fell by [`TRIM_AFTER_FREED`] from its
//! high-water mark, or many connections closed), the loop asks it to
//! return free pages to the kernel ([`crate::sys::trim_heap`]), at most
//! once per [`TRIM_INTERVAL_MS`], waking up for it if the loop is idle.
//! And from the first time the total passes the limit, large buffers get
//! mappings of their own ([`crate::sys::give_back_large_frees`]), so that
//! what the budget frees by closing connections leaves the resident size at
//! once instead of staying in the heap. Not before: a server that never
//! passes its budget keeps glibc's own rule, which reuses large buffers
//! without a page fault per page (a 64 MiB message, say).

use slab::Slab;

use crate::proto::output::SEGMENT_COST;

use super::conn::Conn;

/// Closing lines logged one by one per second; the rest are counted.
pub const LOG_LINES_PER_SECOND: u32 = 10;

/// Bytes freed (from the high-water mark) that make a trim worth it.
pub const TRIM_AFTER_FREED: usize = 8 * 1024 * 1024;

/// Connections closed (from the high-water mark) that make a trim worth it:
/// their session state and the kernel-facing structures were freed too.
pub const TRIM_AFTER_CLOSED: usize = 1000;

/// Least time between two trims, in milliseconds.
pub const TRIM_INTERVAL_MS: u64 = 1000;

/// The running total and the limit, plain fields for the stats listener.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Every client buffer together, as last counted (bytes).
    pub buffered_bytes: usize,
    /// `--max-memory` (bytes).
    pub limit: usize,
    /// Connections closed for the limit since the start.
    pub closed_total: u64,
    /// Where closing stops: 90% of the limit.
    low_water: usize,
    /// What the connections hold (lasting, charged), their keys and
    /// whether they are broadcast members, gathered when over (kept for
    /// reuse).
    holders: Vec<(usize, usize, usize, bool)>,
    /// Start of the current logging second (loop ms).
    log_window: u64,
    /// Closing lines logged in the current second.
    logged: u32,
    /// Closes not logged one by one, since the last summary.
    unlogged: u64,
    /// Highest total and connection count since the last trim.
    high_bytes: usize,
    high_conns: usize,
    /// When the last trim ran (loop ms), if any.
    last_trim: Option<u64>,
    /// A trim is wanted but waits for [`TRIM_INTERVAL_MS`].
    trim_pending: bool,
    /// The total has passed the limit once: large buffers have mappings
    /// of their own since.
    pressed: bool,
    /// When to log the total next (debug level, once a second).
    next_report: u64,
}

impl MemoryBudget {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            buffered_bytes: 0,
            limit,
            closed_total: 0,
            low_water: limit / 10 * 9,
            holders: Vec::new(),
            log_window: 0,
            logged: 0,
            unlogged: 0,
            high_bytes: 0,
            high_conns: 0,
            last_trim: None,
            trim_pending: false,
            pressed: false,
            next_report: 0,
        }
    }

    /// Counts `conn` again: what it holds now replaces what it was charged.
    #[inline(always)]
    pub fn recount(&mut self, conn: &mut Conn) {
        let now = conn.memory_charge();
        if now != conn.marks().charged() {
            let before = conn.marks_mut().charge(now);
            self.buffered_bytes =
                self.buffered_bytes.saturating_sub(before as usize) + now as usize;
        }
    }

    /// `conn` is gone: its charge leaves the total.
    pub fn forget(&mut self, conn: &Conn) {
        self.buffered_bytes = self
            .buffered_bytes
            .saturating_sub(conn.marks().charged() as usize);
    }

    /// Whether the total is over the limit.
    #[inline(always)]
    pub fn over(&self) -> bool {
        self.buffered_bytes > self.limit
    }

    /// The slab keys of the connections to close, biggest holders first,
    /// so that the total goes back under 90% of the limit, counting the
    /// slot the leaving notices of the broadcast members closed take in the
    /// queue of each of the `group_members` left.
    /// Connections already closing (dead, or marked slow) are left out, and
    /// so are those that hold nothing lasting (see [`Conn::lasting_charge`]):
    /// when only those make the total, none is closed, and the total may
    /// pass the limit until the wake-up's flush (one wake-up's deliveries:
    /// a join storm's accepts x the members x a queue slot).
    pub fn pick_biggest(
        &mut self,
        conns: &Slab<Conn>,
        group_members: usize,
        victims: &mut Vec<usize>,
    ) {
        if !std::mem::replace(&mut self.pressed, true) {
            crate::sys::give_back_large_frees();
        }
        self.holders.clear();
        self.holders.extend(
            conns
                .iter()
                .filter(|(_, c)| {
                    c.marks().charged() > 0 && !c.is_dead() && !c.marks().is_slow_consumer()
                })
                .map(|(key, c)| {
                    let member = !c.is_request_reply();
                    (
                        c.lasting_charge(),
                        c.marks().charged() as usize,
                        key,
                        member,
                    )
                })
                // Holding nothing that lasts (a reader with output
                // queued in this wake-up): never a victim, however much
                // is queued for it; the flush at the end of the wake-up
                // writes it.
                .filter(|h| h.0 > 0),
        );
        self.holders
            .sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        let mut freed = 0usize;
        let mut members_closed = 0usize;
        for &(_, charge, key, member) in &self.holders {
            let leaves = if members_closed > 0 {
                group_members.saturating_sub(members_closed) * SEGMENT_COST
            } else {
                0
            };
            let projected = self.buffered_bytes.saturating_sub(freed) + leaves;
            if projected <= self.low_water {
                break;
            }
            victims.push(key);
            freed += charge;
            if member {
                members_closed += 1;
            }
        }
    }

    /// Counts one connection closed for the limit; whether to log it on
    /// its own line (at most [`LOG_LINES_PER_SECOND`] a second).
    pub fn note_closed(&mut self, now: u64) -> bool {
        self.closed_total += 1;
        self.roll_log_window(now);
        if self.logged < LOG_LINES_PER_SECOND {
            self.logged += 1;
            true
        } else {
            self.unlogged += 1;
            false
        }
    }

    /// Starts a new logging second if the last one is over, logging how
    /// many closes it did not log one by one.
    fn roll_log_window(&mut self, now: u64) {
        if now.saturating_sub(self.log_window) < 1000 {
            return;
        }
        if self.unlogged > 0 {
            log::warn!(
                "memory limit: {} more connection(s) closed holding the most (not logged one by one)",
                self.unlogged
            );
            self.unlogged = 0;
        }
        self.log_window = now;
        self.logged = 0;
    }

    /// Once per wake-up: logs a pending count of closes once its second is
    /// over, and gives freed memory back to the kernel when a large amount
    /// was freed (rate-limited). `conns`: connections open now.
    pub fn housekeeping(&mut self, now: u64, conns: usize) {
        if self.unlogged > 0 {
            self.roll_log_window(now);
        }
        if log::log_enabled!(log::Level::Debug) && now >= self.next_report {
            self.next_report = now + 1000;
            log::debug!(
                "client buffers: {} bytes in {conns} connection(s), limit {}",
                self.buffered_bytes,
                self.limit
            );
        }
        self.high_bytes = self.high_bytes.max(self.buffered_bytes);
        self.high_conns = self.high_conns.max(conns);
        if !self.trim_pending {
            let freed = self.high_bytes - self.buffered_bytes.min(self.high_bytes);
            let closed = self.high_conns - conns.min(self.high_conns);
            if freed < TRIM_AFTER_FREED && closed < TRIM_AFTER_CLOSED {
                return;
            }
            self.trim_pending = true;
        }
        if self.last_trim.is_some_and(|at| now < at + TRIM_INTERVAL_MS) {
            return;
        }
        crate::sys::trim_heap();
        self.last_trim = Some(now);
        self.trim_pending = false;
        self.high_bytes = self.buffered_bytes;
        self.high_conns = conns;
    }

    /// When the loop must wake up to trim, if a trim waits.
    pub fn trim_due_at(&self) -> Option<u64> {
        if !self.trim_pending {
            return None;
        }
        Some(self.last_trim.map_or(0, |at| at + TRIM_INTERVAL_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_is_logged_ten_lines_a_second_then_counted() {
        let mut b = MemoryBudget::new(1000);
        let logged = (0..25).filter(|_| b.note_closed(5_000)).count();
        assert_eq!(logged, 10);
        assert_eq!(b.unlogged, 15);
        b.housekeeping(5_500, 0);
        assert_eq!(b.unlogged, 15, "summarised once the second is over");
        b.housekeeping(6_000, 0);
        assert_eq!(b.unlogged, 0);
        assert!(b.note_closed(6_100));
        assert_eq!(b.closed_total, 26);
    }

    #[test]
    fn a_large_free_asks_for_a_trim_at_most_once_a_second() {
        let mut b = MemoryBudget::new(1 << 30);
        b.buffered_bytes = 20 << 20;
        b.housekeeping(100, 10);
        assert_eq!(b.trim_due_at(), None);
        b.buffered_bytes = 1 << 20;
        b.housekeeping(200, 10);
        assert_eq!(b.trim_due_at(), None, "trimmed at once");
        assert_eq!(b.last_trim, Some(200));
        b.buffered_bytes = 30 << 20;
        b.housekeeping(300, 10);
        b.buffered_bytes = 0;
        b.housekeeping(400, 10);
        assert_eq!(b.trim_due_at(), Some(1_200), "waits for the interval");
        b.housekeeping(1_200, 10);
        assert_eq!(b.trim_due_at(), None);
        b.housekeeping(1_300, 2_000);
        b.housekeeping(3_000, 0);
        assert_eq!(b.last_trim, Some(3_000), "many connections closed");
    }
}
