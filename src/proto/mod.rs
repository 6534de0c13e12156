//! The sans-IO contract every protocol core implements, and the cores.
//!
//! A core is a state machine per connection ([`Session`]). The event loop
//! feeds it the bytes a read returned ([`Session::on_input`]); the core
//! parses them in place, appends replies to the connection's [`Output`], and
//! asks for anything else (closing after the replies, say) through [`Cx`].
//! A core owns no socket, no clock and no timer, so every protocol is tested
//! byte by byte without a network, and the loop stays the one place that
//! does I/O.
//!
//! Input contract: `on_input` consumes every complete message in `input` and
//! returns how many bytes it consumed. Bytes it leaves (an incomplete line,
//! say) are kept by the connection and offered again, followed by the next
//! bytes read. A core bounds what it leaves unconsumed (a line framer enters
//! discard mode past `--max-line`), so a connection's carried input is
//! bounded too. A core with work of its own to finish first, or whose
//! messages are costly ([`Session::wants_turn`]: transform's large reverse
//! or shuffle, done in slices; upload, after a bounded number of file
//! creates and renames) stops at the end of a message; the rest of that
//! read is carried (bounded by the read buffer) and offered again on a
//! later turn, before anything more is read (fair turns).
//!
//! Output to other connections: a core never touches another connection.
//! It records deliveries ([`Effect`]s) with [`Cx::broadcast`] and
//! [`Cx::send_to`]; the loop routes them after the call returns (see
//! [`effects`] for the routing contract and its order guarantee).
//!
//! Adding a protocol: write `proto/<name>.rs` with a type that implements
//! [`Session`] and [`Declared`] (its [`Declaration`]: name, default port,
//! transport, refusal replies, flow and pacing policies), and name it on
//! one line of the `protocols!` registry below, which makes
//! [`Protocol`] and [`AnySession`] of the list. Nothing in the loop
//! changes: the loop knows protocols only by their declarations
//! (`proto/echo.rs` is the smallest example).

pub mod budget;
pub mod counts;
pub mod declare;
pub mod effects;
pub mod framing;
pub mod held;
pub mod output;
pub mod prefix;
pub mod random_edit;
pub mod rng;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::SystemTime;

pub use budget::{Budget, Reservation};
pub use declare::{Declaration, Declared, Flow, Group, LoopSlots, Pacing, Transport};
pub use effects::{Deliver, Effect};
pub use output::Output;

use crate::config::Config;

/// State shared by all connections, owned by the loop and lent to a core on
/// each call. Each protocol's part lives in its own module.
#[derive(Debug)]
pub struct Shared {
    /// tne: the `--max-line` limit (TCP lines and UDP datagrams).
    pub tne: tne::Shared,
    /// cmd: the `--max-line` limit and the local time zone.
    pub cmd: cmd::Shared,
    /// transform: the `--max-buffer` budget and the shuffle generator.
    pub transform: transform::Shared,
    /// upload: where files are saved, and `--max-upload`.
    pub upload: upload::Shared,
    /// chat: the room (who is connected under which nick) and its limits.
    pub chat: chat::Shared,
    /// Event counters for the stats listener (issue 19).
    pub counts: counts::Counts,
}

impl Shared {
    /// Connection `conn_id` is gone: drops whatever shared state still names
    /// it, queuing any notice the others are owed into `effects`. The loop
    /// calls this after every `on_close`; it does something only when a
    /// session failed to clean up (its core panicked), so that a chat nick
    /// never outlives its connection. Only chat keeps connections by id in
    /// shared state, so for any other `protocol` there is nothing to do.
    pub fn release(&mut self, protocol: Protocol, conn_id: u64, effects: &mut Vec<Effect>) {
        if protocol != Protocol::Chat {
            return;
        }
        if let Some(msg) = self.chat.forget(conn_id) {
            effects.push(Effect::Broadcast {
                msg,
                except: conn_id,
            });
        }
    }

    /// The broadcast group (the only one: chat's room), through which
    /// [`effects::route`] and the loop's reports reach its members.
    #[inline]
    pub fn group(&self) -> &impl Group {
        &self.chat.room
    }

    /// Shared state for a server running with `config`. Call it at start,
    /// while the process is single-threaded: it probes the local time zone
    /// (see [`cmd::LocalClock`]).
    pub fn new(config: &Config) -> Shared {
        Shared {
            tne: tne::Shared::new(config.max_line),
            cmd: cmd::Shared::new(config.max_line, cmd::LocalClock::system()),
            transform: transform::Shared::new(config.max_buffer, rng::Rng::from_entropy())
                .with_table(config.transform_table),
            upload: upload::Shared::from_config(config),
            chat: chat::Shared::new(config.max_line, config.max_sendq),
            counts: counts::Counts::default(),
        }
    }
}

/// What the loop lends a core for one call: where replies go, who the peer
/// is, the time, the state shared with other connections, and the queue of
/// deliveries to other connections.
pub struct Cx<'a> {
    /// Replies to this connection, in order.
    pub out: &'a mut Output,
    /// The peer's address.
    pub peer: SocketAddr,
    /// A server-unique id of this connection (never reused).
    pub conn_id: u64,
    /// Wall-clock time of this loop iteration.
    pub now: SystemTime,
    /// State shared by all connections.
    pub shared: &'a mut Shared,
    effects: &'a mut Vec<Effect>,
    close: Option<CloseReason>,
}

impl<'a> Cx<'a> {
    /// A context for one call into a core. `effects` is the loop's queue of
    /// deliveries to other connections; the loop routes what the call adds
    /// to it ([`effects::route`]) before it calls into any core again.
    pub fn new(
        out: &'a mut Output,
        shared: &'a mut Shared,
        effects: &'a mut Vec<Effect>,
        peer: SocketAddr,
        conn_id: u64,
        now: SystemTime,
    ) -> Cx<'a> {
        Cx {
            out,
            peer,
            conn_id,
            now,
            shared,
            effects,
            close: None,
        }
    }

    /// Asks the loop to deliver `msg` to every member of the broadcast
    /// group (the chat room) but connection `except`. One allocation is
    /// shared by every receiver.
    pub fn broadcast(&mut self, msg: Rc<[u8]>, except: u64) {
        self.effects.push(Effect::Broadcast { msg, except });
    }

    /// Asks the loop to deliver `msg` to connection `to`, if it is still
    /// open. A message to this very connection is copied into [`Cx::out`]
    /// at once, so it keeps its place among this call's replies (a copy:
    /// it is this connection's alone, and counted as such).
    pub fn send_to(&mut self, to: u64, msg: Rc<[u8]>) {
        if to == self.conn_id {
            self.out.put(&msg);
        } else {
            self.effects.push(Effect::SendTo { to, msg });
        }
    }

    /// Asks the loop to render `report` (figures only the loop has) into
    /// this connection's output, after the replies and reports asked for
    /// before it (the stats listener).
    pub fn report(&mut self, report: stats::Report) {
        self.effects.push(Effect::Report {
            to: self.conn_id,
            report,
        });
    }

    /// Asks the loop to close the connection once the replies queued so far
    /// have been sent. Input after this point is not offered to the core.
    pub fn close_after_flush(&mut self) {
        self.close.get_or_insert(CloseReason::Finished);
    }

    /// As [`Cx::close_after_flush`], for `reason` rather than the
    /// protocol's own end: a limit reached ([`CloseReason::Limit`]) or an
    /// error, once the core has queued its error reply. The close is
    /// logged with that reason.
    pub fn close_after_flush_for(&mut self, reason: CloseReason) {
        self.close.get_or_insert(reason);
    }

    /// Whether the core asked for the connection to close.
    pub fn close_requested(&self) -> bool {
        self.close.is_some()
    }

    /// Why the core asked for the connection to close, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close
    }
}

/// Why the loop ends a connection; passed to [`Session::on_close`], named
/// in the per-connection `close` log line ([`CloseReason::as_str`]) and, as
/// a metrics label, by [`CloseReason::label`].
///
/// The first reason found wins: a connection whose peer closed first and
/// whose last reply then met a reset was closed by its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The protocol's own end: the core asked ([`Cx::close_after_flush`])
    /// and its replies went out (cmd's `BYE`, chat's `/quit`, upload's
    /// zero-line message).
    Finished,
    /// The peer closed first: end of stream (its FIN).
    PeerClosed,
    /// The peer reset the connection: `ECONNRESET`, `EPIPE` (or an abort,
    /// or a socket no longer connected) on a read or a write.
    Reset,
    /// Any other failure: an I/O error that is not a reset, a failed
    /// re-registration, a core that panicked.
    Error,
    /// No traffic either way for `--idle-timeout`.
    IdleTimeout,
    /// chat: unsent output passed `--max-sendq` (a slow consumer).
    SendqExceeded,
    /// Every client buffer together passed `--max-memory`, and this
    /// connection held among the most.
    MemoryLimit,
    /// A per-connection limit of the protocol was reached (the core
    /// answered with its error and asked to close:
    /// [`Cx::close_after_flush_for`]).
    Limit(Limit),
    /// The server is shutting down.
    Shutdown,
}

/// A per-connection limit whose breach ends the connection
/// ([`CloseReason::Limit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// upload: a file larger than `--max-upload`.
    MaxUpload,
    /// upload: one file more than `--max-files`.
    MaxFiles,
}

impl Limit {
    /// The limit as the log says it: `over --max-upload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxUpload => "over --max-upload",
            Limit::MaxFiles => "over --max-files",
        }
    }
}

impl CloseReason {
    /// The reason in words, as the `close` log line says it, and chat's
    /// `BYE`/`LEAVE` lines for the reasons the server gives.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Finished => "done",
            CloseReason::PeerClosed => "closed by peer",
            CloseReason::Reset => "reset by peer",
            CloseReason::Error => "error",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::SendqExceeded => "sendq exceeded",
            CloseReason::MemoryLimit => "memory limit",
            CloseReason::Limit(limit) => limit.as_str(),
            CloseReason::Shutdown => "server shutting down",
        }
    }

    /// The reason as a metrics label (`reason` of
    /// `onepoll_connections_closed_total`): `peer`, `reset`, `idle`,
    /// `slow_consumer`, `memory`, `error`, `shutdown`, `limit` or `done`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Finished => "done",
            CloseReason::PeerClosed => "peer",
            CloseReason::Reset => "reset",
            CloseReason::Error => "error",
            CloseReason::IdleTimeout => "idle",
            CloseReason::SendqExceeded => "slow_consumer",
            CloseReason::MemoryLimit => "memory",
            CloseReason::Limit(_) => "limit",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Why a read or write that failed with `e` ends the connection: a
    /// reset ([`CloseReason::Reset`]) or another error.
    pub fn of_io_error(e: &std::io::Error) -> CloseReason {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected => CloseReason::Reset,
            _ => CloseReason::Error,
        }
    }

    /// Whether the server, not the peer, ends the connection: the core may
    /// queue last words that the loop still tries to send (within
    /// `CLOSE_GRACE`; a slow consumer's may be dropped with its queue).
    pub fn server_initiated(self) -> bool {
        matches!(
            self,
            CloseReason::IdleTimeout
                | CloseReason::SendqExceeded
                | CloseReason::Shutdown
                | CloseReason::MemoryLimit
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One connection's protocol state machine. Every method but `on_input`
/// has a do-nothing default.
///
/// Call order: `on_open` once, then any number of `on_input`, at most one
/// `on_eof` and `on_shutdown`, and `on_close` exactly once, last.
pub trait Session {
    /// The connection was just accepted: queue any greeting (chat's
    /// `WELCOME`, and its `JOIN` to the others).
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}

    /// Consumes every complete message in `input`, appending replies to
    /// `cx.out`; returns the number of bytes consumed (see the module doc).
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize;

    /// The peer shut its write side: no more input will come. Replies
    /// queued so far are still sent; then the loop closes the connection.
    fn on_eof(&mut self, _cx: &mut Cx<'_>) {}

    /// The connection is going away for `reason`; called exactly once.
    /// Last chance to release resources that a drop would not (temporary
    /// files, say), and to tell others (chat's `LEAVE`). When
    /// [`CloseReason::server_initiated`], what is queued on `cx.out` here is
    /// still sent if the peer takes it.
    fn on_close(&mut self, _cx: &mut Cx<'_>, _reason: CloseReason) {}

    /// The server is shutting down: queue any last words.
    fn on_shutdown(&mut self, _cx: &mut Cx<'_>) {}

    /// True while a message has started and not ended. A shutting-down
    /// server keeps reading such a connection until the message is complete,
    /// so that replies to requests already begun go out whole.
    fn mid_message(&self) -> bool {
        false
    }

    /// True while the session has work of its own to finish before it takes
    /// more input (transform's large reverse or shuffle, done in slices), or
    /// has spent its per-call budget (upload's files a turn).
    /// While it says so, `on_input` stops at the end of the message that
    /// started the work (returning how much it consumed, as usual), and the
    /// loop offers it no input: it calls [`Session::on_turn`] once per
    /// turn, coming back next wake-up without waiting for a readiness
    /// event, and once this is false offers the input carried meanwhile.
    fn wants_turn(&self) -> bool {
        false
    }

    /// Does one bounded slice of the work [`Session::wants_turn`] announced,
    /// appending replies to `cx.out` as `on_input` would.
    fn on_turn(&mut self, _cx: &mut Cx<'_>) {}

    /// Heap bytes the session itself holds for a message not yet answered
    /// (transform's whole message), counted in the memory budget.
    fn held_bytes(&self) -> usize {
        0
    }

    /// The name this connection goes by among the others (chat's nick),
    /// for the stats listener's `CLIENTS`: `Some("")` for a protocol with
    /// names whose connection has none yet; `None` for a protocol without.
    fn display_name(&self, _shared: &Shared, _conn_id: u64) -> Option<String> {
        None
    }

    /// [`Pacing::Lines`]: complete lines `on_input` may still consume
    /// (`None`: no limit).
    fn line_allowance(&self) -> Option<u32> {
        None
    }

    /// [`Pacing::Lines`]: lets `on_input` consume at most `lines` more
    /// complete lines (`None`: no limit); the rest it leaves unconsumed.
    fn set_line_allowance(&mut self, _lines: Option<u32>) {}

    /// The loop's bookkeeping for a broadcast or paced connection, kept in
    /// the session (see [`LoopSlots`]); `None` for the others.
    fn loop_slots(&mut self) -> Option<&mut LoopSlots> {
        None
    }
}

/// The registry: one line per protocol, `Variant(module::SessionType)`,
/// in the order of [`Protocol::index`] (the spec's five first). It declares
/// the module (`proto/<module>.rs`) and makes [`Protocol`] (names, ports,
/// policies: each from the session type's [`Declaration`]) and
/// [`AnySession`], which dispatches [`Session`] calls without boxing.
macro_rules! protocols {
    ($($(#[$doc:meta])* $variant:ident($module:ident :: $session:ident)),+ $(,)?) => {
        $(pub mod $module;)+

        protocols!(@types $($(#[$doc])* $variant($module, $module::$session)),+);
    };
    (@types $($(#[$doc:meta])* $variant:ident($module:ident, $ty:ty)),+) => {
        /// Every protocol the server can serve (see the registry in
        /// [`crate::proto`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Protocol {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nDeclared in [`", stringify!($module), "`].")]
                $variant,
            )+
        }

        impl Protocol {
            /// How many protocols there are: the length of per-protocol
            /// counter arrays (see [`Protocol::index`]).
            pub const COUNT: usize = [$(Protocol::$variant),+].len();

            /// Every protocol, in [`Protocol::index`] order.
            pub const EVERY: [Protocol; Protocol::COUNT] = [$(Protocol::$variant),+];

            /// The protocol's own description of itself.
            #[inline]
            pub const fn declaration(self) -> &'static Declaration {
                match self {
                    $(Protocol::$variant => &<$ty as Declared>::DECLARATION,)+
                }
            }
        }

        /// The session of any protocol (one per connection), stored inline in
        /// the connection.
        pub enum AnySession {
            $(
                #[allow(missing_docs)]
                $variant($ty),
            )+
        }

        impl Session for AnySession {
            fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
                match self { $(AnySession::$variant(s) => s.on_input(input, cx),)+ }
            }
            fn on_open(&mut self, cx: &mut Cx<'_>) {
                match self { $(AnySession::$variant(s) => s.on_open(cx),)+ }
            }
            fn on_eof(&mut self, cx: &mut Cx<'_>) {
                match self { $(AnySession::$variant(s) => s.on_eof(cx),)+ }
            }
            fn on_close(&mut self, cx: &mut Cx<'_>, reason: CloseReason) {
                match self { $(AnySession::$variant(s) => s.on_close(cx, reason),)+ }
            }
            fn on_shutdown(&mut self, cx: &mut Cx<'_>) {
                match self { $(AnySession::$variant(s) => s.on_shutdown(cx),)+ }
            }
            fn mid_message(&self) -> bool {
                match self { $(AnySession::$variant(s) => s.mid_message(),)+ }
            }
            fn wants_turn(&self) -> bool {
                match self { $(AnySession::$variant(s) => s.wants_turn(),)+ }
            }
            fn on_turn(&mut self, cx: &mut Cx<'_>) {
                match self { $(AnySession::$variant(s) => s.on_turn(cx),)+ }
            }
            fn held_bytes(&self) -> usize {
                match self { $(AnySession::$variant(s) => s.held_bytes(),)+ }
            }
            fn display_name(&self, shared: &Shared, conn_id: u64) -> Option<String> {
                match self { $(AnySession::$variant(s) => s.display_name(shared, conn_id),)+ }
            }
            fn line_allowance(&self) -> Option<u32> {
                match self { $(AnySession::$variant(s) => s.line_allowance(),)+ }
            }
            fn set_line_allowance(&mut self, lines: Option<u32>) {
                match self { $(AnySession::$variant(s) => s.set_line_allowance(lines),)+ }
            }
            fn loop_slots(&mut self) -> Option<&mut LoopSlots> {
                match self { $(AnySession::$variant(s) => s.loop_slots(),)+ }
            }
        }

        impl AnySession {
            /// The protocol this session speaks.
            #[inline]
            pub fn protocol(&self) -> Protocol {
                match self { $(AnySession::$variant(_) => Protocol::$variant,)+ }
            }

            /// Whether its flow is request/reply ([`Flow::RequestReply`]).
            #[inline]
            pub fn is_request_reply(&self) -> bool {
                match self {
                    $(AnySession::$variant(_) =>
                        <$ty as Declared>::DECLARATION.flow.is_request_reply(),)+
                }
            }

            /// A fresh session of `protocol` for a new connection.
            pub fn new(protocol: Protocol, shared: &mut Shared) -> AnySession {
                match protocol {
                    $(Protocol::$variant => AnySession::$variant(<$ty as Declared>::open(shared)),)+
                }
            }
        }
    };
}

protocols! {
    /// TNE20003 message/acknowledge (TCP and UDP).
    Tne(tne::TneSession),
    /// HELO / REQTIME / REQDATE / ECHO / REQIP / BYE.
    Cmd(cmd::CmdSession),
    /// Line chat room with broadcast.
    Chat(chat::ChatSession),
    /// Line-counted file upload.
    Upload(upload::UploadSession),
    /// Binary header, pipelined text transforms.
    Transform(transform::TransformSession),
    /// The stats listener: Prometheus metrics over HTTP, or INFO/CLIENTS
    /// lines (spec section 6); served only when named.
    Stats(stats::StatsSession),
    Echo(echo::EchoSession),
}

impl Protocol {
    /// How many protocols are served when none is named.
    pub const DEFAULT_COUNT: usize = {
        let mut n = 0;
        let mut i = 0;
        while i < Protocol::COUNT {
            if let Some(p) = Protocol::nth(i) {
                if p.declaration().served_by_default {
                    n += 1;
                }
            }
            i += 1;
        }
        n
    };

    /// The protocols served when none is named (those whose declaration
    /// says [`Declaration::served_by_default`]: the spec's five), in
    /// registry order.
    // Indexing checked by the compiler: a const out of bounds fails the
    // build, it cannot panic at run time.
    #[allow(clippy::indexing_slicing)]
    pub const ALL: [Protocol; Protocol::DEFAULT_COUNT] = {
        let mut all = [Protocol::EVERY[0]; Protocol::DEFAULT_COUNT];
        let (mut i, mut n) = (0, 0);
        while i < Protocol::COUNT {
            if let Some(p) = Protocol::nth(i) {
                if p.declaration().served_by_default {
                    all[n] = p;
                    n += 1;
                }
            }
            i += 1;
        }
        all
    };

    /// The protocol of index `i` in [`Protocol::EVERY`], in const context.
    const fn nth(i: usize) -> Option<Protocol> {
        if i < Protocol::COUNT {
            let every = Protocol::EVERY;
            // `get` is not const on arrays; the bound is checked above.
            #[allow(clippy::indexing_slicing)]
            Some(every[i])
        } else {
            None
        }
    }

    /// A dense index below [`Protocol::COUNT`], for per-protocol counters.
    #[inline(always)]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The protocol's name on the command line and in logs.
    pub fn name(self) -> &'static str {
        self.declaration().name
    }

    /// The port it listens on unless told otherwise.
    pub fn default_port(self) -> u16 {
        self.declaration().default_port
    }

    /// What a refused connection is told when `--max-conns` is reached
    /// (empty for protocols without text).
    pub fn server_full_reply(self) -> &'static [u8] {
        self.declaration().server_full
    }

    /// What a connection refused by the per-address limits is told (empty
    /// for protocols without text).
    pub fn too_many_from_address_reply(self) -> &'static [u8] {
        self.declaration().too_many_from_address
    }

    /// Whether its flow is request/reply (backpressure) rather than
    /// broadcast (slow-consumer drop).
    pub fn is_request_reply(self) -> bool {
        self.declaration().flow.is_request_reply()
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A protocol name that is not one the server knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown protocol '{}' (expected ", self.0)?;
        for (i, p) in Protocol::EVERY.iter().enumerate() {
            let sep = match i {
                0 => "",
                i if i + 1 == Protocol::COUNT => " or ",
                _ => ", ",
            };
            write!(f, "{sep}{p}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownProtocol {}

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;
    fn from_str(s: &str) -> Result<Protocol, UnknownProtocol> {
        Protocol::EVERY
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownProtocol(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{CloseReason, Limit, Protocol};

    /// The registry's lists come from the declarations: the five served by
    /// default in the spec's order, every name parsed back to its protocol,
    /// every default port distinct.
    #[test]
    fn the_registry_lists_what_the_declarations_say() {
        let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["tne", "cmd", "chat", "upload", "transform"]);
        let mut ports = std::collections::HashSet::new();
        for (i, p) in Protocol::EVERY.into_iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
            assert!(ports.insert(p.default_port()), "{p}: port taken twice");
        }
        assert!(!Protocol::ALL.contains(&Protocol::Stats));
        assert!(!Protocol::ALL.contains(&Protocol::Echo));
    }

    /// The labels are the metrics' `reason` values, exactly, one each.
    #[test]
    fn close_reasons_have_the_metrics_labels() {
        let all = [
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::IdleTimeout,
            CloseReason::SendqExceeded,
            CloseReason::MemoryLimit,
            CloseReason::Error,
            CloseReason::Shutdown,
            CloseReason::Limit(Limit::MaxFiles),
            CloseReason::Finished,
        ];
        let labels: Vec<&str> = all.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels,
            [
                "peer",
                "reset",
                "idle",
                "slow_consumer",
                "memory",
                "error",
                "shutdown",
                "limit",
                "done"
            ]
        );
        assert_eq!(CloseReason::Limit(Limit::MaxUpload).label(), "limit");
        assert_eq!(CloseReason::PeerClosed.to_string(), "closed by peer");
        assert_eq!(CloseReason::Reset.to_string(), "reset by peer");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let other = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(CloseReason::of_io_error(&reset), CloseReason::Reset);
        assert_eq!(CloseReason::of_io_error(&pipe), CloseReason::Reset);
        assert_eq!(CloseReason::of_io_error(&other), CloseReason::Error);
    }
}
