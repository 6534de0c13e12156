//! The read path of a connection: one read into the loop's buffer, fed to
//! the session (the carry kept for an incomplete message), turns for a
//! session with work of its own, backpressure, the peer's end of stream.

use std::io::{self, Read};

use crate::config::BACKPRESSURE_BYTES;
use crate::proto::prefix::split_at_most;
use crate::proto::{CloseReason, Session};
use crate::server::trace;

use super::{Conn, IoCx, Phase, ReadStep, ReadStop};

/// Output past which the read path writes at once instead of waiting for
/// the end of the wake-up (large streamed replies).
const FLUSH_EARLY_BYTES: usize = 64 * 1024;

/// Carried input capacity kept while the carry holds little (see
/// `Conn::feed`).
const CARRY_KEEP: usize = 64 * 1024;

impl Conn {
    /// Offers the carried input to the session again, without reading:
    /// lines flood control left unconsumed, now that tokens are back.
    pub fn feed_carried(&mut self, io: &mut IoCx<'_>) {
        if self.phase == Phase::Open && !self.carry.is_empty() {
            self.feed(io, &[]);
        }
    }

    /// Offers freshly read bytes (plus any carried ones) to the session.
    pub(super) fn feed(&mut self, io: &mut IoCx<'_>, data: &[u8]) {
        let mark = trace::mark(&self.output);
        let used = self.with_session(io, |session, carry, cx| {
            if carry.is_empty() {
                let used = session.on_input(data, cx);
                #[cfg(feature = "fault-injection")]
                crate::server::faults::poison(data);
                let (_, unused) = split_at_most(data, used);
                if !cx.close_requested() {
                    carry.extend_from_slice(unused);
                }
                used
            } else {
                carry.extend_from_slice(data);
                let used = session.on_input(carry, cx).min(carry.len());
                #[cfg(feature = "fault-injection")]
                crate::server::faults::poison(carry);
                carry.drain(..used);
                if carry.is_empty() {
                    *carry = Vec::new();
                } else if carry.capacity() > CARRY_KEEP && carry.len() <= CARRY_KEEP / 4 {
                    // A sender streaming lines always ends a read mid-line:
                    // the carry never empties, and would keep the capacity
                    // of the largest read appended to it (256 KiB or more,
                    // charged to the memory budget) for a few bytes.
                    carry.shrink_to(CARRY_KEEP / 4);
                }
                used
            }
        });
        trace::fed(used, mark, &self.output);
    }

    /// Gives a session that wants a turn ([`Session::wants_turn`]) one
    /// slice of its work; once the work is done, offers it the input it
    /// left while working (which may start more). `Stop(Budget)` while it
    /// wants more turns: the loop comes back next wake-up without waiting
    /// for an event, and reads nothing meanwhile (the kernel holds what the
    /// peer sends). `More` once done: reading resumes in this turn.
    pub(super) fn take_turn(&mut self, io: &mut IoCx<'_>) -> ReadStep {
        self.last_active = io.clock.now;
        let mark = trace::mark(&self.output);
        let used = self.with_session(io, |session, carry, cx| {
            session.on_turn(cx);
            if !session.wants_turn() && !carry.is_empty() && !cx.close_requested() {
                let used = session.on_input(carry, cx).min(carry.len());
                carry.drain(..used);
                if carry.is_empty() {
                    *carry = Vec::new();
                }
                return used;
            }
            0
        });
        trace::turn(used, mark, &self.output);
        self.after_input(io).unwrap_or(ReadStep::More)
    }

    /// After input or a turn: flushes a large output early, applies
    /// backpressure, and ends the read turn while the session wants turns.
    /// `None` if reading may go on.
    #[inline(always)]
    pub(super) fn after_input(&mut self, io: &mut IoCx<'_>) -> Option<ReadStep> {
        // Request/reply only: the loop checks a broadcast member's unsent
        // output against --max-sendq right after this read (proto::effects).
        if self.output.len() >= FLUSH_EARLY_BYTES && self.session.is_request_reply() {
            self.flush(io.clock, &mut io.shared.counts);
        }
        if self.output.len() > BACKPRESSURE_BYTES && self.session.is_request_reply() {
            self.backpressured = true;
            return Some(ReadStep::Stop(ReadStop::Paused));
        }
        if self.session.wants_turn() {
            return Some(ReadStep::Stop(ReadStop::Budget));
        }
        None
    }

    /// Notes that the poll reported the peer's FIN with this event.
    pub fn note_fin(&mut self) {
        self.fin_reported = true;
    }

    /// Whether a message has begun and not ended: the session says so, or
    /// an incomplete message is carried.
    pub fn mid_message(&self) -> bool {
        !self.carry.is_empty() || self.session.mid_message()
    }

    /// Does one read and feeds what it returned to the session. The loop
    /// calls this up to [`READS_PER_WAKE`](super::READS_PER_WAKE) times per wake-up, routing the
    /// session's effects between calls.
    pub fn read_once(&mut self, scratch: &mut [u8], io: &mut IoCx<'_>) -> ReadStep {
        if self.backpressured || !matches!(self.phase, Phase::Open | Phase::Lingering) {
            return ReadStep::Stop(ReadStop::Paused);
        }
        if self.phase == Phase::Open && self.session.wants_turn() {
            return self.take_turn(io);
        }
        let n = match self.stream.read(scratch) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                trace::read_would_block();
                return ReadStep::Stop(self.drained(io.draining));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return ReadStep::More,
            Err(e) => {
                log::debug!("read from #{} {}: {e}", self.id, self.peer);
                self.phase = Phase::Dead;
                self.reason.get_or_insert(CloseReason::of_io_error(&e));
                return ReadStep::Stop(ReadStop::Paused);
            }
        };
        trace::read(n, scratch.len());
        self.last_active = io.clock.now;
        io.shared.counts.received(self.protocol(), n);
        *io.wake_read += n as u64;
        if n == 0 {
            self.on_peer_eof(io);
            return ReadStep::Stop(ReadStop::Drained);
        }
        if self.phase == Phase::Open {
            self.feed(io, scratch.get(..n).unwrap_or_default());
            if let Some(stop) = self.after_input(io) {
                return stop;
            }
        }
        // In Lingering, input is discarded: only the peer's EOF matters.
        if n < scratch.len() && !self.fin_reported {
            // A short read: the kernel had no more. New data raises a new
            // edge, so no read is spent to hear WouldBlock.
            return ReadStep::Stop(self.drained(io.draining));
        }
        ReadStep::More
    }

    /// Why a read that found the socket empty (or came back short)
    /// stops: drained, unless the I/O seam says the kernel may hold more.
    ///
    /// While the server shuts down (`draining`), this is where reading
    /// ends: what the kernel held has all been read, so the connection
    /// stops at this message boundary. Not sooner: a read that fills the
    /// buffer, or one the seam cut short, may end on a boundary with more
    /// requests still queued in the kernel, and those were sent before the
    /// signal too.
    #[inline(always)]
    pub(super) fn drained(&mut self, draining: bool) -> ReadStop {
        if self.take_pending() {
            return ReadStop::Budget;
        }
        if draining {
            self.stop_if_between_messages();
        }
        ReadStop::Drained
    }

    pub(super) fn on_peer_eof(&mut self, io: &mut IoCx<'_>) {
        self.peer_eof = true;
        // Unless the connection was closing already (its reason stands),
        // the peer closed first, whatever a last write meets after this.
        self.reason.get_or_insert(CloseReason::PeerClosed);
        match self.phase {
            Phase::Open => {
                self.with_session(io, |session, _, cx| session.on_eof(cx));
                if self.phase != Phase::Dead {
                    self.phase = Phase::Flushing;
                }
            }
            Phase::Lingering => self.phase = Phase::Dead,
            Phase::Flushing | Phase::Dead => {}
        }
    }
}
