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

/// How long connecting, and each wait for the server, may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Options that come before the protocol name.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Server host name or address (`-h`, default `localhost`).
    pub host: String,
    /// Server port (`-p`); `None`: the protocol's default.
    pub port: Option<u16>,
    /// Print more detail (`-v`).
    pub verbose: bool,
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
    /// The server did not answer within [`TIMEOUT`].
    Timeout,
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
            ClientError::Timeout => write!(f, "no answer from the server in {TIMEOUT:?}"),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::ServerError(msg) => write!(f, "server answered an error: {msg}"),
            ClientError::BadReply(msg) => write!(f, "unexpected reply from the server: {msg}"),
            ClientError::Input(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    /// A read or write timeout (which a socket reports as `WouldBlock` or
    /// `TimedOut`) becomes [`ClientError::Timeout`].
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

/// Connects to `options.host` on `options.port` (or `default_port`), trying
/// each address the name resolves to, each within [`TIMEOUT`].
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
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => {
                stream.set_read_timeout(Some(TIMEOUT))?;
                stream.set_write_timeout(Some(TIMEOUT))?;
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
