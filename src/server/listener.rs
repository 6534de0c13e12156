//! Listening sockets, and accepting when descriptors run out.
//!
//! Accept errors fall in three classes, named by [`AcceptError`]:
//! the peer's own trouble (it reset before we accepted: try the next one),
//! descriptor exhaustion (EMFILE/ENFILE), and anything else (back off).
//!
//! Descriptor exhaustion is the classic trap of readiness loops: the
//! pending connection stays in the backlog, the listener stays readable, and
//! the loop spins. The cure used here is libuv's reserve descriptor: the
//! server keeps one spare descriptor open; when accept fails for lack of
//! descriptors it closes the spare, accepts the waiting peer and closes it at
//! once (the peer sees its connection end instead of hanging in the
//! backlog), then reopens the spare. The backlog drains, nothing spins, the
//! connections already open are served as before, and accepting works again
//! as soon as descriptors free up. Should the spare itself be lost, the loop
//! falls back to pausing accepts briefly (nginx's cure).

use std::fs::File;
use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;

use crate::config::Protocol;
use crate::sys;

/// The accept backlog asked for; Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 65_535;

/// A bound TCP listener of one protocol.
pub struct Listener {
    /// The protocol its connections speak.
    pub protocol: Protocol,
    /// The socket.
    pub socket: TcpListener,
    /// The address it is bound to, with the real port.
    pub addr: SocketAddr,
    /// Accepted sockets come with TCP_NODELAY already set (Linux copies it
    /// from the listener): no `setsockopt` per connection.
    pub nodelay_inherited: bool,
}

impl Listener {
    /// Binds `protocol` on `addr` (port 0: the OS picks one).
    pub fn bind(protocol: Protocol, addr: SocketAddr) -> io::Result<Listener> {
        let socket = TcpListener::bind(addr)?;
        // mio listens with std's backlog of 128. A burst of a few hundred
        // connects overflows it, and Linux then falls back to SYN cookies
        // and retransmitted handshakes: clients waited seconds and the
        // soak's 400-connection flood saw misframed streams. Listening
        // again raises the backlog; the kernel caps it at
        // net.core.somaxconn, so the administrator's setting rules.
        sys::socket::listen(&socket, LISTEN_BACKLOG)?;
        let addr = socket.local_addr()?;
        Ok(Listener {
            protocol,
            nodelay_inherited: set_inherited_nodelay(&socket),
            socket,
            addr,
        })
    }

    /// Accepts one waiting connection. Under the `fault-injection`
    /// feature, the schedule may first answer with an error instead
    /// (see `server::faults`, built with the `fault-injection` feature).
    #[inline]
    pub fn accept(&self) -> io::Result<(mio::net::TcpStream, SocketAddr)> {
        #[cfg(feature = "fault-injection")]
        if let Some(e) = super::faults::accept_fault() {
            return Err(e);
        }
        self.socket.accept()
    }
}

/// Sets TCP_NODELAY on a listener so that every accepted socket is born
/// with it: replies are small and must leave at once, and setting it here
/// saves one `setsockopt` per connection (one syscall in nine of a
/// connect-request-close). Linux copies the option to accepted sockets;
/// elsewhere this returns false and the loop sets it per connection.
fn set_inherited_nodelay(socket: &TcpListener) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    sys::socket::set_nodelay(socket).is_ok()
}

/// How an accept failed, as far as the loop cares.
#[derive(Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// Nothing left to accept.
    WouldBlock,
    /// A signal interrupted the call: retry.
    Interrupted,
    /// The waiting peer's own failure (reset, aborted): try the next one.
    PeerGone,
    /// EMFILE or ENFILE: no descriptor for the new socket.
    OutOfDescriptors,
    /// Anything else (ENOBUFS, ENOMEM...): back off.
    Other,
}

impl AcceptError {
    /// Classifies an error returned by `accept`.
    pub fn classify(e: &io::Error) -> AcceptError {
        match e.kind() {
            io::ErrorKind::WouldBlock => return AcceptError::WouldBlock,
            io::ErrorKind::Interrupted => return AcceptError::Interrupted,
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {
                return AcceptError::PeerGone
            }
            _ => {}
        }
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => AcceptError::OutOfDescriptors,
            // Linux passes pending network errors of the new socket up
            // through accept; they belong to that peer alone.
            Some(
                libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT,
            ) => AcceptError::PeerGone,
            _ => AcceptError::Other,
        }
    }
}

/// What one round of shedding did.
#[derive(Debug, PartialEq, Eq)]
pub enum Shed {
    /// A waiting peer was accepted and closed: there may be more.
    Refused,
    /// Nobody was waiting: stop accepting until the next readiness event.
    BacklogEmpty,
    /// There was no spare descriptor to free: pause accepting instead.
    NoSpare,
}

/// The spare descriptor kept for shedding connections when descriptors
/// run out.
pub struct ReserveFd {
    spare: Option<File>,
}

impl ReserveFd {
    /// Opens the spare descriptor.
    pub fn new() -> ReserveFd {
        ReserveFd {
            spare: File::open("/dev/null").ok(),
        }
    }

    /// Frees the spare, accepts and closes one waiting peer, and takes the
    /// spare back.
    ///
    /// Linux reports EMFILE before it looks at the backlog, so an EMFILE
    /// does not mean anyone is waiting: the outcome says whether the dance
    /// found a peer (accept on) or an empty backlog (stop until the next
    /// edge).
    pub fn shed_one(&mut self, listener: &TcpListener) -> Shed {
        let Some(spare) = self.spare.take() else {
            self.spare = File::open("/dev/null").ok();
            return Shed::NoSpare;
        };
        drop(spare);
        let outcome = match listener.accept() {
            Ok((stream, _)) => {
                drop(stream);
                Shed::Refused
            }
            Err(e) if AcceptError::classify(&e) == AcceptError::WouldBlock => Shed::BacklogEmpty,
            // Another failure (the peer's own, say): keep going.
            Err(_) => Shed::Refused,
        };
        self.spare = File::open("/dev/null").ok();
        outcome
    }
}

impl Default for ReserveFd {
    fn default() -> ReserveFd {
        ReserveFd::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a connection accepted from `listener` has TCP_NODELAY set:
    /// inherited, or set by the loop when it is not (see `admit`).
    #[test]
    fn accepted_sockets_inherit_nodelay_where_the_listener_says_so() {
        let listener = Listener::bind(Protocol::Transform, "127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = std::net::TcpStream::connect(listener.addr).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (stream, _) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert_eq!(listener.nodelay_inherited, cfg!(target_os = "linux"));
        if listener.nodelay_inherited {
            assert!(stream.nodelay().unwrap());
        }
    }

    #[test]
    fn accept_errors_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            AcceptError::classify(&os(libc::EMFILE)),
            AcceptError::OutOfDescriptors
        );
        assert_eq!(
            AcceptError::classify(&os(libc::ENFILE)),
            AcceptError::OutOfDescriptors
        );
        assert_eq!(
            AcceptError::classify(&os(libc::ECONNABORTED)),
            AcceptError::PeerGone
        );
        assert_eq!(
            AcceptError::classify(&os(libc::EAGAIN)),
            AcceptError::WouldBlock
        );
        assert_eq!(
            AcceptError::classify(&os(libc::EINTR)),
            AcceptError::Interrupted
        );
        assert_eq!(
            AcceptError::classify(&os(libc::ENOBUFS)),
            AcceptError::Other
        );
    }
}
