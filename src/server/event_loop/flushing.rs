//! Flushing: every connection touched in a wake-up written once, its
//! interest settled, its memory counted (closing the biggest holders when
//! over `--max-memory`), and the finished ones closed.

use std::time::Duration;

use mio::{Events, Registry, Token};

use crate::config::CLOSE_GRACE;
use crate::proto::effects::NOBODY;
use crate::proto::{CloseReason, Effect, Group};
use crate::server::metrics::Closed;
use crate::server::timers::TimerKind;
use crate::server::trace;

use super::Server;

/// Connections flushed between two polls of a long flush (a broadcast's
/// fan-out): input waits for at most this many writes, and the poll adds
/// little to the flush (figures: docs/PERFORMANCE.md).
const FLUSH_SLICE: usize = 64;

/// Flushing's state.
pub(super) struct Flushing {
    /// Connections to flush at the end of this wake-up.
    pub(super) list: Vec<usize>,
    /// Connections to close for the memory budget (kept for reuse).
    pub(super) victims: Vec<usize>,
}

impl Server {
    /// The total passed `--max-memory`: closes the connections holding the
    /// most until it is back under 90% (see `server::memory_budget`). Each
    /// is ended at once, its buffers freed; the notices the broadcast group
    /// members closed together send the others go as one message (one
    /// queue slot each, not one per member closed), and if they push the
    /// total over again, the next biggest go too.
    #[inline(never)]
    pub(super) fn enforce_memory(&mut self) {
        while self.memory.over() {
            let mut victims = std::mem::take(&mut self.flushing.victims);
            victims.clear();
            let members = self.shared.group().member_count();
            self.memory.pick_biggest(&self.conns, members, &mut victims);
            if victims.is_empty() {
                self.flushing.victims = victims;
                return;
            }
            for &key in &victims {
                let now = self.clock.now;
                let (total, limit) = (self.memory.buffered_bytes, self.memory.limit);
                let log_it = self.memory.note_closed(now);
                let (_, conns, mut io, _) = self.io_parts();
                let Some(conn) = conns.get_mut(key) else {
                    continue;
                };
                if log_it {
                    log::warn!(
                        "{} #{} from {} holds {} bytes; all client buffers ({total}) passed --max-memory {limit}: closing it",
                        conn.protocol(),
                        conn.id(),
                        conn.peer(),
                        conn.marks().charged(),
                    );
                }
                conn.drop_for(&mut io, CloseReason::MemoryLimit);
                conn.discard_buffers();
                if let Some(conn) = self.conns.get_mut(key) {
                    self.memory.recount(conn);
                }
                self.queue_flush(key);
            }
            // Every one of them is dead, so none receives the others'
            // notices: one `except` for all lets routing join them.
            if let Some(first) = victims.first().and_then(|&k| self.conns.get(k)) {
                let id = first.id();
                for effect in &mut self.routing.effects {
                    if let Effect::Broadcast { except, .. } = effect {
                        *except = id;
                    }
                }
            }
            self.flushing.victims = victims;
            self.route();
        }
    }

    pub(super) fn queue_flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.marks_mut().enlist_flush(key, &mut self.flushing.list);
        }
    }

    /// Flushes every connection touched in this wake-up, settles its
    /// interest, arms close deadlines and removes finished connections.
    ///
    /// Every [`FLUSH_SLICE`] connections of those listed when it began, it
    /// polls without waiting and handles what arrived: a receiver not yet
    /// flushed takes the new input in the write it was going to make
    /// anyway. Those already flushed, and those a close delivers to (a member's
    /// LEAVE), join the end of the list and are flushed in this same
    /// wake-up, with no more polls: the walk ends, and timers and budgeted
    /// reads get their turn.
    pub(super) fn flush_touched(&mut self, events: &mut Events) {
        // Walked in place, the list keeps its capacity: no wake-up
        // allocates it.
        let listed = self.flushing.list.len();
        let mut i = 0;
        loop {
            while let Some(&key) = self.flushing.list.get(i) {
                self.flush_one(key);
                i += 1;
                if i % FLUSH_SLICE == 0 && i < listed {
                    self.poll_between_slices(events);
                }
            }
            if self.routing.effects.is_empty() && self.routing.slow.is_empty() {
                break;
            }
            // The leaving notices of those closed in the walk, joined:
            // their receivers join the list and are flushed in this walk.
            self.route();
        }
        self.flushing.list.clear();
    }

    /// Polls without waiting in the middle of a long flush and handles the
    /// events, as step 3 of a wake-up does. A failing poll is left for the
    /// wake-up's own poll to report.
    pub(super) fn poll_between_slices(&mut self, events: &mut Events) {
        if self.poll.poll(events, Some(Duration::ZERO)).is_err() {
            return;
        }
        self.clock.tick();
        for event in events.iter() {
            self.metrics.events += 1;
            self.dispatch(event);
        }
    }

    pub(super) fn flush_one(&mut self, key: usize) {
        let _trace = trace::Scope::step("flush", || self.trace_name(Token(key)));
        let registry: &Registry = self.poll.registry();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.marks_mut().flushed();
        if !conn.is_dead() {
            conn.flush(&self.clock, &mut self.shared.counts);
        }
        let resume = !conn.is_dead() && conn.settle(registry, Token(key));
        self.memory.recount(conn);
        if conn.is_dead() {
            return self.close(key);
        }
        if conn.is_closing() && conn.marks_mut().arm_grace() {
            let at = self.clock.after(CLOSE_GRACE);
            self.deadlines
                .timers
                .arm(at, key, conn.id(), TimerKind::CloseGrace);
        }
        // A write the I/O seam cut short (fault injection only) will
        // raise no WRITABLE edge: serve the connection again next wake-up.
        if resume || conn.take_pending() {
            self.mark_still_ready(key);
        }
        // Counted once per touched connection per wake-up, here, after its
        // flush (deliveries to it were counted as they were queued).
        if self.memory.over() {
            self.enforce_memory();
        }
    }

    /// Ends the session (if not already), routes its last deliveries, and
    /// removes the connection; dropping it closes the socket.
    pub(super) fn close(&mut self, key: usize) {
        let (_, conns, mut io, _) = self.io_parts();
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let reason = conn.final_reason();
        let before = io.effects.len();
        conn.end_session(&mut io, reason);
        // Its leaving notice waits for the next routing (before the next
        // core call, or at the end of the flush walk) and leaves out
        // nobody: the closed member has left the group. So the notices of
        // members closed one after another (a thousand clients gone at
        // once) join into one message, one queue slot per member left,
        // instead of one slot per member per notice: N²/2 slots for N.
        for effect in io.effects.iter_mut().skip(before) {
            if let Effect::Broadcast { except, .. } = effect {
                *except = NOBODY;
            }
        }
        let conn = self.conns.remove(key);
        self.memory.forget(&conn);
        self.routing.index.remove(conn.id());
        self.accepting
            .admission
            .release(conn.peer().ip(), self.clock.now);
        if self.deadlines.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.deadlines
                .timers
                .retain_live(|key, id| conns.get(key).is_some_and(|c| c.id() == id));
        }
        let how = Closed::of(conn.final_reason());
        self.metrics.closed(conn.protocol(), how);
        // No epoll_ctl(DEL): closing the descriptor (dropping `conn`)
        // removes it from the epoll set, one syscall fewer per connection.
        trace::closed(conn.final_reason());
        log::info!(
            "close {} #{} from {} ({})",
            conn.protocol(),
            conn.id(),
            conn.peer(),
            conn.final_reason().as_str()
        );
    }
}
