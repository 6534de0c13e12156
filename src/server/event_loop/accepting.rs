//! Accepting: taking connections from the listeners within a per-wake-up
//! budget, through descriptor exhaustion (the reserve descriptor) and the
//! per-address admission, and refusing with the protocol's line.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream;
use mio::Token;

use crate::config::Protocol;
use crate::proto::{AnySession, Group, Pacing};
use crate::server::admission::{self, Admission, Refusal};
use crate::server::conn::Conn;
use crate::server::listener::{AcceptError, Listener, ReserveFd, Shed};
use crate::server::pacing::TokenBucket;
use crate::server::refusals::{RefusalLog, RefusalReason};
use crate::server::timers::TimerKind;
use crate::server::trace;

use super::{listener_token, Server};

/// Connections a listener accepts (or refuses) per wake-up. A flood of
/// connects keeps the backlog full: accepting until `WouldBlock` kept a
/// bystander's request waiting for seconds. The rest wait for the next
/// wake-up, after every other connection's turn.
const ACCEPTS_PER_WAKE: usize = 64;

/// Arrival notices a broadcast group's listener may queue per wake-up:
/// each connection accepted into a group is announced to every member, so
/// a listener whose group is large accepts as many as make this many
/// deliveries, and a join storm into a big group costs each wake-up a
/// bounded fan-out.
const ARRIVALS_FANOUT_PER_WAKE: usize = 16 * 1024;

/// The fewest a broadcast group's listener accepts per wake-up (while
/// peers wait), however large the group: after the accepts, the flush
/// writes every member, so the arrivals of one wake-up share that flush.
/// One arrival per wake-up would make filling a group of N members cost
/// N² writes (a room of 10,000 took minutes to fill).
const ARRIVALS_MIN_PER_WAKE: usize = 16;

/// How long accepting pauses after an accept error the reserve descriptor
/// cannot cure.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepting's state.
pub(super) struct Accepting {
    pub(super) listeners: Vec<Listener>,
    /// Listeners that stopped on `ACCEPTS_PER_WAKE`: accepted from again
    /// next wake-up without waiting for an event.
    pub(super) ready: Vec<usize>,
    /// The spare descriptor that lets a listener refuse when descriptors
    /// run out.
    pub(super) reserve: ReserveFd,
    /// Set while accepting is paused after an error: when to try again.
    pub(super) paused_until: Option<u64>,
    /// The per-address limits, consulted at accept and told at close.
    pub(super) admission: Admission,
    /// Connections refused at accept: counters, and their log line.
    pub(super) refusals: RefusalLog,
    /// The id of the next connection (never reused).
    pub(super) next_id: u64,
}

impl Server {
    /// Accepts on listener `index` until `WouldBlock`, or until
    /// [`ACCEPTS_PER_WAKE`] connections were taken (or shed; fewer into a
    /// large broadcast group, see [`ARRIVALS_FANOUT_PER_WAKE`]): then it
    /// is listed to go on next wake-up.
    pub(super) fn accept_all(&mut self, index: usize) {
        if self.shutdown_at.is_some() || self.accepting.paused_until.is_some() {
            return;
        }
        let accepts = match self.accepting.listeners.get(index) {
            Some(l) if !l.protocol.declaration().flow.is_request_reply() => {
                let members = self.shared.group().member_count();
                (ARRIVALS_FANOUT_PER_WAKE / members.max(1))
                    .clamp(ARRIVALS_MIN_PER_WAKE, ACCEPTS_PER_WAKE)
            }
            _ => ACCEPTS_PER_WAKE,
        };
        for _ in 0..accepts {
            let Some(listener) = self.accepting.listeners.get(index) else {
                return;
            };
            let (protocol, nodelay) = (listener.protocol, listener.nodelay_inherited);
            match listener.accept() {
                Ok((stream, peer)) => self.admit(protocol, stream, peer, nodelay),
                Err(e) => match AcceptError::classify(&e) {
                    AcceptError::WouldBlock => return trace::accept_would_block(),
                    AcceptError::Interrupted | AcceptError::PeerGone => {}
                    AcceptError::OutOfDescriptors => {
                        match self.accepting.reserve.shed_one(&listener.socket) {
                            Shed::Refused => {
                                let reason = RefusalReason::Descriptors;
                                self.metrics.refused(protocol, reason);
                                self.accepting.refusals.note(reason, None, self.clock.now);
                                self.report_refusals();
                            }
                            Shed::BacklogEmpty => return,
                            Shed::NoSpare => {
                                self.pause_accepting(&e);
                                return;
                            }
                        }
                    }
                    AcceptError::Other => {
                        self.pause_accepting(&e);
                        return;
                    }
                },
            }
        }
        if !self.accepting.ready.contains(&index) {
            self.accepting.ready.push(index);
        }
    }

    /// Accepts again on the listeners that stopped on their budget last
    /// wake-up.
    pub(super) fn resume_listeners(&mut self) {
        if self.accepting.ready.is_empty() {
            return;
        }
        for index in std::mem::take(&mut self.accepting.ready) {
            let _trace = trace::Scope::step("resume", || self.trace_name(listener_token(index)));
            self.accept_all(index);
        }
    }

    pub(super) fn pause_accepting(&mut self, e: &io::Error) {
        log::warn!("accept failed ({e}); pausing accepts for {ACCEPT_PAUSE:?}");
        self.accepting.paused_until = Some(self.clock.after(ACCEPT_PAUSE));
    }

    pub(super) fn resume_accepting(&mut self) {
        if let Some(at) = self.accepting.paused_until {
            if self.clock.now >= at {
                self.accepting.paused_until = None;
                for index in 0..self.accepting.listeners.len() {
                    let _trace =
                        trace::Scope::step("resume", || self.trace_name(listener_token(index)));
                    self.accept_all(index);
                }
            }
        }
    }

    /// Takes in an accepted connection (`nodelay`: the socket already has
    /// TCP_NODELAY from its listener).
    ///
    /// Refused at once, with the protocol's line where it has text:
    /// `--max-conns` open in all (`server full`), then the per-address
    /// limits ([`Admission`]: one hash lookup, none for an exempt
    /// address). An admitted connection is counted against its address
    /// until [`close`](Server::close).
    pub(super) fn admit(
        &mut self,
        protocol: Protocol,
        stream: TcpStream,
        peer: SocketAddr,
        nodelay: bool,
    ) {
        if self.conns.len() >= self.config.max_conns {
            let reply = protocol.server_full_reply();
            return self.refuse(protocol, RefusalReason::ServerFull, stream, peer, reply);
        }
        if let Err(why) = self.accepting.admission.admit(peer.ip(), self.clock.now) {
            let reason = match why {
                Refusal::PerAddress => RefusalReason::PerIp,
                Refusal::Rate => RefusalReason::Rate,
            };
            let reply = protocol.too_many_from_address_reply();
            return self.refuse(protocol, reason, stream, peer, reply);
        }
        if !nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                log::debug!("TCP_NODELAY on {peer}: {e}");
            }
        }
        // Notices of closes still to route go out first: this peer joins
        // after them.
        self.route();
        let id = self.accepting.next_id;
        self.accepting.next_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let session = AnySession::new(protocol, &mut self.shared);
        let mut conn = Conn::new(stream, peer, id, session, self.clock.now);
        if protocol.declaration().pacing == Pacing::Lines && self.reading.pacing.enabled() {
            conn.set_pacing_bucket(TokenBucket::full(self.reading.pacing, self.clock.now));
        }
        if let Err(e) = conn.register(self.poll.registry(), Token(key)) {
            log::warn!("cannot register connection from {peer}: {e}");
            self.accepting.admission.release(peer.ip(), self.clock.now);
            return;
        }
        entry.insert(conn);
        self.metrics.opened(protocol);
        trace::accepted();
        log::info!("open {protocol} #{id} from {peer}");
        if !protocol.declaration().flow.is_request_reply() {
            self.routing.index.insert(id, key);
        }
        let (_, conns, mut io, _) = self.io_parts();
        if let Some(conn) = conns.get_mut(key) {
            conn.open_session(&mut io);
        }
        self.route();
        self.queue_flush(key);
        if let Some(idle) = self.config.idle_timeout {
            self.deadlines
                .timers
                .arm(self.clock.after(idle), key, id, TimerKind::Idle);
        }
    }

    /// Closes a connection refused at accept (after `reply`, if any) and
    /// counts it; the count is logged once a second at most.
    pub(super) fn refuse(
        &mut self,
        protocol: Protocol,
        reason: RefusalReason,
        stream: TcpStream,
        peer: SocketAddr,
        reply: &[u8],
    ) {
        Conn::refuse(stream, reply, &mut self.reading.scratch);
        self.metrics.refused(protocol, reason);
        let ip = admission::canonical(peer.ip());
        self.accepting
            .refusals
            .note(reason, Some(ip), self.clock.now);
        self.report_refusals();
    }

    /// Logs the refusals not yet reported, if their line is due (see
    /// [`RefusalLog`]): a warning, so `-q` still shows it.
    pub(super) fn report_refusals(&mut self) {
        if let Some(report) = self
            .accepting
            .refusals
            .report(self.clock.now, self.conns.len())
        {
            log::warn!("{report}");
        }
    }
}
