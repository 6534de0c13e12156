//! Reading and feeding: a connection's turn of reads within the fair-turn
//! budgets (per connection, per wake-up, a broadcast flow's read allowance,
//! line pacing), each read fed to its session and routed at once.

use mio::event::Event;
use mio::Token;

use crate::proto::{Flow, Output, Pacing};
use crate::server::conn::{Conn, ReadStep, ReadStop, READS_PER_WAKE};
use crate::server::pacing::PacingLimit;
use crate::server::timers::TimerKind;
use crate::server::trace;

use super::{Server, SCRATCH_BYTES};

/// Bytes one wake-up reads from all connections together. Past it, the
/// connections not yet read wait for the next wake-up (listed apart from
/// those that read their share, and served first then): whatever many
/// busy clients send at once, a wake-up's reading, parsing and writing the
/// replies stays short, and a quiet client's request waits behind at most
/// that much. One busy connection alone costs one more `epoll_wait` per
/// budget read (docs/PERFORMANCE.md, "Fair turns", has the figures).
const WAKE_READ_BYTES: u64 = 1024 * 1024;

/// The least a request/reply connection's turn reads, however many
/// connections share the wake-up's budget.
const TURN_BYTES_MIN: usize = 8 * 1024;

/// Each request/reply connection's share of a wake-up's read budget: the
/// budget over the `busy` connections that may read in it (those listed,
/// and the events), at least [`TURN_BYTES_MIN`]. One busy connection reads
/// the whole budget in one turn; when hundreds are busy, each reads a
/// little, so one pass over them stays within a wake-up or two and a
/// client that sends a line waits behind a few kilobytes of each, not
/// megabytes.
pub(super) fn turn_bytes(busy: usize) -> usize {
    (WAKE_READ_BYTES as usize / busy.max(1)).max(TURN_BYTES_MIN)
}

/// Reading's state: the buffer every read goes into, and the budgets.
pub(super) struct Reading {
    pub(super) scratch: Box<[u8]>,
    /// The reply output lent to a request/reply connection for one turn
    /// (see [`Conn::borrow_replies`]): the write side's scratch. Always
    /// empty between turns; holds at most a `Policy::keep_warm` buffer.
    pub(super) replies: Output,
    /// Connections that stopped reading on the read budget, not on
    /// `WouldBlock`, or whose session wants another turn: read (or given
    /// their turn) again next wake-up without waiting for an event.
    pub(super) still_ready: Vec<usize>,
    /// Connections whose event came after the wake-up's read budget was
    /// spent: they had no turn, so next wake-up they go first, before the
    /// new events and before `still_ready` (which had theirs).
    pub(super) waiting: Vec<usize>,
    /// Bytes read in this wake-up, against [`WAKE_READ_BYTES`].
    pub(super) wake_read: u64,
    /// The most a request/reply connection's turn reads in this wake-up
    /// (see [`turn_bytes`]).
    pub(super) turn_bytes: usize,
    /// Broadcast members read in this wake-up: their read allowance
    /// ([`Conn::read_this_wake`]) is reset when it ends.
    pub(super) allowance_readers: Vec<usize>,
    /// Line pacing of the protocols that declare it
    /// ([`Config::chat_rate`](crate::config::Config::chat_rate), [`Config::chat_burst`](crate::config::Config::chat_burst)).
    pub(super) pacing: PacingLimit,
}

impl Server {
    pub(super) fn on_conn_event(&mut self, key: usize, event: &Event) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if event.is_read_closed() || event.is_error() {
            conn.note_fin();
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            conn.note_writable();
        }
        // A listed connection is read in its list's turn, not sooner.
        if (event.is_readable() || event.is_read_closed() || event.is_error())
            && !conn.marks().is_still_ready()
        {
            let lent = conn.borrow_replies(&mut self.reading.replies);
            self.pump(key);
            if let Some(conn) = self.conns.get_mut(key) {
                conn.flush_replies(
                    &self.clock,
                    &mut self.shared.counts,
                    lent.then_some(&mut self.reading.replies),
                );
                if conn.is_settled() {
                    // Its replies are all sent: the flush at the end of the
                    // wake-up would find nothing to do but count its
                    // memory, so that is done here, once, instead.
                    self.memory.recount(conn);
                    if self.memory.over() {
                        self.enforce_memory();
                    }
                    return;
                }
            }
        }
        self.queue_flush(key);
    }

    /// Reads connection `key` within its per-wake-up budget, routing
    /// deliveries after each read; remembers it if it may have more.
    ///
    /// A broadcast member ([`Flow::Broadcast`]) gets one read per event,
    /// and at most its flow's read allowance in all per wake-up: what it
    /// says reaches every receiver's queue at once, and only the flush at
    /// the end of the wake-up writes those queues to the sockets. So a
    /// sender pasting megabytes is read at the pace the group is flushed,
    /// and a receiver that keeps reading never has more than a share of
    /// `--max-sendq` queued by one sender between two of its flushes,
    /// instead of being dropped for the sender's burst. A paced protocol
    /// ([`Pacing::Lines`]) is read only while it has tokens.
    pub(super) fn pump(&mut self, key: usize) {
        // What closes left to route (their joined leaving notices, see
        // `close`) goes out before this core call's own.
        self.route();
        if self.reading.wake_read >= WAKE_READ_BYTES {
            // This wake-up has read its share: next wake-up, first.
            self.mark_waiting(key);
            return;
        }
        let max_sendq = self.config.max_sendq;
        let Some(protocol) = self.conns.get(key).map(Conn::protocol) else {
            return;
        };
        let declaration = protocol.declaration();
        let paced = self.reading.pacing.enabled() && declaration.pacing == Pacing::Lines;
        if paced && !self.pace(key) {
            return;
        }
        let (reads, read_len, allowance) = match declaration.flow {
            Flow::Broadcast { read_allowance } => {
                let Some(conn) = self.conns.get_mut(key) else {
                    return;
                };
                let allowance = read_allowance(max_sendq).min(SCRATCH_BYTES);
                let left = allowance.saturating_sub(conn.read_this_wake() as usize);
                if left == 0 {
                    // Spent in this wake-up: read on in the next.
                    self.mark_still_ready(key);
                    return;
                }
                (1, left, true)
            }
            Flow::RequestReply => {
                // A turn reads its share of the wake-up's budget, and no
                // more than the wake-up has left.
                let left = WAKE_READ_BYTES.saturating_sub(self.reading.wake_read) as usize;
                let turn = self.reading.turn_bytes.min(left).max(TURN_BYTES_MIN);
                let reads = turn.div_ceil(SCRATCH_BYTES).clamp(1, READS_PER_WAKE);
                (reads, turn.min(SCRATCH_BYTES), false)
            }
        };
        let more = self.read_turn(key, reads, read_len, allowance);
        if paced && !self.paced(key) {
            // Out of tokens: the refill deadline reads it again.
            return;
        }
        if more {
            self.mark_still_ready(key);
        }
    }

    /// Line pacing before a read: credits the client's tokens and
    /// lets the core consume that many lines, first from the input carried
    /// since flood control last stopped it. Returns whether to read the
    /// socket now; if not, the refill deadline is armed.
    #[inline(never)]
    pub(super) fn pace(&mut self, key: usize) -> bool {
        let (limit, now, max_sendq) = (self.reading.pacing, self.clock.now, self.config.max_sendq);
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !conn.is_open() {
            return true;
        }
        let mut bucket = conn.pacing_bucket();
        bucket.refill(limit, now);
        conn.set_pacing_bucket(bucket);
        if bucket.tokens == 0 {
            // Waiting for the deadline armed when the last token went.
            return false;
        }
        if !conn.has_carry() {
            return true;
        }
        let (_, conns, mut io, slow) = self.io_parts();
        if let Some(conn) = conns.get_mut(key) {
            conn.feed_carried(&mut io);
            conn.check_sendq(key, max_sendq, slow);
        }
        self.route();
        self.paced(key)
    }

    /// Line pacing after the core consumed lines (each took one of
    /// the tokens it was allowed). Returns whether any are left; if none,
    /// arms the refill deadline: once per time the tokens run out, as
    /// only consuming lines spends them (a deadline left over from an
    /// earlier time only reads the client once more, harmlessly).
    pub(super) fn paced(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if !conn.is_open() || conn.pacing_bucket().tokens > 0 {
            return true;
        }
        self.arm_refill(key);
        false
    }

    /// Arms the deadline at which the paced client `key` earns its next
    /// token and is read again.
    pub(super) fn arm_refill(&mut self, key: usize) {
        let limit = self.reading.pacing;
        if let Some(conn) = self.conns.get_mut(key) {
            let at = conn.pacing_bucket().next_token_at(limit, self.clock.now);
            self.deadlines
                .timers
                .arm(at, key, conn.id(), TimerKind::Refill);
        }
    }

    /// Up to `reads` reads of `read_len` bytes at most from connection
    /// `key`, routing deliveries after each (`allowance`: counted against a
    /// broadcast flow's read allowance). Returns whether the socket may
    /// hold more (the read budget ran out first).
    #[inline(always)]
    pub(super) fn read_turn(
        &mut self,
        key: usize,
        reads: usize,
        read_len: usize,
        allowance: bool,
    ) -> bool {
        let max_sendq = self.config.max_sendq;
        for _ in 0..reads {
            let (scratch, conns, mut io, slow) = self.io_parts();
            let Some(conn) = conns.get_mut(key) else {
                return false;
            };
            let len = read_len.min(scratch.len());
            let (scratch, _) = scratch.split_at_mut(len);
            let read_before = if allowance { conn.read_this_wake() } else { 0 };
            let wake_read = *io.wake_read;
            let step = conn.read_once(scratch, &mut io);
            if allowance {
                conn.add_read_this_wake(*io.wake_read - wake_read);
                let first_read = read_before == 0 && conn.read_this_wake() > 0;
                conn.check_sendq(key, max_sendq, slow);
                if first_read {
                    self.reading.allowance_readers.push(key);
                }
            }
            self.route();
            match step {
                ReadStep::More => {}
                ReadStep::Stop(ReadStop::Budget) => break,
                ReadStep::Stop(_) => return false,
            }
        }
        true
    }

    /// Lists `key` to be read again next wake-up, once: a connection that
    /// spends its budget and gets another event in the same wake-up must
    /// not earn a second share.
    pub(super) fn mark_still_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.marks_mut()
                .enlist_still_ready(key, &mut self.reading.still_ready);
        }
    }

    /// Lists `key` to be read first next wake-up, once: its event came
    /// after this wake-up's read budget was spent.
    pub(super) fn mark_waiting(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.marks_mut()
                .enlist_still_ready(key, &mut self.reading.waiting);
        }
    }

    /// The connections that may read in this wake-up, the events aside:
    /// those listed by the last one.
    pub(super) fn listed_readers(&self) -> usize {
        self.reading.waiting.len() + self.reading.still_ready.len()
    }

    /// Gives their turn to the connections whose event found last
    /// wake-up's read budget spent, in the order they came, while the
    /// budget lasts; those not reached keep their place, ahead of any
    /// listed since.
    pub(super) fn resume_waiting(&mut self) {
        let listed = self.reading.waiting.len();
        let mut walked = 0;
        while walked < listed && self.reading.wake_read < WAKE_READ_BYTES {
            let Some(&key) = self.reading.waiting.get(walked) else {
                break;
            };
            self.resume_one(key);
            walked += 1;
        }
        self.reading.waiting.drain(..walked);
    }

    /// Reads again the first `listed` connections of `still_ready` (those
    /// listed before this wake-up), while the read budget lasts, and at
    /// least one read's worth for the first of them even when the new
    /// events spent it: a stream of fresh events cannot starve them. One
    /// that spends its share again is listed anew, at the end; those not
    /// reached keep their place at the front, so every listed connection
    /// gets its turn before any gets a second. (The list is walked in
    /// place, not taken, so it keeps its capacity: no wake-up allocates
    /// it.)
    pub(super) fn resume_still_ready(&mut self, listed: usize) {
        if listed > 0 && self.reading.wake_read >= WAKE_READ_BYTES {
            self.reading.wake_read = WAKE_READ_BYTES - SCRATCH_BYTES as u64;
        }
        let mut walked = 0;
        while walked < listed && self.reading.wake_read < WAKE_READ_BYTES {
            let Some(&key) = self.reading.still_ready.get(walked) else {
                break;
            };
            self.resume_one(key);
            walked += 1;
        }
        self.reading.still_ready.drain(..walked);
    }

    /// One listed connection's turn: read (or its session's own work),
    /// then flushed at the end of the wake-up.
    fn resume_one(&mut self, key: usize) {
        let _trace = trace::Scope::step("resume", || self.trace_name(Token(key)));
        if let Some(conn) = self.conns.get_mut(key) {
            conn.marks_mut().resumed();
        }
        self.pump(key);
        self.queue_flush(key);
    }

    /// Gives the broadcast members read in this wake-up their whole read
    /// allowance back for the next one.
    pub(super) fn reset_read_allowances(&mut self) {
        for key in self.reading.allowance_readers.drain(..) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.reset_read_this_wake();
            }
        }
    }
}
