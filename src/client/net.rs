//! What the line-protocol clients share: connecting with a timeout to a host
//! that may resolve to several addresses, reading reply lines with the
//! server's own [`LineFramer`], and the error type.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::proto::framing::{Frame, LineFramer};

/// How long a client waits to connect, and then for each read or write,
/// unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest reply line a client accepts (the server's default `--max-line`
/// plus room for a reply prefix).
pub const MAX_REPLY_LINE: usize = 8192 + 64;

/// Why a client request failed. Every variant is exit code 1 for
/// `onepoll-client`.
#[derive(Debug)]
pub enum ClientError {
    /// The host name did not resolve to any address.
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error (or "no address").
        source: io::Error,
    },
    /// No address of the host accepted the connection.
    Connect {
        /// The host as given.
        host: String,
        /// The port.
        port: u16,
        /// The last address's error.
        source: io::Error,
    },
    /// The server did not answer in time.
    Timeout,
    /// The server closed the connection before the reply.
    Closed,
    /// Another I/O error.
    Io(io::Error),
    /// A reply line longer than [`MAX_REPLY_LINE`].
    ReplyTooLong,
    /// A reply that the protocol does not allow.
    BadReply(String),
    /// A message the protocol cannot carry (an LF inside a line, say).
    BadMessage(&'static str),
    /// The server answered with an error (its text).
    Server(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            ClientError::Connect { host, port, source } => {
                write!(f, "cannot connect to {host} port {port}: {source}")
            }
            ClientError::Timeout => f.write_str("timed out waiting for the server"),
            ClientError::Closed => f.write_str("the server closed the connection"),
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::ReplyTooLong => f.write_str("reply line too long"),
            ClientError::BadReply(line) => write!(f, "unexpected reply: {line}"),
            ClientError::BadMessage(why) => write!(f, "cannot send: {why}"),
            ClientError::Server(reply) => write!(f, "the server answered an error: {reply}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve { source, .. } | ClientError::Connect { source, .. } => {
                Some(source)
            }
            ClientError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    /// A read or write timeout becomes [`ClientError::Timeout`].
    fn from(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Io(e),
        }
    }
}

/// Every address `host` resolves to with `port`, in the resolver's order.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        });
    }
    Ok(addrs)
}

/// Connects to the first address of `host` that accepts, waiting at most
/// `timeout` for each; the stream gets `timeout` as its read and write
/// timeouts, and no Nagle delay (requests are small and interactive).
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ClientError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(ClientError::Connect {
        host: host.to_string(),
        port,
        source: last,
    })
}

/// Reads LF-ended lines from a stream, one CR before the LF dropped, as the
/// server frames them.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    framer: LineFramer,
}

impl<R: Read> LineReader<R> {
    /// A reader of lines of at most `max_line` bytes from `inner`.
    pub fn new(inner: R, max_line: usize) -> LineReader<R> {
        LineReader {
            inner,
            buf: Vec::new(),
            framer: LineFramer::new(max_line),
        }
    }

    /// The next line, without its line end. [`ClientError::Closed`] at end
    /// of stream (a partial last line is dropped), [`ClientError::Timeout`]
    /// when the stream's read timeout passes.
    pub fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let (frame, used) = self.framer.decode(&self.buf);
            let result = match frame {
                Frame::Line(line) => Some(Ok(line.to_vec())),
                Frame::TooLong => Some(Err(ClientError::ReplyTooLong)),
                Frame::NeedMore => None,
            };
            self.buf.drain(..used);
            if let Some(result) = result {
                return result;
            }
            let mut chunk = [0u8; 4096];
            let n = loop {
                match self.inner.read(&mut chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// Reads until end of stream, returning the bytes that came (bytes
    /// already buffered included); for checking that a server closes.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut rest = std::mem::take(&mut self.buf);
        self.inner.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns its chunks one per read.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    fn reader(chunks: &[&[u8]]) -> LineReader<Chunks> {
        LineReader::new(Chunks(chunks.iter().map(|c| c.to_vec()).collect()), 8)
    }

    #[test]
    fn lines_are_read_across_reads_with_crlf_dropped() {
        let mut r = reader(&[b"ab", b"c\r\nde\n", b"f\n"]);
        assert_eq!(r.read_line().unwrap(), b"abc");
        assert_eq!(r.read_line().unwrap(), b"de");
        assert_eq!(r.read_line().unwrap(), b"f");
        assert!(matches!(r.read_line(), Err(ClientError::Closed)));
    }

    #[test]
    fn a_reply_over_the_limit_is_an_error_and_reading_goes_on() {
        let mut r = reader(&[b"0123456789\nok\n"]);
        assert!(matches!(r.read_line(), Err(ClientError::ReplyTooLong)));
        assert_eq!(r.read_line().unwrap(), b"ok");
    }

    #[test]
    fn a_timeout_is_its_own_error() {
        let e = ClientError::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(matches!(e, ClientError::Timeout));
    }
}
