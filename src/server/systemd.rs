//! systemd, done with a page of code instead of a crate: socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES`, each socket named after
//! its protocol by `FileDescriptorName=` in the `.socket` unit) and the
//! notify protocol (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`,
//! datagrams to `$NOTIFY_SOCKET`). Both are a few environment variables
//! and one `sendto`; `crate::sys` and std's unix sockets do it without
//! `sd-notify`/`listenfd` and their extra dependencies.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::config::{Protocol, UnknownProtocol};
use crate::sys::fd::{take_listen_fds, LISTEN_FDS_START};
use crate::sys::socket::{socket_kind, SocketKind};

/// A socket systemd passed in.
#[derive(Debug)]
pub enum Passed {
    /// A listening TCP socket.
    Tcp(Protocol, TcpListener),
    /// A bound UDP socket.
    Udp(Protocol, UdpSocket),
}

impl Passed {
    /// The protocol it serves.
    pub fn protocol(&self) -> Protocol {
        match self {
            Passed::Tcp(p, _) | Passed::Udp(p, _) => *p,
        }
    }

    /// Its bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Passed::Tcp(_, s) => s.local_addr(),
            Passed::Udp(_, s) => s.local_addr(),
        }
    }
}

/// Why the passed sockets cannot be served.
#[derive(Debug)]
pub enum ActivationError {
    /// A descriptor's name is not a protocol (and not only one protocol
    /// was named on the command line to give it to).
    Name(UnknownProtocol),
    /// A descriptor is neither a TCP listener nor a UDP socket, or cannot
    /// be examined.
    Socket(RawFd, io::Error),
    /// `LISTEN_FDS` is not a number.
    Count(String),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Name(e) => write!(f, "socket activation: {e}"),
            ActivationError::Socket(fd, e) => write!(f, "socket activation: descriptor {fd}: {e}"),
            ActivationError::Count(n) => write!(f, "socket activation: LISTEN_FDS={n}"),
        }
    }
}

impl std::error::Error for ActivationError {}

/// The sockets systemd passed to this process, if any (`LISTEN_PID` is
/// ours). The variables are removed from the environment, as
/// `sd_listen_fds(1)` does, so no child inherits them. Each socket serves
/// the protocol it is named after; one whose name is no protocol serves
/// `sole` (the one protocol named on the command line) if there is one,
/// else the protocol whose default port it is bound to. Call at start,
/// while the process is single-threaded.
pub fn passed_sockets(sole: Option<Protocol>) -> Result<Vec<Passed>, ActivationError> {
    let taken = take_listen_fds();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let taken = taken.map_err(ActivationError::Count)?;
    let mut names = names.split(':');
    let mut passed = Vec::new();
    for (fd, taken) in (LISTEN_FDS_START..).zip(taken) {
        let name = names.next().unwrap_or("");
        let owned = taken.map_err(|e| ActivationError::Socket(fd, e))?;
        let socket = adopt(fd, owned)?;
        let protocol = match (name.parse::<Protocol>(), sole) {
            (Ok(p), _) => p,
            (Err(_), Some(p)) => p,
            (Err(e), None) => by_default_port(&socket).ok_or(ActivationError::Name(e))?,
        };
        passed.push(match socket {
            Adopted::Tcp(s) => Passed::Tcp(protocol, s),
            Adopted::Udp(s) => Passed::Udp(protocol, s),
        });
    }
    Ok(passed)
}

/// The protocol whose default port `socket` is bound to: what a socket
/// unit that names none of its sockets (`FileDescriptorName=` unset, so
/// each is named after the unit) is taken to mean.
fn by_default_port(socket: &Adopted) -> Option<Protocol> {
    let port = match socket {
        Adopted::Tcp(s) => s.local_addr(),
        Adopted::Udp(s) => s.local_addr(),
    }
    .ok()?
    .port();
    Protocol::EVERY
        .into_iter()
        .find(|p| p.default_port() == port)
}

/// A passed socket, before it is known which protocol it serves.
enum Adopted {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The passed socket `fd` (owned as `owned`), as a nonblocking TCP
/// listener or UDP socket.
fn adopt(fd: RawFd, owned: OwnedFd) -> Result<Adopted, ActivationError> {
    let fail = |e| ActivationError::Socket(fd, e);
    match socket_kind(&owned).map_err(fail)? {
        SocketKind::Stream => {
            let socket = TcpListener::from(owned);
            socket.set_nonblocking(true).map_err(fail)?;
            Ok(Adopted::Tcp(socket))
        }
        SocketKind::Datagram => {
            let socket = UdpSocket::from(owned);
            socket.set_nonblocking(true).map_err(fail)?;
            Ok(Adopted::Udp(socket))
        }
        SocketKind::Other => Err(fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a TCP or UDP socket",
        ))),
    }
}

/// The notify socket of a `Type=notify` service, and its watchdog.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: std::os::unix::net::SocketAddr,
    /// Half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    pub watchdog_every: Option<Duration>,
}

/// How often `STATUS=` is sent.
pub const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for (a path, or `@name` in the
    /// abstract namespace), if any. The variables are removed from the
    /// environment.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let watchdog_pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .map_or(true, |pid| pid == std::process::id());
        let watchdog_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && watchdog_pid_ok)
            .map(|u| Duration::from_micros(u / 2));
        for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(var);
        }
        let path = path?;
        let bytes = path.as_encoded_bytes();
        let target = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Notifier {
            socket,
            target,
            watchdog_every,
        })
    }

    /// Sends `state` (`KEY=value` lines); a failure is logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.target) {
            log::debug!("notify systemd ({state:?}): {e}");
        }
    }

    /// How often the loop sends `STATUS=` (and `WATCHDOG=1`).
    pub fn tick_every(&self) -> Duration {
        self.watchdog_every
            .map_or(STATUS_EVERY, |w| w.min(STATUS_EVERY))
    }
}

/// A one-line `STATUS=` for `open` connections.
pub fn status_line(open: u64) -> String {
    format!("STATUS=serving, {open} connection(s) open")
}
