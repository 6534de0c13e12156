//! # onepoll
//!
//! One `mio::Poll` loop on one thread serving five socket protocols — tne,
//! cmd, chat, upload and transform — plus the clients and the load generator
//! that go with them. `docs/PROTOCOLS.md` describes every protocol for
//! users; this crate documents each protocol for implementers, in its
//! module.
//!
//! ## The layers
//!
//! - [`proto`] — the protocol cores, **sans-IO**. Each is a state machine
//!   per connection that takes the bytes a read returned and appends replies
//!   to an [`proto::Output`] queue; it never touches a socket, a clock or a
//!   timer, and is tested byte by byte on its own. Each protocol declares
//!   itself once, in its module ([`proto::Declaration`]: name, port,
//!   transport, refusal replies, flow and pacing policies), and the
//!   registry in [`proto`] lists it on one line. [`proto::echo`] is the
//!   smallest; [`proto::transform`] is the binary pipelined protocol.
//! - [`server`] — the event loop and what it owns: listeners, the slab of
//!   connections, idle and close timers, signals, limits. It does the
//!   socket I/O and routes what the cores ask for; it knows protocols only
//!   by their declarations, never by name (`tests/layering.rs`). The loop
//!   is split into parts, one job each ([`server::event_loop`]).
//! - [`stores`] — the file-system back-ends of the cores' storage traits
//!   (upload's directory), attached at start.
//!
//! Layering: `proto` imports nothing of `server`, `stores` or the OS
//! (`mio`, `std::fs`, `libc`); `server` uses `proto` and `stores`; only
//! `sys` has `unsafe`.
//! - [`config`] and [`cli`] — every limit in one struct, and the command
//!   line that fills it.
//! - [`sys`] — the operating system as small safe functions; the only
//!   module with `unsafe`.
//! - [`client`] — the client side of each protocol, used by
//!   `onepoll-client`.
//! - [`bench`](mod@bench) — the load generator `onepoll-bench`: one mio loop driving
//!   many connections of any protocol, every reply checked.
//!
//! ## The loop's invariants
//!
//! Written once here; the code in [`server`] relies on them.
//!
//! 1. **Readiness is edge-triggered.** After an event, a socket is read
//!    until `WouldBlock` or a short read (fewer bytes than asked for: the
//!    kernel had no more, and new data raises a new edge), or until the loop
//!    chooses to stop (backpressure, or a session that wants another turn
//!    for work of its own, such as a large shuffle done in slices), in which
//!    case it remembers to resume without waiting for an event.
//! 2. **Writes happen once per wake-up.** Cores queue replies; a
//!    request/reply connection is flushed with one `write`/`writev` right
//!    after its input is processed (its replies go into a reply output the
//!    loop lends it for that turn and takes back once drained, as the read
//!    buffer is shared), a broadcast member (chat) once every event of the
//!    wake-up is handled (so deliveries from every sender join one write).
//!    A long flush (a group's fan-out) polls again every 64 connections and handles what
//!    arrived, so new input joins the writes not yet made; a connection
//!    already flushed that it touches is written once more at the end of
//!    the wake-up, no more. Writable
//!    interest is registered the first time bytes are left over, and kept
//!    (edge-triggered, the kernel raises it only after a write found the
//!    socket full): a request/reply exchange costs one read and one write,
//!    no `epoll_ctl`. After a short write or `WouldBlock`, nothing is
//!    written until the socket is reported writable.
//! 3. **Events are hints.** A spurious event costs one `WouldBlock`. Closes
//!    are deferred to the flush at the end of the wake-up, and a poll's
//!    events (the flush's own polls too) are all handled before the flush
//!    goes on, so a slab key is never reused while events for its previous
//!    owner may still be in hand.
//! 4. **Every byte of buffering is bounded**: carried input by the cores'
//!    limits (`--max-line`), output by backpressure (1 MiB) or the
//!    slow-consumer limit (`--max-sendq`), held messages by `--max-buffer`
//!    (charged as their data arrives), connections by `--max-conns`; and
//!    all of it together by `--max-memory` (`server::memory_budget`, counted
//!    once per touched connection per wake-up, at its flush: the biggest
//!    holders are closed). An idle connection owns no heap buffer.
//! 5. **Nothing is lost on close.** A peer's EOF still gets every reply it is
//!    owed; a close the server starts shuts the write side first and drains
//!    input briefly, so the last reply is not destroyed by a reset.

#![warn(missing_docs)]
// Every `unsafe` of the crate is in `sys`, each with its SAFETY note.
#![deny(unsafe_code)]
// No panic reachable from input: outside tests the library may not
// unwrap, expect, index or slice unchecked, or call panic!/unreachable!.
// Slices are taken with `get` or `proto::prefix::split_at_most`.
// Exceptions, each marked with an #[allow] where it stands:
// - bench::stats: a histogram built from constant bounds the crate accepts.
// - server::faults::poison (`fault-injection` builds only): the deliberate
//   panic that tests/faults.rs proves is contained.
// A panic that slips through anyway is contained to its connection
// (server::conn, `with_session`).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod proto;
pub mod server;
pub mod stores;
#[allow(unsafe_code)]
pub mod sys;
