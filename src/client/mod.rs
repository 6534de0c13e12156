//! The client side of each protocol, used by the `onepoll-client` binary:
//! options shared by every subcommand, the error type the binary turns into
//! an exit code, and connecting with a timeout.

pub mod chat;
pub mod cmd;
pub mod lines;
pub mod stats;
pub mod tne;
pub mod transform;
pub mod upload;

use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, and each wait for the server, may take, unless
/// `-t/--timeout` says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Options that come before the protocol name.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Server host name or address (`-h`, default `localhost`).
    pub host: String,
    /// Server port (`-p`); `None`: the protocol's default.
    pub port: Option<u16>,
    /// Print more detail (`-v`).
    pub verbose: bool,
    /// How long connecting, and each wait for a reply, may take (`-t`).
    pub timeout: Duration,
}

impl ClientOptions {
    /// Options for `host`, the protocol's port, the default timeout.
    pub fn new(host: impl Into<String>) -> ClientOptions {
        ClientOptions {
            host: host.into(),
            port: None,
            verbose: false,
            timeout: TIMEOUT,
        }
    }
}

/// A reply that did not come in time: what was waited for, and what came
/// instead. The subcommand that times out fills in `got`; the binary adds
/// where from and which protocol (see [`ClientError::waiting_on`]).
#[derive(Debug, Default)]
pub struct NoReply {
    /// `host:port` of the server.
    pub from: String,
    /// The protocol whose reply was awaited.
    pub protocol: String,
    /// How long it was awaited.
    pub after: Duration,
    /// The bytes that came instead (not a whole reply), if any.
    pub got: Vec<u8>,
}

impl fmt::Display for NoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.after.as_secs_f64();
        let from = if self.from.is_empty() {
            "the server"
        } else {
            &self.from
        };
        if secs.fract() == 0.0 {
            write!(f, "no reply from {from} in {secs} s")?;
        } else {
            write!(f, "no reply from {from} in {secs:.1} s")?;
        }
        if !self.protocol.is_empty() {
            write!(f, " \u{2014} is it serving {}?", self.protocol)?;
        }
        if self.got.is_empty() {
            f.write_str(" (nothing came back)")
        } else {
            const SHOWN: usize = 48;
            let shown = self.got.get(..SHOWN).unwrap_or(&self.got);
            write!(
                f,
                " (got {} byte{} that make no whole reply: \"{}\"{})",
                self.got.len(),
                if self.got.len() == 1 { "" } else { "s" },
                shown.escape_ascii(),
                if self.got.len() > SHOWN { "..." } else { "" }
            )
        }
    }
}

/// Why a client run failed.
#[derive(Debug)]
pub enum ClientError {
    /// The command line is wrong: exit code 2.
    Usage(String),
    /// The server cannot be reached.
    Connect {
        /// `host:port` tried.
        target: String,
        /// What the OS said.
        source: io::Error,
    },
    /// Reading or writing failed mid-exchange.
    Io(io::Error),
    /// The server did not answer within the timeout.
    Timeout(Box<NoReply>),
    /// The server closed the connection before answering.
    Closed,
    /// The server answered with an error (exit code 1).
    ServerError(String),
    /// The server sent something the protocol does not allow.
    BadReply(String),
    /// A local input the client was given (a file, stdin) cannot be used.
    Input(String),
}

impl ClientError {
    /// The process exit code for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Usage(msg) => f.write_str(msg),
            ClientError::Connect { target, source } => {
                write!(f, "cannot connect to {target}: {source}")
            }
            ClientError::Io(e) => write!(f, "connection failed: {e}"),
            ClientError::Timeout(no_reply) => no_reply.fmt(f),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::ServerError(msg) => write!(f, "server answered an error: {msg}"),
            ClientError::BadReply(msg) => write!(f, "unexpected reply from the server: {msg}"),
            ClientError::Input(msg) => f.write_str(msg),
        }
    }
}

impl ClientError {
    /// A timeout after which `got` had come instead of a whole reply.
    pub fn timeout_after(got: &[u8]) -> ClientError {
        ClientError::Timeout(Box::new(NoReply {
            got: got.to_vec(),
            ..NoReply::default()
        }))
    }

    /// Names, in a timeout or a reply the protocol does not allow, the
    /// server (`options`, or `default_port`) and the `protocol` whose reply
    /// was awaited; other errors pass as they are.
    pub fn waiting_on(
        self,
        options: &ClientOptions,
        default_port: u16,
        protocol: &str,
    ) -> ClientError {
        let port = options.port.unwrap_or(default_port);
        let from = match options.host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{}]:{port}", options.host),
            Err(_) => format!("{}:{port}", options.host),
        };
        match self {
            ClientError::Timeout(mut no_reply) => {
                no_reply.from = from;
                no_reply.protocol = protocol.to_string();
                no_reply.after = options.timeout;
                ClientError::Timeout(no_reply)
            }
            // Over UDP a port nobody serves shows only when a reply is
            // awaited (ICMP port unreachable): it is a failed connect.
            ClientError::Io(source) if source.kind() == io::ErrorKind::ConnectionRefused => {
                ClientError::Connect {
                    target: from,
                    source,
                }
            }
            ClientError::BadReply(why) => {
                ClientError::BadReply(format!("{why} \u{2014} is {from} serving {protocol}?"))
            }
            other => other,
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    /// A read or write timeout (which a socket reports as `WouldBlock` or
    /// `TimedOut`) becomes [`ClientError::Timeout`], with nothing received.
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::timeout_after(&[]),
            _ => ClientError::Io(e),
        }
    }
}

/// Connects to `options.host` on `options.port` (or `default_port`), trying
/// each address the name resolves to, each within `options.timeout`, which
/// also bounds every read and write of the stream returned.
pub fn connect(options: &ClientOptions, default_port: u16) -> Result<TcpStream, ClientError> {
    let port = options.port.unwrap_or(default_port);
    let target = format!("{}:{port}", options.host);
    let addrs = (options.host.as_str(), port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Connect {
            target: target.clone(),
            source,
        })?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address found");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, options.timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(options.timeout))?;
                stream.set_write_timeout(Some(options.timeout))?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(ClientError::Connect {
        target,
        source: last,
    })
}
