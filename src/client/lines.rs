//! Reading reply lines for the line-protocol clients (tne, cmd, chat) with
//! the server's own [`LineFramer`], so both ends agree on what a line is.

use std::io::{self, Read};

use super::ClientError;
use crate::proto::framing::{Frame, LineFramer};

/// Longest reply line a client accepts (the server's default `--max-line`
/// plus room for a reply prefix).
pub const MAX_REPLY_LINE: usize = 8192 + 64;

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
    /// (with the partial line) when the stream's read timeout passes, [`ClientError::BadReply`] for
    /// a line over the limit (reading may go on after it).
    pub fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let (frame, used) = self.framer.decode(&self.buf);
            let result = match frame {
                Frame::Line(line) => Some(Ok(line.to_vec())),
                Frame::TooLong => Some(Err(ClientError::BadReply(format!(
                    "a reply line over {} bytes",
                    self.framer.max_line()
                )))),
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
                    Err(e) => {
                        return Err(match ClientError::from(e) {
                            ClientError::Timeout(_) => ClientError::timeout_after(&self.buf),
                            other => other,
                        })
                    }
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
        assert!(matches!(r.read_line(), Err(ClientError::BadReply(_))));
        assert_eq!(r.read_line().unwrap(), b"ok");
    }

    #[test]
    fn a_timeout_is_its_own_error() {
        let e = ClientError::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert!(matches!(e, ClientError::Timeout(_)));
    }
}
