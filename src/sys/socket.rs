//! Socket calls that std does not have: `listen` with a backlog of our
//! choosing, a socket's type, and the options the server and the bench
//! set (no-delay, an abortive close, a source address without a port)
//! or read (the TCP state).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use rustix::net::{sockopt, SocketType};

/// Listens on the bound socket `fd` again with an accept backlog of
/// `backlog` (the kernel caps it at `net.core.somaxconn`).
pub fn listen(fd: impl AsFd, backlog: i32) -> io::Result<()> {
    Ok(rustix::net::listen(fd, backlog)?)
}

/// What kind of socket a descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_STREAM` (TCP, for an internet socket).
    Stream,
    /// `SOCK_DGRAM` (UDP, for an internet socket).
    Datagram,
    /// Anything else.
    Other,
}

/// The type of the socket `fd` (`SO_TYPE`); an error if `fd` is no socket.
pub fn socket_kind(fd: impl AsFd) -> io::Result<SocketKind> {
    Ok(match sockopt::socket_type(fd)? {
        SocketType::STREAM => SocketKind::Stream,
        SocketType::DGRAM => SocketKind::Datagram,
        _ => SocketKind::Other,
    })
}

/// Sets `TCP_NODELAY` on `fd`. On a listener, Linux copies it to every
/// socket accepted from it.
pub fn set_nodelay(fd: impl AsFd) -> io::Result<()> {
    Ok(sockopt::set_tcp_nodelay(fd, true)?)
}

/// `SO_LINGER` with a zero timeout: closing `fd` then sends a reset,
/// drops whatever is unsent and leaves no TIME_WAIT behind.
pub fn set_abortive_close(fd: impl AsFd) -> io::Result<()> {
    Ok(sockopt::set_socket_linger(fd, Some(Duration::ZERO))?)
}

/// `SO_SNDTIMEO`: a blocking send (or connect) on `fd` gives up after
/// `timeout`.
pub fn set_send_timeout(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    Ok(sockopt::set_socket_timeout(
        fd,
        sockopt::Timeout::Send,
        Some(timeout),
    )?)
}

/// `IP_BIND_ADDRESS_NO_PORT`: a bind to an address with port 0 leaves the
/// port to `connect`, which picks one per destination, so that many
/// connections from one address do not run out of ports at bind.
pub fn set_bind_address_no_port(fd: impl AsFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from
    // `one`, which lives on this stack frame for the whole call; the
    // descriptor is kept open by the borrow of `fd`. A bad descriptor or
    // option is an error return, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's TCP state of `fd` (`tcpi_state`, the first byte of
/// `TCP_INFO`: 1 ESTABLISHED, 2 SYN_SENT, 7 CLOSE, 8 CLOSE_WAIT, ...).
pub fn tcp_state(fd: impl AsFd) -> io::Result<u8> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is
    // `len` bytes long and lives for the whole call, and updates `len`
    // (also ours); the kernel truncates TCP_INFO to the length given. The
    // descriptor is kept open by the borrow of `fd`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    match (len, info.first()) {
        (1.., Some(&state)) => Ok(state),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "empty TCP_INFO")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_a_stream_with_a_larger_backlog_and_no_delay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listen(&l, 1024).unwrap();
        set_nodelay(&l).unwrap();
        assert_eq!(socket_kind(&l).unwrap(), SocketKind::Stream);
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(socket_kind(&u).unwrap(), SocketKind::Datagram);
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(tcp_state(&c).unwrap(), 1);
        set_abortive_close(&c).unwrap();
        set_send_timeout(&c, Duration::from_secs(1)).unwrap();
    }
}
