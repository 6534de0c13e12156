//! `onepoll-client tne [--udp] MSG...`: sends each MSG as a TNE20003
//! message, over TCP (all pipelined in one write, one line each) or UDP
//! (one datagram each, one at a time), and prints each reply. Exit code 1
//! if any reply is an error. See [`crate::proto::tne`] for the protocol.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};

use super::lines::{LineReader, MAX_REPLY_LINE};
use std::time::Duration;

use super::{ClientError, ClientOptions};
use crate::config::Protocol;
use crate::proto::tne::{ACK, ERROR, HEADER};

/// The usage of the subcommand.
pub const USAGE: &str = "tne [--udp] MSG...
  Sends each MSG (TNE20003: is added) over TCP, pipelined, or with --udp
  one datagram each, and prints each reply line.";

/// A reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TneReply {
    /// `TNE20003:A:<msg>`: the message, acknowledged.
    Ack(Vec<u8>),
    /// `TNE20003:E:<reason>`: refused, and why.
    Error(String),
}

impl TneReply {
    /// Parses a reply line (without LF) or datagram.
    pub fn parse(reply: &[u8]) -> Result<TneReply, ClientError> {
        if let Some(msg) = reply.strip_prefix(ACK) {
            Ok(TneReply::Ack(msg.to_vec()))
        } else if let Some(reason) = reply.strip_prefix(ERROR) {
            Ok(TneReply::Error(
                String::from_utf8_lossy(reason).into_owned(),
            ))
        } else {
            Err(ClientError::BadReply(
                String::from_utf8_lossy(reply).into_owned(),
            ))
        }
    }

    /// The reply as the server sent it (without line end).
    pub fn to_wire(&self) -> Vec<u8> {
        match self {
            TneReply::Ack(msg) => [ACK, msg].concat(),
            TneReply::Error(reason) => [ERROR, reason.as_bytes()].concat(),
        }
    }
}

/// Runs the subcommand with its arguments (after `tne`).
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    let (udp, messages) = match args.split_first() {
        Some((flag, rest)) if flag == "--udp" => (true, rest),
        _ => (false, args),
    };
    if messages.is_empty() {
        return Err(ClientError::Usage(format!("missing MSG\nUsage: {USAGE}")));
    }
    if let Some(flag) = messages.iter().find(|m| m.starts_with("--")) {
        return Err(ClientError::Usage(format!(
            "unknown option '{flag}' (--udp must come first)\nUsage: {USAGE}"
        )));
    }
    let replies = if udp {
        let mut client = TneUdpClient::connect(options)?;
        let mut replies = Vec::with_capacity(messages.len());
        for msg in messages {
            replies.push(client.request(msg.as_bytes())?);
        }
        replies
    } else {
        TneTcpClient::connect(options)?.exchange(messages)?
    };
    let mut stdout = std::io::stdout().lock();
    let mut errors = 0;
    for reply in &replies {
        stdout.write_all(&reply.to_wire())?;
        stdout.write_all(b"\n")?;
        errors += usize::from(matches!(reply, TneReply::Error(_)));
    }
    stdout.flush()?;
    if errors > 0 {
        return Err(ClientError::ServerError(format!(
            "{errors} of {} messages refused",
            replies.len()
        )));
    }
    Ok(())
}

/// A tne connection over TCP.
pub struct TneTcpClient {
    stream: TcpStream,
    reader: LineReader<TcpStream>,
}

impl TneTcpClient {
    /// Connects to the server `options` name (default port 20003).
    pub fn connect(options: &ClientOptions) -> Result<TneTcpClient, ClientError> {
        let stream = super::connect(options, Protocol::Tne.default_port())?;
        let reader = LineReader::new(stream.try_clone()?, MAX_REPLY_LINE);
        Ok(TneTcpClient { stream, reader })
    }

    /// Sends every message (`TNE20003:` is prepended) in one write, then
    /// reads one reply per message, in order. A message with an LF cannot
    /// be one line and is refused before anything is sent.
    pub fn exchange<M: AsRef<[u8]>>(
        &mut self,
        messages: &[M],
    ) -> Result<Vec<TneReply>, ClientError> {
        let mut batch = Vec::new();
        for msg in messages {
            let msg = msg.as_ref();
            if msg.contains(&b'\n') {
                return Err(ClientError::Usage(
                    "a message sent over TCP cannot contain LF".into(),
                ));
            }
            batch.extend_from_slice(HEADER);
            batch.extend_from_slice(msg);
            batch.push(b'\n');
        }
        self.stream.write_all(&batch)?;
        messages
            .iter()
            .map(|_| TneReply::parse(&self.reader.read_line()?))
            .collect()
    }
}

/// A tne "connection" over UDP: a socket connected to the server, so only
/// its datagrams are received.
///
/// A host may resolve to several addresses (`localhost`: `::1` and
/// `127.0.0.1`) and UDP cannot tell in advance which one a server listens
/// on; an address that answers with ICMP "port unreachable" (seen as
/// `ConnectionRefused`) is dropped for the next one, and the message resent.
pub struct TneUdpClient {
    socket: UdpSocket,
    /// Addresses not yet tried, in reverse resolver order.
    untried: Vec<SocketAddr>,
    /// How long each reply is awaited.
    timeout: Duration,
}

impl TneUdpClient {
    /// Resolves the server `options` name (default port 20003) and opens a
    /// socket towards its first address; each reply is awaited
    /// `options.timeout`.
    pub fn connect(options: &ClientOptions) -> Result<TneUdpClient, ClientError> {
        let port = options.port.unwrap_or(Protocol::Tne.default_port());
        let target = format!("{}:{port}", options.host);
        let connect_error = |source| ClientError::Connect {
            target: target.clone(),
            source,
        };
        let mut untried: Vec<SocketAddr> = (options.host.as_str(), port)
            .to_socket_addrs()
            .map_err(connect_error)?
            .collect();
        untried.reverse();
        let first = untried.pop().ok_or_else(|| {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address found",
            ))
        })?;
        let socket = open(first, options.timeout).map_err(connect_error)?;
        Ok(TneUdpClient {
            socket,
            untried,
            timeout: options.timeout,
        })
    }

    /// Sends `TNE20003:<msg>` as one datagram and waits for the reply.
    /// Datagrams are not retried: a lost request or reply is a
    /// [`ClientError::Timeout`].
    pub fn request(&mut self, msg: &[u8]) -> Result<TneReply, ClientError> {
        let datagram = [HEADER, msg].concat();
        let mut buf = vec![0u8; 65_536];
        loop {
            let sent = self
                .socket
                .send(&datagram)
                .and_then(|_| self.socket.recv(&mut buf));
            match sent {
                Ok(n) => return TneReply::parse(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let Some(next) = self.untried.pop() else {
                        return Err(ClientError::Io(e));
                    };
                    self.socket = open(next, self.timeout)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The server address in use.
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.peer_addr()
    }
}

/// A UDP socket of `addr`'s family connected to `addr`.
fn open(addr: SocketAddr, timeout: Duration) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_print_back_as_sent() {
        for wire in [&b"TNE20003:A:hi there"[..], b"TNE20003:E:empty message"] {
            assert_eq!(TneReply::parse(wire).unwrap().to_wire(), wire);
        }
        assert_eq!(
            TneReply::parse(b"TNE20003:A:x").unwrap(),
            TneReply::Ack(b"x".to_vec())
        );
        assert!(matches!(
            TneReply::parse(b"hello"),
            Err(ClientError::BadReply(_))
        ));
    }
}

#[cfg(test)]
mod over_sockets {
    use super::*;
    use crate::proto::testing::{serve_one_tcp, serve_one_udp};
    use crate::proto::tne::TneSession;

    fn local(addr: SocketAddr) -> ClientOptions {
        ClientOptions {
            port: Some(addr.port()),
            ..ClientOptions::new("127.0.0.1")
        }
    }

    #[test]
    fn pipelined_tcp_messages_get_their_replies_in_order() {
        let addr = serve_one_tcp(|| TneSession::new(8192));
        let mut client = TneTcpClient::connect(&local(addr)).unwrap();
        let replies = client.exchange(&["one", "", "three"]).unwrap();
        assert_eq!(
            replies,
            [
                TneReply::Ack(b"one".to_vec()),
                TneReply::Error("empty message".into()),
                TneReply::Ack(b"three".to_vec()),
            ]
        );
    }

    #[test]
    fn a_message_with_lf_is_refused_before_sending() {
        let addr = serve_one_tcp(|| TneSession::new(8192));
        let mut client = TneTcpClient::connect(&local(addr)).unwrap();
        assert!(matches!(
            client.exchange(&["a\nb"]),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn a_udp_message_gets_one_reply_datagram() {
        let addr = serve_one_udp();
        let mut client = TneUdpClient::connect(&local(addr)).unwrap();
        assert_eq!(
            client.request(b"hi").unwrap(),
            TneReply::Ack(b"hi".to_vec())
        );
    }

    #[test]
    fn a_refused_udp_address_moves_on_to_the_next() {
        let addr = serve_one_udp();
        let dead = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let mut client = TneUdpClient {
            socket: open(dead_addr, super::super::TIMEOUT).unwrap(),
            untried: vec![addr],
            timeout: super::super::TIMEOUT,
        };
        assert_eq!(client.request(b"x").unwrap(), TneReply::Ack(b"x".to_vec()));
        assert_eq!(client.peer_addr().unwrap(), addr);
    }
}
