//! What a protocol tells the loop about itself, once, in its own module:
//! a [`Declaration`] (name, default port, transport, refusal replies, flow
//! and pacing policies) and how to open a session ([`Declared`]).
//!
//! The loop reads these and nothing else: it never names a protocol. The
//! registry in [`crate::proto`] (`protocols!`) turns the list of declared
//! session types into [`Protocol`](super::Protocol) and
//! [`AnySession`](super::AnySession).

use super::{Session, Shared};

/// How a protocol answers a datagram (the UDP side of
/// [`Transport::TcpAndUdp`]): the reply goes into `reply` (cleared by the
/// caller); returns true if the reply was cut to bound amplification.
/// `truncated`: the datagram filled the receive buffer and may have been
/// cut short.
pub type DatagramAnswer =
    fn(datagram: &[u8], truncated: bool, max_line: usize, reply: &mut Vec<u8>) -> bool;

/// The sockets a protocol is served on.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// A TCP listener.
    Tcp,
    /// A TCP listener and a UDP socket on the same port number, each
    /// datagram answered by the function given.
    TcpAndUdp(DatagramAnswer),
}

/// How output flows to a protocol's connections, and what bounds it.
#[derive(Clone, Copy, Debug)]
pub enum Flow {
    /// Replies to one's own requests: a connection with more than
    /// `BACKPRESSURE_BYTES` unsent is not read until it drains
    /// (backpressure), and large replies are written as they grow.
    RequestReply,
    /// Members of a broadcast group receive each other's messages: no
    /// backpressure (a sender cannot wait for the slowest receiver); a
    /// receiver whose unsent output passes `--max-sendq` is dropped (a slow
    /// consumer), and a sender is read at most `read_allowance(max_sendq)`
    /// bytes per wake-up, so that one read relayed stays within a share of
    /// every receiver's queue.
    Broadcast {
        /// Bytes a member may be read per wake-up, for `--max-sendq`.
        read_allowance: fn(max_sendq: usize) -> usize,
    },
}

impl Flow {
    /// Whether this is [`Flow::RequestReply`].
    #[inline(always)]
    pub const fn is_request_reply(&self) -> bool {
        matches!(self, Flow::RequestReply)
    }
}

/// Whether the loop paces a protocol's input (`--chat-rate`,
/// `--chat-burst`: a token bucket per connection, one token per line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Read as fast as the client sends (within the fair-turn budgets).
    Unpaced,
    /// One line per token: the session consumes at most
    /// [`Session::line_allowance`] lines, the rest waits unconsumed, and the
    /// loop does not read the client again until a token is due.
    Lines,
}

/// A protocol's description of itself for the loop.
#[derive(Clone, Copy, Debug)]
pub struct Declaration {
    /// Its name on the command line, in logs and metrics labels.
    pub name: &'static str,
    /// The port it listens on unless told otherwise.
    pub default_port: u16,
    /// Served when no protocol is named on the command line (the five of
    /// the spec); `false`: served only when named (stats, echo).
    pub served_by_default: bool,
    /// Its sockets.
    pub transport: Transport,
    /// Said to a connection refused because `--max-conns` are open
    /// (empty: a protocol with no text to say it in).
    pub server_full: &'static [u8],
    /// Said to a connection refused by the per-address limits (empty: no
    /// text).
    pub too_many_from_address: &'static [u8],
    /// How its output flows.
    pub flow: Flow,
    /// Whether its input is paced.
    pub pacing: Pacing,
}

/// A session type the registry can hold: its declaration, and how a new
/// connection's session is made.
pub trait Declared: Session + Sized {
    /// The protocol's description of itself.
    const DECLARATION: Declaration;

    /// A fresh session for a new connection.
    fn open(shared: &mut Shared) -> Self;
}

/// Per-connection bookkeeping the loop keeps for a broadcast or paced
/// protocol, stored in its session (returned by
/// [`Session::loop_slots`]) so that only those connections pay for it: an
/// idle connection's size counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopSlots {
    /// Bytes read in the current wake-up, against the flow's read
    /// allowance.
    pub read_this_wake: u32,
    /// The pacing bucket's clock (low 32 bits of the loop's milliseconds).
    pub pacing_clock: u32,
}

/// A group of connections a broadcast reaches (chat's room is one): the
/// routing in [`super::effects`] knows groups only through this.
pub trait Group {
    /// Every member's connection id, in the order deliveries are made.
    fn members(&self) -> impl Iterator<Item = u64> + '_;

    /// How many members there are.
    fn member_count(&self) -> usize;
}
