//! One TCP connection: its socket, its protocol session, its carried input
//! and its output queue, and the read and write paths the loop drives.
//!
//! Reads go into the loop's shared scratch buffer and are parsed there in
//! place; only an incomplete message (or, behind a session that wants turns
//! for work of its own, the rest of one read) is copied into the
//! connection's own `carry` buffer, which is freed as soon as it empties. Replies go into the
//! connection's [`Output`], freed when drained. An idle connection therefore
//! owns no heap memory, only this struct.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::config::{Protocol, BACKPRESSURE_BYTES};
use crate::proto::counts::Counts;
use crate::proto::prefix::split_at_most;
use crate::proto::{AnySession, CloseReason, Cx, Effect, Output, Session, Shared};

use super::flood::TokenBucket;
use super::timers::Clock;
use super::trace;

#[cfg(feature = "fault-injection")]
use super::faults::seam;

/// The connection socket, and the two calls through which the
/// `fault-injection` build (see `server::faults`) differs: in this, the
/// normal build, the socket is mio's own and both calls vanish when
/// inlined.
#[cfg(not(feature = "fault-injection"))]
mod seam {
    use mio::net::TcpStream;

    /// A connection's socket.
    pub type Stream = TcpStream;

    /// The socket as accepted.
    #[inline(always)]
    pub fn wrap(stream: TcpStream, _id: u64) -> Stream {
        stream
    }

    /// Whether a read or write stopped short of what the kernel holds (or
    /// has room for) without an edge to announce it: never, for the real
    /// socket.
    #[inline(always)]
    pub fn take_pending(_stream: &mut Stream) -> bool {
        false
    }
}

/// Output past which the read path writes at once instead of waiting for
/// the end of the wake-up (large streamed replies).
const FLUSH_EARLY_BYTES: usize = 64 * 1024;

/// Carried input capacity kept while the carry holds little (see
/// `Conn::feed`).
const CARRY_KEEP: usize = 64 * 1024;

/// Reads one connection may do per wake-up before others get their turn.
pub const READS_PER_WAKE: usize = 32;

/// Most slices offered to one `writev`.
const MAX_IOVECS: usize = 256;

/// The outcome of one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStep {
    /// There may be more to read.
    More,
    /// Stop reading for now.
    Stop(ReadStop),
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and sending replies.
    Open,
    /// No more input is processed; close once the output has drained.
    Flushing,
    /// The write side is shut; input is read and discarded until the peer's
    /// EOF (or the close grace runs out), so the last replies are not
    /// destroyed by a reset.
    Lingering,
    /// Finished or failed: removed at the end of the wake-up.
    Dead,
}

/// Why the read path stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStop {
    /// The socket has no more data for now.
    Drained,
    /// Stopped before the socket said it was drained: this wake-up's
    /// read budget is spent, the session wants another turn for work of
    /// its own ([`Session::wants_turn`]), or (fault injection) a read was
    /// cut short. Data may remain: the loop reads again next wake-up.
    Budget,
    /// Not reading now: backpressure, or not in a reading phase.
    Paused,
}

/// What the loop lends a connection for one call, besides its read buffer.
pub struct IoCx<'a> {
    /// State shared by all connections.
    pub shared: &'a mut Shared,
    /// This wake-up's time.
    pub clock: &'a Clock,
    /// The server is shutting down: stop reading at message boundaries.
    pub draining: bool,
    /// Deliveries to other connections that the core asks for; the loop
    /// routes them after each call.
    pub effects: &'a mut Vec<Effect>,
}

/// One client connection.
pub struct Conn {
    stream: seam::Stream,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Unique for the server's lifetime.
    pub id: u64,
    session: AnySession,
    /// An incomplete message carried to the next read.
    carry: Vec<u8>,
    output: Output,
    /// Loop milliseconds of the last byte read or written.
    pub last_active: u64,
    /// Where it is in its life.
    pub phase: Phase,
    /// Why it is closing, once known.
    pub reason: Option<CloseReason>,
    /// The session's `on_close` has run (it runs exactly once).
    session_ended: bool,
    /// WRITABLE is part of the registered interest. Added the first time
    /// output is left unsent, and kept: edge-triggered, it costs nothing
    /// while writes fit (the kernel raises it only after a write found the
    /// socket full), and dropping it would cost an `epoll_ctl` each time.
    writable_interest: bool,
    /// The last write was short or would block: the socket is full until
    /// the poll reports it writable, and a write before that would only
    /// hear `WouldBlock`.
    write_blocked: bool,
    /// Reading stopped for backpressure.
    backpressured: bool,
    /// The peer shut its write side.
    peer_eof: bool,
    /// The poll reported the peer's FIN: read on to it even after a short
    /// read, since no new edge will announce it.
    fin_reported: bool,
    /// In the loop's flush list for this wake-up.
    pub queued: bool,
    /// In the loop's list of connections to read again without an event.
    pub still_ready: bool,
    /// A close-grace deadline is armed.
    pub grace_armed: bool,
    /// Marked as a slow consumer: the loop ends it after routing.
    pub kill_pending: bool,
    /// Loop seconds when it was accepted (`CLIENTS` shows its age); 32
    /// bits keep the struct within its size (136 years of uptime).
    pub opened_secs: u32,
    /// What the memory budget last counted for this connection
    /// (see `server::memory_budget`; 4 bytes, as an idle connection's
    /// size matters: a connection holding 4 GiB is counted as that).
    pub charged: u32,
}

impl Conn {
    /// A connection just accepted and registered for READABLE.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
        session: AnySession,
        now: u64,
    ) -> Conn {
        Conn {
            stream: seam::wrap(stream, id),
            peer,
            id,
            session,
            carry: Vec::new(),
            output: Output::new(),
            last_active: now,
            phase: Phase::Open,
            reason: None,
            session_ended: false,
            writable_interest: false,
            write_blocked: false,
            backpressured: false,
            peer_eof: false,
            fin_reported: false,
            queued: false,
            still_ready: false,
            grace_armed: false,
            kill_pending: false,
            opened_secs: u32::try_from(now / 1000).unwrap_or(u32::MAX),
            charged: 0,
        }
    }

    /// Registers the socket with the poll, readable only.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.stream, token, Interest::READABLE)
    }

    /// The protocol spoken (the session's kind: not stored twice).
    #[inline]
    pub fn protocol(&self) -> Protocol {
        self.session.protocol()
    }

    /// Input bytes carried to the next read (an incomplete message).
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Whether the peer's end of stream was read.
    pub fn peer_eof(&self) -> bool {
        self.peer_eof
    }

    /// Appends a report the loop rendered for this connection's stats
    /// session (see `server::stats`), even while it is closing after it.
    pub fn put_report(&mut self, bytes: &[u8]) {
        if self.phase != Phase::Dead {
            self.output.put(bytes);
        }
    }

    /// Unsent output bytes.
    pub fn pending_output(&self) -> usize {
        self.output.len()
    }

    /// What the unsent output holds in memory (bytes plus each queued
    /// segment's slot): what `--max-sendq` bounds.
    pub fn sendq(&self) -> usize {
        self.output.footprint()
    }

    /// Heap bytes this connection owns beyond its struct (for tests and
    /// memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.carry.capacity() + self.output.heap_bytes()
    }

    /// What this connection's buffers hold, as the memory budget counts it,
    /// in constant time: carried input, unsent output
    /// ([`Output::charge`]) and a message the session holds.
    #[inline]
    pub fn memory_charge(&self) -> u32 {
        let bytes = self.carry.capacity() + self.output.charge() + self.session.held_bytes();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// How much this connection holds that would not go anyway, to rank
    /// it among the biggest holders: its carried input and held message,
    /// and, if its socket is full (the peer is not reading, or not fast
    /// enough), its unsent output as `--max-sendq` counts it (bytes and
    /// slots queued: what it has not read, not the capacity a past burst
    /// left). A socket with room gets its output at the end of this
    /// wake-up.
    pub fn lasting_charge(&self) -> usize {
        let own = self.carry.capacity() + self.session.held_bytes();
        if self.write_blocked {
            own + self.output.footprint()
        } else {
            own
        }
    }

    /// Whether the connection is finished and only waits to be removed.
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    /// Frees the connection's buffers at once (a connection closed for the
    /// memory budget: it is dead, nothing more is sent or read).
    pub fn discard_buffers(&mut self) {
        self.output = Output::new();
        self.carry = Vec::new();
    }

    /// chat: the flood-control bucket: the core's line allowance (the
    /// tokens) and its clock, both kept in the chat session. Other
    /// protocols: empty.
    pub fn flood_bucket(&mut self) -> TokenBucket {
        match self.session.chat_mut() {
            Some(chat) => TokenBucket {
                tokens: chat.line_allowance().unwrap_or(0),
                credited_at: chat.flood_clock,
            },
            None => TokenBucket::default(),
        }
    }

    /// chat: stores the bucket back: the core may consume at most
    /// `bucket.tokens` more complete lines. Other protocols ignore it.
    pub fn set_flood_bucket(&mut self, bucket: TokenBucket) {
        if let Some(chat) = self.session.chat_mut() {
            chat.flood_clock = bucket.credited_at;
            chat.set_line_allowance(Some(bucket.tokens));
        }
    }

    /// chat: bytes read in the current wake-up, against the loop's
    /// per-wake-up allowance (0 for other protocols).
    #[inline]
    pub fn chat_read(&mut self) -> u32 {
        self.session
            .chat_mut()
            .map_or(0, |chat| chat.read_this_wake)
    }

    /// chat: a new wake-up, the whole read allowance back.
    pub fn reset_chat_read(&mut self) {
        if let Some(chat) = self.session.chat_mut() {
            chat.read_this_wake = 0;
        }
    }

    /// Whether input is carried (read but not yet consumed).
    pub fn has_carry(&self) -> bool {
        !self.carry.is_empty()
    }

    /// Offers the carried input to the session again, without reading:
    /// lines flood control left unconsumed, now that tokens are back.
    pub fn feed_carried(&mut self, io: &mut IoCx<'_>) {
        if self.phase == Phase::Open && !self.carry.is_empty() {
            self.feed(io, &[]);
        }
    }

    /// Runs `f` on the session with a context; a panic in the core is
    /// contained here: the connection dies, the loop goes on.
    ///
    /// **Design decision: a panic costs one connection, not the server.**
    /// Every call into a protocol core goes through here, inside
    /// `catch_unwind`. Should a core panic (a bug: no network input is
    /// meant to reach one), the panic is logged at error level with the
    /// protocol, connection id, peer and message; that connection is marked
    /// dead, its unsent output is dropped, and it is closed at the end of
    /// the wake-up like any failed connection: `end_session` still runs its
    /// `on_close` (itself contained) and `Shared::release` forgets it, so a
    /// chat room keeps no ghost nick and an upload leaves no temporary
    /// file. Every other connection, of every protocol, is served on.
    /// Nothing else is shared with the core but `Shared`, whose entries
    /// are keyed by connection and released on close, so no state outlives
    /// the poisoned connection (hence `AssertUnwindSafe`). This is why the
    /// release profile keeps `panic = "unwind"`; a build with
    /// `panic = "abort"` would lose this and stop at the first panic.
    /// Proved by `tests/faults.rs` (a core made to panic on demand, under
    /// the `fault-injection` feature).
    fn with_session<R>(
        &mut self,
        io: &mut IoCx<'_>,
        f: impl FnOnce(&mut AnySession, &mut Vec<u8>, &mut Cx<'_>) -> R,
    ) -> Option<R> {
        let mut cx = Cx::new(
            &mut self.output,
            io.shared,
            io.effects,
            self.peer,
            self.id,
            io.clock.wall,
        );
        let session = &mut self.session;
        let carry = &mut self.carry;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let r = f(session, carry, &mut cx);
            (r, cx.close_reason())
        }));
        match result {
            Ok((r, close)) => {
                if let (Some(why), Phase::Open) = (close, self.phase) {
                    self.reason.get_or_insert(why);
                    self.phase = Phase::Flushing;
                    self.carry = Vec::new();
                }
                Some(r)
            }
            Err(payload) => {
                let what = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)");
                log::error!(
                    "{} core panicked on connection #{} from {}: {what}; closing that connection",
                    self.protocol(),
                    self.id,
                    self.peer
                );
                self.phase = Phase::Dead;
                self.reason.get_or_insert(CloseReason::Error);
                None
            }
        }
    }

    /// Offers freshly read bytes (plus any carried ones) to the session.
    fn feed(&mut self, io: &mut IoCx<'_>, data: &[u8]) {
        let mark = trace::mark(&self.output);
        let used = self.with_session(io, |session, carry, cx| {
            if carry.is_empty() {
                let used = session.on_input(data, cx);
                #[cfg(feature = "fault-injection")]
                super::faults::poison(data);
                let (_, unused) = split_at_most(data, used);
                if !cx.close_requested() {
                    carry.extend_from_slice(unused);
                }
                used
            } else {
                carry.extend_from_slice(data);
                let used = session.on_input(carry, cx).min(carry.len());
                #[cfg(feature = "fault-injection")]
                super::faults::poison(carry);
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
    fn take_turn(&mut self, io: &mut IoCx<'_>) -> ReadStep {
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
    fn after_input(&mut self, io: &mut IoCx<'_>) -> Option<ReadStep> {
        // Not chat: the loop checks a chat client's unsent output
        // against --max-sendq right after this read (proto::effects).
        if self.output.len() >= FLUSH_EARLY_BYTES && self.protocol().is_request_reply() {
            self.flush(io.clock, &mut io.shared.counts);
        }
        if self.output.len() > BACKPRESSURE_BYTES && self.protocol().is_request_reply() {
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
    /// calls this up to [`READS_PER_WAKE`] times per wake-up, routing the
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
        if let Some(chat) = self.session.chat_mut() {
            chat.read_this_wake = chat
                .read_this_wake
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
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
    fn drained(&mut self, draining: bool) -> ReadStop {
        if self.take_pending() {
            return ReadStop::Budget;
        }
        if draining {
            self.stop_if_between_messages();
        }
        ReadStop::Drained
    }

    /// Whether the last reads or writes stopped short of what the kernel
    /// holds without an edge to announce it (only ever under fault
    /// injection): the loop must serve the connection again next wake-up,
    /// and the next flush must write even if the socket looked full.
    #[inline(always)]
    pub fn take_pending(&mut self) -> bool {
        let pending = seam::take_pending(&mut self.stream);
        if pending {
            self.write_blocked = false;
        }
        pending
    }

    /// The poll reported the socket writable (or failed, which a write
    /// will report): the next flush writes again.
    pub fn note_writable(&mut self) {
        self.write_blocked = false;
    }

    fn on_peer_eof(&mut self, io: &mut IoCx<'_>) {
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

    /// Greets a new connection (chat's `WELCOME`).
    pub fn open_session(&mut self, io: &mut IoCx<'_>) {
        self.with_session(io, |session, _, cx| session.on_open(cx));
    }

    /// Calls the session's shutdown hook; the connection keeps reading only
    /// while a message is half received (see [`Conn::stop_if_between_messages`]).
    pub fn begin_shutdown(&mut self, io: &mut IoCx<'_>) {
        self.reason.get_or_insert(CloseReason::Shutdown);
        if self.phase == Phase::Open {
            self.with_session(io, |session, _, cx| session.on_shutdown(cx));
        }
    }

    /// During shutdown: stops reading unless a message is half received.
    pub fn stop_if_between_messages(&mut self) {
        if self.phase == Phase::Open && !self.mid_message() {
            self.phase = Phase::Flushing;
        }
    }

    /// Ends the session for `reason`: its `on_close` runs here, once, and
    /// whatever it queues (chat's `BYE`) still goes out if the connection
    /// is not dead. Then the shared state forgets the connection, even if
    /// `on_close` panicked half way (no ghost chat nick). The connection
    /// then only flushes and closes.
    pub fn end_session(&mut self, io: &mut IoCx<'_>, reason: CloseReason) {
        let reason = *self.reason.get_or_insert(reason);
        if !self.session_ended {
            self.session_ended = true;
            self.with_session(io, |session, _, cx| session.on_close(cx, reason));
            io.shared.release(self.protocol(), self.id, io.effects);
        }
        if self.phase == Phase::Open {
            self.phase = Phase::Flushing;
            self.carry = Vec::new();
        }
    }

    /// Drops the connection at once, unsent output and all (a slow
    /// consumer).
    pub fn kill(&mut self) {
        self.phase = Phase::Dead;
    }

    /// Queues a delivery from another connection: a broadcast shared, a
    /// `private` message copied (it is this connection's alone, and counted
    /// as its memory). Returns false if the connection takes no more (it is
    /// closing).
    pub fn deliver(&mut self, msg: &std::rc::Rc<[u8]>, private: bool) -> bool {
        if self.phase != Phase::Open || self.kill_pending {
            return false;
        }
        if private {
            self.output.put(msg);
        } else {
            self.output.put_shared(std::rc::Rc::clone(msg));
        }
        true
    }

    /// The reason `on_close` is given when the loop removes the connection
    /// without having ended the session before.
    pub fn final_reason(&self) -> CloseReason {
        self.reason.unwrap_or(if self.peer_eof {
            CloseReason::PeerClosed
        } else {
            CloseReason::Finished
        })
    }

    /// Lends a request/reply connection the loop's reply output for one
    /// turn of reading and replying, if it has nothing unsent: replies are
    /// then written into a buffer the loop keeps warm, and the turn
    /// allocates no buffer and frees none (what that saves is measured in
    /// docs/PERFORMANCE.md, "Reply buffers").
    /// Returns whether it was lent; if so, [`Conn::flush_replies`] must be
    /// given it back.
    pub fn borrow_replies(&mut self, replies: &mut Output) -> bool {
        if !self.protocol().is_request_reply() || !self.output.is_empty() || !replies.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.output, replies);
        true
    }

    /// Sends a request/reply connection's replies right after its input was
    /// processed: still one write per connection per wake-up, but the
    /// drained buffer goes straight back to the loop if it was lent
    /// (`lent`), for the next connection, or is freed. So a wake-up
    /// that serves hundreds of connections holds one reply buffer at a
    /// time, not hundreds (whose freed memory the allocator would keep
    /// resident). If the kernel did not take everything, the connection
    /// keeps the output it has, lent or not, and the loop its empty one.
    /// Chat waits for the end of the wake-up instead, where deliveries
    /// from every sender join one write.
    pub fn flush_replies(&mut self, clock: &Clock, counts: &mut Counts, lent: Option<&mut Output>) {
        if !self.protocol().is_request_reply() || self.phase == Phase::Dead {
            return;
        }
        if !self.flush(clock, counts) {
            return;
        }
        match lent {
            Some(replies) => {
                std::mem::swap(&mut self.output, replies);
                replies.release_if_large();
            }
            None => self.output.release_if_empty(),
        }
    }

    /// Writes queued output until it is all sent or the socket is full.
    /// Returns true when everything queued has been sent.
    ///
    /// Once a write came back short or would block, nothing is written
    /// until the poll reports the socket writable again ([`Conn::note_writable`]):
    /// a streamed reply that fills the socket on the read path, and the
    /// flush at the end of the wake-up, would otherwise each spend a
    /// syscall to hear `WouldBlock`.
    #[inline(always)]
    pub fn flush(&mut self, clock: &Clock, counts: &mut Counts) -> bool {
        // Inlined: most calls (a drained connection settled again) end here.
        self.output.is_empty() || self.write_out(clock, counts)
    }

    /// [`Conn::flush`] when there is output; counts the bytes sent.
    #[inline(never)]
    fn write_out(&mut self, clock: &Clock, counts: &mut Counts) -> bool {
        while !self.output.is_empty() {
            if self.phase == Phase::Dead || self.write_blocked {
                return false;
            }
            let result = match self.output.contiguous() {
                Some(run) => self.stream.write(run).map(|n| (n, run.len())),
                None => write_segments(&mut self.stream, &self.output),
            };
            match result {
                Ok((0, _)) => {
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::Error);
                    return false;
                }
                Ok((n, offered)) => {
                    trace::wrote(n, offered);
                    self.output.consume(n);
                    counts.sent(self.protocol(), n);
                    self.last_active = clock.now;
                    if n < offered {
                        // A short write: the socket buffer is full. The
                        // kernel will raise WRITABLE when it has room.
                        self.write_blocked = true;
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace::write_would_block();
                    self.write_blocked = true;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write to #{} {}: {e}", self.id, self.peer);
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::of_io_error(&e));
                    return false;
                }
            }
        }
        true
    }

    /// After a flush: free drained buffers, lift backpressure, move a
    /// drained closing connection on, and add WRITABLE to the registered
    /// interest if output is left and it is not there yet. Returns true if
    /// reading should resume now (backpressure was lifted while data may be
    /// waiting).
    pub fn settle(&mut self, registry: &Registry, token: Token) -> bool {
        let drained = self.output.is_empty();
        let mut resume = false;
        if drained {
            self.output.release_if_empty();
            match self.phase {
                Phase::Flushing if self.peer_eof => self.phase = Phase::Dead,
                Phase::Flushing => {
                    // Shut our side first, then read until the peer's EOF:
                    // closing with unread input would send a reset that can
                    // destroy replies the peer has not read yet.
                    match self.stream.shutdown(Shutdown::Write) {
                        Ok(()) => self.phase = Phase::Lingering,
                        Err(e) => {
                            self.phase = Phase::Dead;
                            self.reason.get_or_insert(CloseReason::of_io_error(&e));
                        }
                    }
                    resume = true;
                }
                _ => {}
            }
        }
        if self.backpressured && self.output.len() <= BACKPRESSURE_BYTES / 2 {
            self.backpressured = false;
            resume = true;
        }
        if self.phase != Phase::Dead && !drained && !self.writable_interest {
            // If the socket has room by now, EPOLL_CTL_MOD queues the event
            // at once: no edge is lost between the short write and here.
            let interest = Interest::READABLE | Interest::WRITABLE;
            match registry.reregister(&mut self.stream, token, interest) {
                Ok(()) => {
                    trace::interest("READABLE|WRITABLE");
                    self.writable_interest = true;
                }
                Err(e) => {
                    log::warn!("reregister #{}: {e}", self.id);
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::Error);
                }
            }
        }
        resume && self.phase != Phase::Dead
    }

    /// Best-effort last write and close for a connection refused at accept.
    pub fn refuse(mut stream: TcpStream, reply: &[u8], scratch: &mut [u8]) {
        if !reply.is_empty() {
            let _ = stream.write(reply);
        }
        let _ = stream.shutdown(Shutdown::Write);
        // Unread input at close turns the FIN into a reset, which can
        // destroy the reply: take what has arrived.
        let _ = stream.read(scratch);
    }
}

/// One `writev` of the unsent segments of `output`: what the kernel took,
/// and what was offered. Out of line: its 4 KiB of slices would otherwise
/// sit in the frame of every write, most of which (a batch of replies, a
/// chat delivery) is one contiguous run.
#[inline(never)]
fn write_segments(stream: &mut seam::Stream, output: &Output) -> io::Result<(usize, usize)> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let count = output.io_slices(&mut slices);
    let slices = slices.get(..count).unwrap_or_default();
    let offered: usize = slices.iter().map(|s| s.len()).sum();
    stream.write_vectored(slices).map(|n| (n, offered))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use super::*;
    use crate::config::Config;

    /// A connected pair: the server side as a `Conn` speaking transform,
    /// the client side as a plain blocking socket.
    fn transform_pair(shared: &mut Shared) -> (Conn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let session = AnySession::new(Protocol::Transform, shared);
        let conn = Conn::new(TcpStream::from_std(server), peer, 1, session, 0);
        (conn, client)
    }

    /// Regression: shutting down, a read that fills the buffer and happens
    /// to end on a request boundary used to stop the connection there,
    /// and the requests still queued in the kernel, sent before the
    /// signal, were never answered. Reading now stops only once the
    /// socket is drained.
    #[test]
    fn shutting_down_a_full_read_ending_on_a_boundary_reads_on() {
        let config = Config::default();
        let mut shared = Shared::new(&config);
        let (mut conn, mut client) = transform_pair(&mut shared);
        // Four uppercase requests of 12 bytes: 16 bytes each.
        let mut wire = Vec::new();
        for _ in 0..4 {
            wire.extend_from_slice(&((1u32 << 27) | 12).to_be_bytes());
            wire.extend_from_slice(b"hello world!");
        }
        client.write_all(&wire).unwrap();
        let clock = Clock::new();
        let mut effects = Vec::new();
        let mut io = IoCx {
            shared: &mut shared,
            clock: &clock,
            draining: true,
            effects: &mut effects,
        };
        // A buffer of one request: every read is full and ends on a
        // boundary. (On loopback, all 64 bytes are queued once
        // `write_all` returns.)
        let mut scratch = [0u8; 16];
        for _ in 0..8 {
            if conn.read_once(&mut scratch, &mut io) != ReadStep::More {
                break;
            }
        }
        assert_eq!(conn.phase, Phase::Flushing);
        assert_eq!(conn.pending_output(), 4 * 16, "every request answered");
    }

    /// An idle connection's whole cost is this struct (plus a 24-byte
    /// deadline): keep it small. Measured: 10,000 idle transform
    /// connections add about 240 B each to the server's RSS.
    #[test]
    #[cfg(not(feature = "fault-injection"))]
    fn a_connection_stays_small() {
        // A debug build's mio stream also carries the id of its selector
        // (8 bytes with padding); the release build is what runs. The
        // stats listener's `CLIENTS` age, and the memory
        // budget's count of this connection and the output's count of its
        // shared bytes, cost 8 bytes each (a chat connection's
        // flood-control clock is in its session).
        let limit = if cfg!(debug_assertions) { 224 } else { 216 };
        let size = std::mem::size_of::<Conn>();
        assert!(size <= limit, "Conn is {size} bytes");
        assert_eq!(std::mem::size_of::<super::super::timers::Due>(), 24);
    }
}
