//! One TCP connection: its socket, its protocol session, its carried input
//! and its output queue, and the read and write paths the loop drives.
//!
//! Reads go into the loop's shared scratch buffer and are parsed there in
//! place; only an incomplete message (or, behind a session that wants turns
//! for work of its own, the rest of one read) is copied into the
//! connection's own `carry` buffer, which is freed as soon as it empties. Replies go into the
//! connection's [`Output`], freed when drained. An idle connection therefore
//! owns no heap memory, only this struct.

mod reading;
mod writing;

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::config::Protocol;
use crate::proto::counts::Counts;
use crate::proto::{AnySession, CloseReason, Cx, Effect, Output, Session, Shared};

use super::marks::Marks;
use super::pacing::TokenBucket;
use super::timers::Clock;

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

/// Reads one connection may do per wake-up before others get their turn.
pub const READS_PER_WAKE: usize = 32;

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
    /// Bytes read in this wake-up, all connections: each read adds to it.
    pub wake_read: &'a mut u64,
}

/// One client connection.
pub struct Conn {
    stream: seam::Stream,
    /// The peer's address.
    peer: SocketAddr,
    /// Unique for the server's lifetime.
    id: u64,
    session: AnySession,
    /// An incomplete message carried to the next read.
    carry: Vec<u8>,
    output: Output,
    /// Loop milliseconds of the last byte read or written.
    last_active: u64,
    /// Where it is in its life.
    phase: Phase,
    /// Why it is closing, once known.
    reason: Option<CloseReason>,
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
    /// The loop's marks: its lists, its decisions, the memory charged.
    marks: Marks,
    /// Loop seconds when it was accepted (`CLIENTS` shows its age); 32
    /// bits keep the struct within its size (136 years of uptime).
    opened_secs: u32,
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
            marks: Marks::default(),
            opened_secs: u32::try_from(now / 1000).unwrap_or(u32::MAX),
        }
    }

    /// Its id, unique for the server's lifetime.
    #[inline(always)]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Loop milliseconds of the last byte read or written.
    pub fn last_active(&self) -> u64 {
        self.last_active
    }

    /// Loop seconds when it was accepted.
    pub fn opened_secs(&self) -> u32 {
        self.opened_secs
    }

    /// Whether the end-of-wake-up flush has nothing to do for it: open,
    /// nothing unsent, not held back by backpressure.
    #[inline]
    pub fn is_settled(&self) -> bool {
        self.phase == Phase::Open && self.output.is_empty() && !self.backpressured
    }

    /// Whether it is open: reading requests and sending replies.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether it is closing: sending its last replies, or waiting for the
    /// peer's end of stream (a close-grace deadline applies).
    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Flushing | Phase::Lingering)
    }

    /// The loop's marks on it.
    #[inline(always)]
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// The loop's marks on it, to change.
    #[inline(always)]
    pub fn marks_mut(&mut self) -> &mut Marks {
        &mut self.marks
    }

    /// A broadcast member whose unsent output passed `max_sendq` (its own
    /// replies: a client that asks and never reads) is marked a slow
    /// consumer, once, and listed in `slow` as `key`.
    #[inline]
    pub fn check_sendq(&mut self, key: usize, max_sendq: usize, slow: &mut Vec<usize>) {
        if self.sendq() > max_sendq {
            self.marks.mark_slow_consumer(key, slow);
        }
    }

    /// Ends the connection for `reason` (a limit of the server's: a slow
    /// consumer, the memory budget), even if it was already closing for
    /// another, and drops it at once, unsent output and all.
    pub fn drop_for(&mut self, io: &mut IoCx<'_>, reason: CloseReason) {
        self.reason = Some(reason);
        self.end_session(io, reason);
        self.kill();
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

    /// Whether its flow is request/reply (backpressure), not broadcast
    /// (slow-consumer drop): see [`crate::proto::Flow`].
    #[inline]
    pub fn is_request_reply(&self) -> bool {
        self.session.is_request_reply()
    }

    /// The name it goes by among the others, if its protocol has names
    /// ([`Session::display_name`]).
    pub fn display_name(&self, shared: &Shared) -> Option<String> {
        self.session.display_name(shared, self.id)
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

    /// A paced connection's bucket ([`Pacing::Lines`](crate::proto::Pacing::Lines)): the session's line
    /// allowance (the tokens) and the clock it keeps for the loop. Others:
    /// empty.
    pub fn pacing_bucket(&mut self) -> TokenBucket {
        let tokens = self.session.line_allowance().unwrap_or(0);
        match self.session.loop_slots() {
            Some(slots) => TokenBucket {
                tokens,
                credited_at: slots.pacing_clock,
            },
            None => TokenBucket::default(),
        }
    }

    /// Stores a paced connection's bucket back: the session may consume at
    /// most `bucket.tokens` more complete lines. Others ignore it.
    pub fn set_pacing_bucket(&mut self, bucket: TokenBucket) {
        if let Some(slots) = self.session.loop_slots() {
            slots.pacing_clock = bucket.credited_at;
            self.session.set_line_allowance(Some(bucket.tokens));
        }
    }

    /// Bytes read in the current wake-up, against a broadcast flow's read
    /// allowance (0 for connections that keep no [`LoopSlots`](crate::proto::LoopSlots)).
    #[inline]
    pub fn read_this_wake(&mut self) -> u32 {
        self.session.loop_slots().map_or(0, |s| s.read_this_wake)
    }

    /// `n` more bytes read in this wake-up (the loop counts them for a
    /// connection whose flow has a read allowance).
    pub fn add_read_this_wake(&mut self, n: u64) {
        if let Some(slots) = self.session.loop_slots() {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            slots.read_this_wake = slots.read_this_wake.saturating_add(n);
        }
    }

    /// A new wake-up: the whole read allowance back.
    pub fn reset_read_this_wake(&mut self) {
        if let Some(slots) = self.session.loop_slots() {
            slots.read_this_wake = 0;
        }
    }

    /// Whether input is carried (read but not yet consumed).
    pub fn has_carry(&self) -> bool {
        !self.carry.is_empty()
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
    /// broadcast group keeps no ghost member and a file store leaves no
    /// temporary file. Every other connection, of every protocol, is served on.
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

    /// Greets a new connection (the session's `on_open`).
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
    /// whatever it queues (a goodbye) still goes out if the connection
    /// is not dead. Then the shared state forgets the connection, even if
    /// `on_close` panicked half way (no ghost group member). The connection
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
        if self.phase != Phase::Open || self.marks.is_slow_consumer() {
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
        if !self.session.is_request_reply() || !self.output.is_empty() || !replies.is_empty() {
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
    /// A broadcast member waits for the end of the wake-up instead, where deliveries
    /// from every sender join one write.
    pub fn flush_replies(&mut self, clock: &Clock, counts: &mut Counts, lent: Option<&mut Output>) {
        if !self.session.is_request_reply() || self.phase == Phase::Dead {
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
        let mut wake_read = 0;
        let mut io = IoCx {
            shared: &mut shared,
            clock: &clock,
            draining: true,
            effects: &mut effects,
            wake_read: &mut wake_read,
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
    /// deadline): keep it small (the measured RSS per idle connection is
    /// in docs/PERFORMANCE.md).
    #[test]
    #[cfg(not(feature = "fault-injection"))]
    fn a_connection_stays_small() {
        // A debug build's mio stream also carries the id of its selector
        // (8 bytes with padding); the release build is what runs, and its
        // slab of 10,000 idle connections is what the matrix's idle row
        // counts: a field more, 8 bytes, was 7% there. The
        // stats listener's `CLIENTS` age, and the memory
        // budget's count of this connection and the output's count of its
        // shared bytes, cost 8 bytes each (a paced connection's clock is
        // in its session's LoopSlots).
        let limit = if cfg!(debug_assertions) { 224 } else { 208 };
        let size = std::mem::size_of::<Conn>();
        assert!(size <= limit, "Conn is {size} bytes");
        assert_eq!(std::mem::size_of::<super::super::timers::Due>(), 24);
    }
}
