//! The event loop and everything it owns: listeners, the slab of
//! connections, deadlines and signals. It does the socket I/O; the protocol
//! cores in [`crate::proto`] are driven from here, and known only by their
//! declarations ([`crate::proto::Declaration`]: flow, pacing, transport,
//! refusal replies): no protocol is named in this module tree
//! (`tests/layering.rs` checks it).
//!
//! The loop, [`event_loop`], is `run` (the numbered steps of one wake-up)
//! and one part per job, each a file under `event_loop/`: `setup` (binding,
//! systemd's sockets), `accepting` (budget, descriptor exhaustion,
//! per-address admission), `datagrams`, `reading` (reading and feeding,
//! the fair-turn budgets, line pacing), `routing`, `flushing` (writes,
//! memory, close), `deadlines` and `shutdown`. What they use:
//!
//! - [`admission`]: the per-address limits (`--max-conns-per-ip`,
//!   `--conn-rate-per-ip`, `--exempt`), consulted at accept;
//! - [`event_loop`]: the loop, one wake-up at a time;
//! - [`conn`]: one connection, its buffers and lifecycle; its read path
//!   (`conn/reading.rs`) and write path (`conn/writing.rs`);
//! - [`datagram`]: UDP sockets, answered datagram by datagram;
//! - [`pacing`]: line pacing, a token bucket per client of a paced protocol;
//! - [`memory_budget`]: every client buffer together within `--max-memory`;
//! - `faults` (only with the `fault-injection` feature): a seam that
//!   injects I/O faults and panics on a seeded schedule, for tests;
//! - [`marks`]: the loop's own marks on a connection (its lists, a slow
//!   consumer, the memory charged);
//! - [`limits`]: fitting `--max-conns` to the descriptor limit;
//! - [`listener`]: listening sockets and accepting when descriptors run out;
//! - [`refusals`]: connections refused at accept, counted by reason and
//!   logged once a second;
//! - [`delivery`]: the sink routing delivers through (a message queued on
//!   its receiver, the slow-consumer rule at the push), and id to slab key;
//! - [`timers`]: idle and close deadlines, and the loop's clock;
//! - [`trace`]: `--trace`, a log line per wake-up and per event;
//! - [`metrics`]: the loop's counters and wake-up histogram;
//! - [`stats`]: the stats listener's reports (Prometheus, `INFO`);
//! - [`systemd`]: socket activation and the notify protocol;
//! - [`signals`]: SIGINT/SIGTERM as a poll event.

pub mod admission;
pub mod conn;
pub mod datagram;
pub mod delivery;
pub mod event_loop;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod limits;
pub mod listener;
pub mod marks;
pub mod memory_budget;
pub mod metrics;
pub mod pacing;
pub mod refusals;
pub mod signals;
pub mod stats;
pub mod systemd;
pub mod timers;
pub mod trace;

use std::fmt;
use std::io;
use std::net::SocketAddr;

pub use event_loop::Server;

use crate::config::Protocol;

/// Why the server could not start or had to stop.
#[derive(Debug)]
pub enum ServerError {
    /// A listener could not be bound.
    Bind {
        /// Its protocol.
        protocol: Protocol,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A protocol's file store cannot be created or prepared
    /// ([`crate::stores`]).
    Store(crate::stores::StoreError),
    /// The poll or the signal handlers could not be set up.
    Setup(io::Error),
    /// Waiting for events failed.
    Poll(io::Error),
    /// The sockets systemd passed cannot be served.
    Activation(systemd::ActivationError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind {
                protocol,
                addr,
                source,
            } => write!(f, "cannot listen for {protocol} on {addr}: {source}"),
            ServerError::Store(e) => write!(f, "{e}"),
            ServerError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
            ServerError::Poll(e) => write!(f, "event loop failed: {e}"),
            ServerError::Activation(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } => Some(source),
            ServerError::Store(e) => Some(e),
            ServerError::Setup(e) | ServerError::Poll(e) => Some(e),
            ServerError::Activation(e) => Some(e),
        }
    }
}
