//! The write path of a connection: its output written with one `write` or
//! `writev` until the socket is full, the interest settled after a flush,
//! and the last words to a connection refused at accept.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::config::BACKPRESSURE_BYTES;
use crate::proto::counts::Counts;
use crate::proto::{CloseReason, Output};
use crate::server::timers::Clock;
use crate::server::trace;

use super::{seam, Conn, Phase};

/// Most slices offered to one `writev`.
const MAX_IOVECS: usize = 256;

impl Conn {
    /// Whether the last reads or writes stopped short of what the kernel
    /// holds without an edge to announce it (only ever under fault
    /// injection): the loop must serve the connection again next wake-up,
    /// and the next flush must write even if the socket looked full.
    #[inline(always)]
    pub fn take_pending(&mut self) -> bool {
        let pending = seam::take_pending(&mut self.stream);
        if pending {
            self.write_blocked = false;
        }
        pending
    }

    /// The poll reported the socket writable (or failed, which a write
    /// will report): the next flush writes again.
    pub fn note_writable(&mut self) {
        self.write_blocked = false;
    }

    /// Writes queued output until it is all sent or the socket is full.
    /// Returns true when everything queued has been sent.
    ///
    /// Once a write came back short or would block, nothing is written
    /// until the poll reports the socket writable again ([`Conn::note_writable`]):
    /// a streamed reply that fills the socket on the read path, and the
    /// flush at the end of the wake-up, would otherwise each spend a
    /// syscall to hear `WouldBlock`.
    #[inline(always)]
    pub fn flush(&mut self, clock: &Clock, counts: &mut Counts) -> bool {
        // Inlined: most calls (a drained connection settled again) end here.
        self.output.is_empty() || self.write_out(clock, counts)
    }

    /// [`Conn::flush`] when there is output; counts the bytes sent.
    #[inline(never)]
    pub(super) fn write_out(&mut self, clock: &Clock, counts: &mut Counts) -> bool {
        while !self.output.is_empty() {
            if self.phase == Phase::Dead || self.write_blocked {
                return false;
            }
            let result = match self.output.contiguous() {
                Some(run) => self.stream.write(run).map(|n| (n, run.len())),
                None => write_segments(&mut self.stream, &self.output),
            };
            match result {
                Ok((0, _)) => {
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::Error);
                    return false;
                }
                Ok((n, offered)) => {
                    trace::wrote(n, offered);
                    self.output.consume(n);
                    counts.sent(self.protocol(), n);
                    self.last_active = clock.now;
                    if n < offered {
                        // A short write: the socket buffer is full. The
                        // kernel will raise WRITABLE when it has room.
                        self.write_blocked = true;
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    trace::write_would_block();
                    self.write_blocked = true;
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("write to #{} {}: {e}", self.id, self.peer);
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::of_io_error(&e));
                    return false;
                }
            }
        }
        true
    }

    /// After a flush: free drained buffers, lift backpressure, move a
    /// drained closing connection on, and add WRITABLE to the registered
    /// interest if output is left and it is not there yet. Returns true if
    /// reading should resume now (backpressure was lifted while data may be
    /// waiting).
    pub fn settle(&mut self, registry: &Registry, token: Token) -> bool {
        let drained = self.output.is_empty();
        let mut resume = false;
        if drained {
            self.output.release_if_empty();
            match self.phase {
                Phase::Flushing if self.peer_eof => self.phase = Phase::Dead,
                Phase::Flushing => {
                    // Shut our side first, then read until the peer's EOF:
                    // closing with unread input would send a reset that can
                    // destroy replies the peer has not read yet.
                    match self.stream.shutdown(Shutdown::Write) {
                        Ok(()) => self.phase = Phase::Lingering,
                        Err(e) => {
                            self.phase = Phase::Dead;
                            self.reason.get_or_insert(CloseReason::of_io_error(&e));
                        }
                    }
                    resume = true;
                }
                _ => {}
            }
        }
        if self.backpressured && self.output.len() <= BACKPRESSURE_BYTES / 2 {
            self.backpressured = false;
            resume = true;
        }
        if self.phase != Phase::Dead && !drained && !self.writable_interest {
            // If the socket has room by now, EPOLL_CTL_MOD queues the event
            // at once: no edge is lost between the short write and here.
            let interest = Interest::READABLE | Interest::WRITABLE;
            match registry.reregister(&mut self.stream, token, interest) {
                Ok(()) => {
                    trace::interest("READABLE|WRITABLE");
                    self.writable_interest = true;
                }
                Err(e) => {
                    log::warn!("reregister #{}: {e}", self.id);
                    self.phase = Phase::Dead;
                    self.reason.get_or_insert(CloseReason::Error);
                }
            }
        }
        resume && self.phase != Phase::Dead
    }

    /// Best-effort last write and close for a connection refused at accept.
    pub fn refuse(mut stream: TcpStream, reply: &[u8], scratch: &mut [u8]) {
        if !reply.is_empty() {
            let _ = stream.write(reply);
        }
        let _ = stream.shutdown(Shutdown::Write);
        // Unread input at close turns the FIN into a reset, which can
        // destroy the reply: take what has arrived.
        let _ = stream.read(scratch);
    }
}

/// One `writev` of the unsent segments of `output`: what the kernel took,
/// and what was offered. Out of line: its 4 KiB of slices would otherwise
/// sit in the frame of every write, most of which (a batch of replies, a
/// broadcast delivery) is one contiguous run.
#[inline(never)]
fn write_segments(stream: &mut seam::Stream, output: &Output) -> io::Result<(usize, usize)> {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    let count = output.io_slices(&mut slices);
    let slices = slices.get(..count).unwrap_or_default();
    let offered: usize = slices.iter().map(|s| s.len()).sum();
    stream.write_vectored(slices).map(|n| (n, offered))
}
