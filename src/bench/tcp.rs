//! One client connection of a request/reply workload: nonblocking connect,
//! the greeting and hello exchanges, then requests written from a shared
//! pre-built stream (no copy, no allocation per request) and replies
//! checked as they arrive. The controller in [`super::reqrep`] decides
//! when to issue requests; this type does the I/O and the checking.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::check::{Checker, LineSkip, Mismatch};
use super::script::{Expect, Script};

/// The shared, read-only part of every connection: what to send and what
/// to expect.
#[derive(Debug)]
pub struct Wire {
    /// The script.
    pub script: Script,
    /// The request repeated enough times to fill a big write: any offset
    /// within the first request starts a contiguous run of whole requests.
    stream: Vec<u8>,
    /// The hello's reply as an expectation.
    hello_reply: Option<Expect>,
}

/// Aim for writes of up to this many bytes of small pipelined requests.
const STREAM_BYTES: usize = 64 * 1024;

impl Wire {
    /// The wire of `script`.
    pub fn new(script: Script) -> Wire {
        let unit = script.request.len();
        let copies = match unit {
            0 => 0,
            u => (STREAM_BYTES / u).max(1),
        };
        let mut stream = Vec::with_capacity(unit * copies);
        for _ in 0..copies {
            stream.extend_from_slice(&script.request);
        }
        let hello_reply = script
            .hello
            .as_ref()
            .map(|(_, reply)| Expect::Exact(reply.clone()));
        Wire {
            script,
            stream,
            hello_reply,
        }
    }

    /// Bytes in one request.
    pub fn unit(&self) -> usize {
        self.script.request.len()
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The nonblocking connect is in progress.
    Connecting,
    /// Waiting for the server's greeting line.
    Greeting,
    /// The hello is sent and its reply awaited.
    Hello,
    /// Requests may be issued.
    Ready,
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The server closed it.
    Eof,
    /// The socket failed (reset, refused...).
    Io(io::Error),
    /// A reply had a wrong byte, or came unasked.
    Wrong(Mismatch),
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub sock: TcpStream,
    /// Its phase.
    pub phase: Phase,
    /// When the connect began.
    pub started: Instant,
    /// Request bytes still to write.
    to_send: u64,
    /// Request bytes written so far.
    sent: u64,
    hello_sent: usize,
    checker: Checker,
    hello_check: Checker,
    skip: LineSkip,
    /// Start times of the requests issued and not yet answered, oldest
    /// first (the actual or, at a fixed rate, the intended send time).
    pub times: VecDeque<Instant>,
    /// Completed exchanges on this connection (idle's rounds).
    pub rounds: u32,
}

impl Conn {
    /// Starts connecting to `addr`.
    pub fn connect(addr: SocketAddr, now: Instant, depth: usize) -> io::Result<Conn> {
        let sock = TcpStream::connect(addr)?;
        Ok(Conn {
            sock,
            phase: Phase::Connecting,
            started: now,
            to_send: 0,
            sent: 0,
            hello_sent: 0,
            checker: Checker::new(),
            hello_check: Checker::new(),
            skip: LineSkip::new(),
            times: VecDeque::with_capacity(depth.min(1024)),
            rounds: 0,
        })
    }

    /// Called on any event while connecting: `Ok(true)` once connected
    /// (the phase has moved on), `Ok(false)` while still in progress.
    pub fn check_connected(&mut self, wire: &Wire) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        // Small requests must not wait for Nagle: the bench measures
        // latency.
        self.sock.set_nodelay(true)?;
        self.phase = match (wire.script.greeting, &wire.script.hello) {
            (Some(_), _) => Phase::Greeting,
            (None, Some(_)) => Phase::Hello,
            (None, None) => Phase::Ready,
        };
        Ok(true)
    }

    /// Queues one request started at `at`.
    pub fn issue(&mut self, wire: &Wire, at: Instant) {
        self.to_send += wire.unit() as u64;
        self.times.push_back(at);
    }

    /// Requests issued and not answered.
    pub fn outstanding(&self) -> usize {
        self.times.len()
    }

    /// Writes what is pending until done or the socket is full; returns the
    /// request bytes written.
    pub fn flush(&mut self, wire: &Wire) -> io::Result<u64> {
        if self.phase == Phase::Hello {
            if let Some((hello, _)) = &wire.script.hello {
                while self.hello_sent < hello.len() {
                    match self
                        .sock
                        .write(hello.get(self.hello_sent..).unwrap_or_default())
                    {
                        Ok(n) => self.hello_sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            return Ok(0);
        }
        let unit = wire.unit() as u64;
        let mut written = 0;
        while self.to_send > 0 && unit > 0 {
            let off = (self.sent % unit) as usize;
            let avail = wire.stream.get(off..).unwrap_or_default();
            let n = avail
                .len()
                .min(usize::try_from(self.to_send).unwrap_or(usize::MAX));
            match self.sock.write(avail.get(..n).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n as u64;
                    self.to_send -= n as u64;
                    written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Reads until the socket is drained, checking every byte. Each reply
    /// completed pushes its start time to `done`. Returns the bytes read,
    /// and why the connection ended if it did.
    pub fn read(
        &mut self,
        wire: &Wire,
        buf: &mut [u8],
        done: &mut Vec<Instant>,
    ) -> (u64, Option<End>) {
        let mut total = 0;
        loop {
            match self.sock.read(buf) {
                Ok(0) => return (total, Some(End::Eof)),
                Ok(n) => {
                    total += n as u64;
                    let chunk = buf.get(..n).unwrap_or_default();
                    if let Err(m) = self.consume(wire, chunk, done) {
                        return (total, Some(End::Wrong(m)));
                    }
                    if n < buf.len() {
                        // A short read: the kernel had no more; a new edge
                        // comes with new data.
                        return (total, None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (total, None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Some(End::Io(e))),
            }
        }
    }

    fn consume(
        &mut self,
        wire: &Wire,
        mut input: &[u8],
        done: &mut Vec<Instant>,
    ) -> Result<(), Mismatch> {
        if self.phase == Phase::Greeting {
            let prefix = wire.script.greeting.unwrap_or_default();
            match self.skip.feed(prefix, input)? {
                None => return Ok(()),
                Some(n) => {
                    input = input.get(n..).unwrap_or_default();
                    self.phase = match wire.script.hello {
                        Some(_) => Phase::Hello,
                        None => Phase::Ready,
                    };
                }
            }
        }
        if self.phase == Phase::Hello {
            let expect = wire.hello_reply.as_ref().ok_or(Mismatch { offset: 0 })?;
            let (used, complete) = self.hello_check.feed_upto(expect, input, 1)?;
            input = input.get(used..).unwrap_or_default();
            if complete == 0 {
                return Ok(());
            }
            self.phase = Phase::Ready;
        }
        let (used, complete) =
            self.checker
                .feed_upto(&wire.script.expect, input, self.times.len())?;
        for _ in 0..complete {
            if let Some(t) = self.times.pop_front() {
                done.push(t);
            }
        }
        if used < input.len() {
            // Bytes beyond every reply asked for.
            return Err(Mismatch { offset: 0 });
        }
        Ok(())
    }

    /// Whether the hello still has bytes to write (the caller flushes).
    pub fn hello_pending(&self, wire: &Wire) -> bool {
        self.phase == Phase::Hello
            && wire
                .script
                .hello
                .as_ref()
                .is_some_and(|(h, _)| self.hello_sent < h.len())
    }
}
