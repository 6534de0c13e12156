//! Sockets the attacks need and std does not give: a TCP connect from a
//! chosen source address (bind before connect, so one machine acts as many
//! addresses of 127.0.0.0/8), an abortive close (no TIME_WAIT left behind
//! by a churn), and a look at a socket's TCP state (to tell a connection the
//! server closed from one it holds, without reading what it sent).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::sys;

/// Source addresses handed out in turn: `per_addr` connections from each,
/// starting at `first`, never 127.0.0.1 (the bystander's) nor the /8's
/// broadcast address.
#[derive(Clone, Debug)]
pub struct Sources {
    first: Ipv4Addr,
    current: u32,
    used: usize,
    per_addr: usize,
    /// Distinct addresses handed out so far.
    pub addresses: usize,
}

impl Sources {
    /// Starts at `first`, `per_addr` (at least 1) connections per address.
    pub fn new(first: Ipv4Addr, per_addr: usize) -> Sources {
        Sources {
            first,
            current: u32::from(first),
            used: 0,
            per_addr: per_addr.max(1),
            addresses: 0,
        }
    }

    /// The source of the next connection.
    pub fn next_addr(&mut self) -> Ipv4Addr {
        if self.used >= self.per_addr {
            self.used = 0;
            self.current = self.current.wrapping_add(1);
            let ip = Ipv4Addr::from(self.current);
            if !ip.is_loopback() || ip == Ipv4Addr::new(127, 255, 255, 255) {
                self.current = u32::from(Ipv4Addr::new(127, 0, 0, 2));
            }
            if self.current == u32::from(Ipv4Addr::LOCALHOST) {
                self.current += 1;
            }
        }
        if self.used == 0 {
            self.addresses += 1;
        }
        self.used += 1;
        Ipv4Addr::from(self.current)
    }

    /// The address after the ones handed out so far (for a role that
    /// wants an address of its own).
    pub fn fresh(&self) -> Sources {
        let mut s = Sources::new(self.first, self.per_addr);
        s.current = self.current.wrapping_add(1);
        if s.current == u32::from(Ipv4Addr::LOCALHOST) || !Ipv4Addr::from(s.current).is_loopback() {
            s.current = u32::from(Ipv4Addr::new(127, 0, 0, 2));
        }
        s
    }
}

/// A TCP socket bound to `src` (any port: the kernel picks one at connect
/// time, per destination) and connecting to `dst`; nonblocking unless
/// `timeout` is given, in which case the connect blocks for at most that
/// long.
fn open(
    src: Option<Ipv4Addr>,
    dst: SocketAddrV4,
    timeout: Option<Duration>,
) -> io::Result<OwnedFd> {
    let flags = match timeout {
        Some(_) => SocketFlags::CLOEXEC,
        None => SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
    };
    let fd = rustix::net::socket_with(AddressFamily::INET, SocketType::STREAM, flags, None)?;
    if let Some(src) = src {
        sys::socket::set_bind_address_no_port(&fd)?;
        rustix::net::bind(&fd, &SocketAddrV4::new(src, 0))?;
    }
    if let Some(t) = timeout {
        sys::socket::set_send_timeout(&fd, t)?;
    }
    match rustix::net::connect(&fd, &dst) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::INPROGRESS) if timeout.is_none() => Ok(fd),
        Err(e) => Err(e.into()),
    }
}

/// Starts a nonblocking connect from `src` to `dst`.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<mio::net::TcpStream> {
    let fd = open(Some(src), dst, None)?;
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// Connects from `src` (or the kernel's choice) to `dst`, waiting at most
/// `timeout`; the stream is blocking, with no-delay set.
pub fn connect_blocking(
    src: Option<Ipv4Addr>,
    dst: SocketAddrV4,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::from(open(src, dst, Some(timeout))?);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a nonblocking connect has finished: `Ok(true)` connected,
/// `Ok(false)` still in progress, `Err` failed.
pub fn connected(sock: &mio::net::TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the socket's close an abortive one (RST, no TIME_WAIT), as a
/// churning attacker would, so that a churn does not run out of ports.
pub fn set_abortive(fd: &impl AsFd) -> io::Result<()> {
    sys::socket::set_abortive_close(fd)
}

/// Where a client socket stands, from the kernel's TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Open both ways.
    Open,
    /// The server closed (FIN or reset), whatever is left unread.
    ClosedByServer,
    /// The connect has not finished.
    Connecting,
    /// Any other state.
    Other,
}

/// The TCP state of `fd` (`TCP_INFO`'s first byte).
pub fn tcp_state(fd: &impl AsFd) -> TcpState {
    let Ok(state) = sys::socket::tcp_state(fd) else {
        return TcpState::Other;
    };
    // Linux's TCP states: 1 ESTABLISHED, 2 SYN_SENT, 7 CLOSE, 8 CLOSE_WAIT.
    match state {
        1 => TcpState::Open,
        2 => TcpState::Connecting,
        7 | 8 => TcpState::ClosedByServer,
        _ => TcpState::Other,
    }
}

/// Tallies of [`tcp_state`] over many sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCount {
    /// Open both ways.
    pub open: usize,
    /// Closed or reset by the server.
    pub closed: usize,
    /// Still connecting.
    pub connecting: usize,
    /// Anything else.
    pub other: usize,
}

impl StateCount {
    /// Counts the states of `socks`.
    pub fn of<'a, S: AsFd + 'a>(socks: impl IntoIterator<Item = &'a S>) -> StateCount {
        let mut c = StateCount::default();
        for s in socks {
            match tcp_state(s) {
                TcpState::Open => c.open += 1,
                TcpState::ClosedByServer => c.closed += 1,
                TcpState::Connecting => c.connecting += 1,
                TcpState::Other => c.other += 1,
            }
        }
        c
    }
}

/// The states of `socks` after a probe: each gets one LF (an empty line,
/// which chat ignores and cmd answers with an error), then, 200 ms later,
/// its TCP state is read. Without the probe a server's close can go
/// unseen: its FIN waits behind whatever the client has not read, while a
/// socket the server has closed answers the probe with a reset.
pub fn probe_states<'a>(
    socks: impl IntoIterator<Item = &'a mut mio::net::TcpStream>,
) -> StateCount {
    let socks: Vec<&mut mio::net::TcpStream> = socks.into_iter().collect();
    for s in &socks {
        // A full send buffer refuses it: the server's reset then comes for
        // what is queued already.
        let _ = io::Write::write(&mut &**s, b"\n");
    }
    std::thread::sleep(Duration::from_millis(200));
    StateCount::of(socks.iter().map(|s| &**s))
}

/// Raises this process's open-file limit to its hard limit (thousands of
/// connections need it); failures are ignored (the attack then opens what
/// it can and says so).
pub fn raise_fd_limit() {
    let (soft, hard) = sys::process::nofile_limit();
    if soft < hard {
        let _ = sys::process::set_nofile_limit(hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_hand_out_per_addr_connections_per_address() {
        let mut s = Sources::new(Ipv4Addr::new(127, 0, 0, 2), 2);
        let got: Vec<Ipv4Addr> = (0..5).map(|_| s.next_addr()).collect();
        assert_eq!(
            got,
            [
                [127, 0, 0, 2],
                [127, 0, 0, 2],
                [127, 0, 0, 3],
                [127, 0, 0, 3],
                [127, 0, 0, 4]
            ]
            .map(Ipv4Addr::from)
        );
        assert_eq!(s.addresses, 3);
        assert_eq!(s.fresh().next_addr(), Ipv4Addr::new(127, 0, 0, 5));
        let mut top = Sources::new(Ipv4Addr::new(127, 255, 255, 254), 1);
        top.next_addr();
        assert_eq!(top.next_addr(), Ipv4Addr::new(127, 0, 0, 2));
    }

    #[test]
    fn the_probe_sees_a_close_stuck_behind_unread_data() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dst) = listener.local_addr().unwrap() else {
            panic!("v4 listener");
        };
        let client = connect_blocking(None, dst, Duration::from_secs(5)).unwrap();
        client.set_nonblocking(true).unwrap();
        let mut client = mio::net::TcpStream::from_std(client);
        let (mut server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let chunk = [b'x'; 65536];
        let mut queued = 0;
        while queued < 64 << 20 {
            match server.write(&chunk) {
                Ok(n) => queued += n,
                Err(_) => break,
            }
        }
        drop(server);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            tcp_state(&client),
            TcpState::Open,
            "the FIN waits behind the data"
        );
        let seen = probe_states([&mut client]);
        assert_eq!((seen.closed, seen.open), (1, 0));
    }

    #[test]
    fn a_connect_from_another_loopback_address_is_seen_from_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dst) = listener.local_addr().unwrap() else {
            panic!("v4 listener");
        };
        let src = Ipv4Addr::new(127, 0, 0, 9);
        let s = connect_blocking(Some(src), dst, Duration::from_secs(5)).unwrap();
        let (peer, from) = listener.accept().unwrap();
        assert_eq!(from.ip(), std::net::IpAddr::V4(src));
        assert_eq!(tcp_state(&s), TcpState::Open);
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(tcp_state(&s), TcpState::ClosedByServer);
    }
}
