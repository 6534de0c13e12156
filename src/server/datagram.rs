//! Datagram endpoints: the UDP side of a protocol that declares
//! [`Transport::TcpAndUdp`], served by the same loop and thread as every
//! TCP connection.
//!
//! A UDP socket is a listener kind of its own beside the TCP listeners: it
//! has no connections, no session and no idle timer. Each datagram is one
//! message, answered by the protocol's [`DatagramAnswer`] with one reply datagram to
//! its source address, never longer than 3 times the datagram (an error's
//! reason is cut to fit, and counted in [`DatagramCounts::cut`]).
//!
//! **Reading.** On readiness the endpoint receives datagrams until
//! `WouldBlock`, or until it chooses to stop: after [`DATAGRAMS_PER_WAKE`]
//! datagrams (so a flood cannot starve the TCP connections; the loop calls
//! again next wake-up without waiting for an event, since no new edge would
//! come), or while its reply queue is full (below). The loop's read buffer
//! is larger than any UDP payload, so a datagram is never truncated.
//!
//! **When a reply cannot be sent now** (`sendto` says `WouldBlock`: the
//! socket's send buffer is full), it is queued, in order, and the endpoint
//! asks for WRITABLE. The queue is bounded ([`MAX_PENDING_REPLIES`]); while
//! it is full the endpoint stops reading, so requests wait in the kernel's
//! receive buffer instead of being read and their replies dropped. If that
//! buffer overflows too, the kernel drops new datagrams (counted by the
//! system as UDP receive-buffer errors), which is UDP's own contract for an
//! overloaded receiver. On WRITABLE the queue is flushed and reading
//! resumes. A reply the kernel refuses outright (no route, message too big,
//! a firewall) is dropped, logged and counted; nothing is lost silently.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::config::Protocol;
use crate::proto::declare::DatagramAnswer;
use crate::proto::Transport;

use super::trace;

/// Reply datagrams held while the socket's send buffer is full.
pub const MAX_PENDING_REPLIES: usize = 64;

/// Datagrams answered per wake-up before the loop serves others.
pub const DATAGRAMS_PER_WAKE: usize = 256;

/// Consecutive receive errors (other than `WouldBlock`) after which the
/// endpoint stops reading for this wake-up, so a persistent error cannot
/// spin the loop.
const MAX_RECV_ERRORS: usize = 16;

/// The calls an endpoint makes on its socket (mio's [`UdpSocket`], or a
/// scripted fake in tests).
pub trait DatagramSocket {
    /// Receives one datagram: its length and source.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// Sends one datagram to `target`.
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, target)
    }
}

/// Why reading stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramStop {
    /// No more datagrams for now.
    Drained,
    /// This wake-up's budget is spent: call again next wake-up.
    Budget,
    /// Replies wait for room in the send buffer (the queue is full, or
    /// queued replies could not all be sent): reading resumes on WRITABLE.
    Blocked,
}

/// What an endpoint has done, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatagramCounts {
    /// Datagrams received.
    pub received: u64,
    /// Replies the kernel accepted.
    pub sent: u64,
    /// Replies that had to wait in the queue.
    pub queued: u64,
    /// Replies dropped on a send error other than `WouldBlock`.
    pub dropped: u64,
    /// Error replies whose reason was cut to stay within 3 times the
    /// datagram they answer (docs/PROTOCOLS.md; the metric
    /// `onepoll_udp_replies_cut_total`).
    pub cut: u64,
}

/// A UDP socket serving a protocol's datagrams.
pub struct DatagramEndpoint<S = UdpSocket> {
    /// The protocol it serves.
    pub protocol: Protocol,
    /// How the protocol answers a datagram (`None`: a protocol without
    /// datagrams, whose datagrams are dropped unanswered).
    answer: Option<DatagramAnswer>,
    /// The socket.
    pub socket: S,
    /// The bound address, with the real port.
    pub addr: SocketAddr,
    /// Replies waiting for room in the send buffer, oldest first.
    pending: VecDeque<(SocketAddr, Vec<u8>)>,
    /// The reply being built (reused).
    reply: Vec<u8>,
    /// WRITABLE is part of the registered interest.
    writable_interest: bool,
    /// Counters.
    pub counts: DatagramCounts,
}

impl DatagramEndpoint<UdpSocket> {
    /// Binds `protocol` on `addr`.
    pub fn bind(protocol: Protocol, addr: SocketAddr) -> io::Result<DatagramEndpoint> {
        let socket = UdpSocket::bind(addr)?;
        let addr = socket.local_addr()?;
        Ok(DatagramEndpoint::new(protocol, socket, addr))
    }

    /// Registers the socket, readable only.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.socket, token, Interest::READABLE)
    }

    /// Makes the registered interest match the queue: WRITABLE while
    /// replies wait.
    pub fn settle(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let want = !self.pending.is_empty();
        if want != self.writable_interest {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registry.reregister(&mut self.socket, token, interest)?;
            trace::interest(if want {
                "READABLE|WRITABLE"
            } else {
                "READABLE"
            });
            self.writable_interest = want;
        }
        Ok(())
    }

    /// Deregisters the socket before it is dropped.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.socket);
    }
}

impl<S: DatagramSocket> DatagramEndpoint<S> {
    /// An endpoint on a bound socket.
    pub fn new(protocol: Protocol, socket: S, addr: SocketAddr) -> DatagramEndpoint<S> {
        let answer = match protocol.declaration().transport {
            Transport::TcpAndUdp(answer) => Some(answer),
            Transport::Tcp => None,
        };
        DatagramEndpoint {
            protocol,
            answer,
            socket,
            addr,
            pending: VecDeque::new(),
            reply: Vec::new(),
            writable_interest: false,
            counts: DatagramCounts::default(),
        }
    }

    /// Replies waiting for room in the send buffer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Handles readiness (or a resume after [`DatagramStop::Budget`]):
    /// sends what the queue holds, then receives and answers datagrams into
    /// `scratch` (which must hold 65,536 bytes for no datagram to be
    /// truncated) with lines of at most `max_line` bytes.
    pub fn serve(&mut self, scratch: &mut [u8], max_line: usize) -> DatagramStop {
        if !self.flush() {
            return DatagramStop::Blocked;
        }
        let mut errors = 0;
        for _ in 0..DATAGRAMS_PER_WAKE {
            if self.pending.len() >= MAX_PENDING_REPLIES {
                return DatagramStop::Blocked;
            }
            let (n, from) = match self.socket.recv_from(scratch) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace::read_would_block();
                    return DatagramStop::Drained;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A pending ICMP error reported on the socket, say: it
                    // is consumed by this call; the next datagram may be
                    // fine.
                    log::debug!("{} udp {}: receive: {e}", self.protocol, self.addr);
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        return DatagramStop::Drained;
                    }
                    continue;
                }
            };
            errors = 0;
            trace::read(n, 0);
            self.counts.received += 1;
            let datagram = scratch.get(..n).unwrap_or_default();
            self.reply.clear();
            // A datagram that fills the buffer may have been cut short.
            let truncated = n >= scratch.len();
            let Some(answer) = self.answer else {
                continue;
            };
            if answer(datagram, truncated, max_line, &mut self.reply) {
                self.counts.cut += 1;
            }
            trace::answered(n, self.reply.len());
            if self.pending.is_empty() && self.send_now(from) {
                continue;
            }
            self.pending.push_back((from, self.reply.clone()));
            self.counts.queued += 1;
        }
        DatagramStop::Budget
    }

    /// Sends the reply in `self.reply` to `to`. False if the send buffer is
    /// full (the caller queues it); a reply the kernel refuses is dropped
    /// and counted.
    fn send_now(&mut self, to: SocketAddr) -> bool {
        loop {
            match self.socket.send_to(&self.reply, to) {
                Ok(n) => {
                    trace::wrote(n, self.reply.len());
                    self.counts.sent += 1;
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.note_dropped(to, &e);
                    return true;
                }
            }
        }
    }

    /// Sends queued replies in order until the queue is empty (true) or
    /// the send buffer is full again (false).
    pub fn flush(&mut self) -> bool {
        while let Some((to, reply)) = self.pending.front() {
            match self.socket.send_to(reply, *to) {
                Ok(n) => {
                    trace::wrote(n, reply.len());
                    self.counts.sent += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let to = *to;
                    self.note_dropped(to, &e);
                }
            }
            self.pending.pop_front();
        }
        self.pending = VecDeque::new();
        true
    }

    /// Drops every queued reply (the server is stopping); returns how many.
    pub fn discard_pending(&mut self) -> usize {
        let n = self.pending.len();
        self.counts.dropped += n as u64;
        self.pending = VecDeque::new();
        n
    }

    fn note_dropped(&mut self, to: SocketAddr, e: &io::Error) {
        self.counts.dropped += 1;
        if self.counts.dropped.is_power_of_two() {
            log::warn!(
                "{} udp {}: reply to {to} dropped: {e} ({} dropped so far)",
                self.protocol,
                self.addr,
                self.counts.dropped
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::net::Ipv4Addr;

    type Inbox = VecDeque<io::Result<(Vec<u8>, SocketAddr)>>;

    /// A socket that hands out scripted datagrams and accepts sends while
    /// it has room.
    #[derive(Default)]
    struct Fake {
        inbox: RefCell<Inbox>,
        sent: RefCell<Vec<(Vec<u8>, SocketAddr)>>,
        /// Sends accepted before `WouldBlock`.
        room: RefCell<usize>,
        refuse_sends: bool,
    }

    impl DatagramSocket for Fake {
        fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
            match self.inbox.borrow_mut().pop_front() {
                None => Err(io::ErrorKind::WouldBlock.into()),
                Some(Err(e)) => Err(e),
                Some(Ok((d, from))) => {
                    buf[..d.len()].copy_from_slice(&d);
                    Ok((d.len(), from))
                }
            }
        }
        fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
            if self.refuse_sends {
                return Err(io::Error::from_raw_os_error(libc::EHOSTUNREACH));
            }
            let mut room = self.room.borrow_mut();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            *room -= 1;
            self.sent.borrow_mut().push((buf.to_vec(), target));
            Ok(buf.len())
        }
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn endpoint(room: usize, datagrams: usize) -> DatagramEndpoint<Fake> {
        let fake = Fake {
            room: RefCell::new(room),
            ..Fake::default()
        };
        for i in 0..datagrams {
            fake.inbox
                .borrow_mut()
                .push_back(Ok((format!("TNE20003:m{i}").into_bytes(), peer(i as u16))));
        }
        DatagramEndpoint::new(Protocol::Tne, fake, peer(20003))
    }

    fn sent(e: &DatagramEndpoint<Fake>) -> Vec<(String, u16)> {
        e.socket
            .sent
            .borrow()
            .iter()
            .map(|(d, to)| (String::from_utf8_lossy(d).into_owned(), to.port()))
            .collect()
    }

    #[test]
    fn each_datagram_is_answered_to_its_source_until_would_block() {
        let mut e = endpoint(100, 3);
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(
            sent(&e),
            [
                ("TNE20003:A:m0".to_string(), 0),
                ("TNE20003:A:m1".to_string(), 1),
                ("TNE20003:A:m2".to_string(), 2)
            ]
        );
        assert_eq!(e.counts.received, 3);
    }

    #[test]
    fn replies_wait_in_order_while_the_send_buffer_is_full() {
        let mut e = endpoint(1, 3);
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(e.pending(), 2);
        assert_eq!(e.counts.queued, 2);
        *e.socket.room.borrow_mut() = 10;
        assert!(e.flush());
        let ports: Vec<u16> = sent(&e).iter().map(|(_, p)| *p).collect();
        assert_eq!(ports, [0, 1, 2]);
        assert_eq!(e.counts.dropped, 0);
    }

    #[test]
    fn a_full_queue_stops_reading_and_loses_nothing() {
        let total = MAX_PENDING_REPLIES + 10;
        let mut e = endpoint(0, total);
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Blocked);
        assert_eq!(e.pending(), MAX_PENDING_REPLIES);
        assert_eq!(e.socket.inbox.borrow().len(), 10, "the rest stay unread");
        // Still no room: reading does not resume.
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Blocked);
        *e.socket.room.borrow_mut() = usize::MAX;
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(sent(&e).len(), total);
        assert_eq!(e.counts.dropped, 0);
    }

    #[test]
    fn a_burst_larger_than_the_budget_is_resumed_next_wake_up() {
        let mut e = endpoint(usize::MAX, DATAGRAMS_PER_WAKE + 1);
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Budget);
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(sent(&e).len(), DATAGRAMS_PER_WAKE + 1);
    }

    #[test]
    fn a_short_datagram_gets_a_cut_reply_and_is_counted() {
        let mut e = endpoint(10, 0);
        for d in [&b"x"[..], b"", b"TNE20003:ok", b"nope-nope-nope"] {
            e.socket
                .inbox
                .borrow_mut()
                .push_back(Ok((d.to_vec(), peer(9))));
        }
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        let replies: Vec<String> = sent(&e).into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            replies,
            [
                "TNE20003:E:",
                "TNE20003:E:",
                "TNE20003:A:ok",
                "TNE20003:E:missing TNE20003 header"
            ]
        );
        assert_eq!(e.counts.cut, 2);
    }

    #[test]
    fn a_refused_reply_is_dropped_and_counted() {
        let mut e = endpoint(10, 2);
        e.socket.refuse_sends = true;
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(e.counts.dropped, 2);
        assert_eq!(e.pending(), 0);
    }

    #[test]
    fn receive_errors_do_not_stop_the_drain_nor_spin() {
        let mut e = endpoint(10, 0);
        let refused = || Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        e.socket.inbox.borrow_mut().push_back(refused());
        e.socket
            .inbox
            .borrow_mut()
            .push_back(Ok((b"TNE20003:x".to_vec(), peer(7))));
        let mut scratch = vec![0; 65_536];
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(sent(&e), [("TNE20003:A:x".to_string(), 7)]);
        for _ in 0..100 {
            e.socket.inbox.borrow_mut().push_back(refused());
        }
        assert_eq!(e.serve(&mut scratch, 8192), DatagramStop::Drained);
        assert_eq!(
            e.socket.inbox.borrow().len(),
            100 - MAX_RECV_ERRORS,
            "stops after a bounded number of errors"
        );
    }
}
