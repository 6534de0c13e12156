//! Fault injection: the seam between the loop and the kernel, built only
//! with the `fault-injection` cargo feature (off by default; the normal
//! build has no trace of it).
//!
//! With the feature on, every connection's socket is a [`Faulty`] wrapper
//! and every `accept` first asks [`accept_fault`]. Each call may, on a
//! seeded schedule, be answered with a fault instead of (or besides) the
//! real call:
//!
//! | call     | faults (`ONEPOLL_FAULT_RATE`)                        | fatal (`ONEPOLL_FAULT_FATAL`) |
//! |----------|------------------------------------------------------|-------------------------------|
//! | `read`   | short read, `WouldBlock`, `EINTR`                    | `ECONNRESET`                  |
//! | `write`  | short write (also of `writev`), `WouldBlock`, `EINTR` | `EPIPE` or `ECONNRESET`      |
//!
//! and `accept` fails (`ONEPOLL_FAULT_ACCEPT`) with `EINTR`, `ECONNABORTED`
//! or `EMFILE`, in equal parts. Each kind of fault is drawn with equal
//! odds within its rate.
//!
//! Rates are probabilities per call (`0.25` = one call in four). The
//! schedule's seed is `ONEPOLL_FAULT_SEED`; each connection draws from its
//! own generator seeded from the seed and its connection id, so a run of a
//! thousand connections is a thousand different schedules, and a run with
//! the same seed and the same arrival order is the same run. All three are
//! read once, when the first connection or accept needs them.
//!
//! **Only faults a kernel may produce, or the loop is told.** The loop
//! takes a short read, a short write and `WouldBlock` as the kernel's word
//! that the socket is drained (or full) and waits for the next edge, which
//! edge-triggered polling raises only when the socket's state changes. An
//! injected one is a lie the kernel never tells, so the wrapper records it
//! in a hint that [`seam::take_pending`] hands to the loop, which then
//! serves the connection again next wake-up without waiting for an event
//! (as it does after spending its read budget). The real socket's
//! `take_pending` is a constant `false`. `WouldBlock` is not injected on
//! `accept`: a listener with a non-empty backlog never says it, and the
//! loop relies on that. An injected `EMFILE` runs the real reserve
//! descriptor dance, so it sheds a real waiting peer, as a real `EMFILE`
//! would; a fatal fault ends that connection only.
//!
//! **Panics.** A core that panics is contained by the loop (see
//! `Conn::with_session`). To prove it, [`poison`] panics, inside the core
//! call, when the bytes a core is fed hold [`POISON`]: four `0xFF` bytes,
//! which in the binary protocol is the header of an unused action with the
//! largest length, and in every text protocol invalid input.
//!
//! Totals of what was injected are logged at shutdown ([`log_totals`]).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::proto::rng::Rng;

/// The environment variable holding the schedule's seed (decimal).
pub const SEED_VAR: &str = "ONEPOLL_FAULT_SEED";
/// The environment variable holding the probability of a non-fatal fault
/// per call.
pub const RATE_VAR: &str = "ONEPOLL_FAULT_RATE";
/// The environment variable holding the probability of a fatal fault per
/// call.
pub const FATAL_VAR: &str = "ONEPOLL_FAULT_FATAL";
/// The environment variable holding the probability that an `accept`
/// fails.
pub const ACCEPT_VAR: &str = "ONEPOLL_FAULT_ACCEPT";

/// Bytes that make the core call fed them panic (see [`poison`]).
pub const POISON: [u8; 4] = [0xFF; 4];

/// Probabilities are held in parts per million.
const MILLION: u64 = 1_000_000;

/// The schedule, as read from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The seed every generator is derived from.
    pub seed: u64,
    /// Non-fatal faults per million calls.
    pub rate: u64,
    /// Fatal faults per million calls.
    pub fatal: u64,
    /// Failed accepts per million.
    pub accept: u64,
}

impl Plan {
    /// Reads the plan from the environment: unset or unparsable values
    /// mean seed 0 and no faults.
    fn from_env() -> Plan {
        let var = |name| std::env::var(name).ok();
        let prob = |name| {
            var(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|p| (p.clamp(0.0, 1.0) * MILLION as f64) as u64)
                .unwrap_or(0)
        };
        let rate = prob(RATE_VAR);
        Plan {
            seed: var(SEED_VAR)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            rate,
            fatal: prob(FATAL_VAR).min(MILLION - rate),
            accept: prob(ACCEPT_VAR),
        }
    }

    /// A generator for stream `id` of this plan.
    fn rng(&self, id: u64) -> Rng {
        // Spread the id over all 64 bits so that neighbouring ids start
        // far apart in the generator's sequence.
        Rng::from_seed(self.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// The plan, read from the environment on first use and logged once.
pub fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let plan = Plan::from_env();
        log::warn!(
            "fault injection on: seed {}, faults {} ppm, fatal {} ppm, accept {} ppm",
            plan.seed,
            plan.rate,
            plan.fatal,
            plan.accept
        );
        plan
    })
}

/// What one call is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Short,
    WouldBlock,
    Interrupted,
    Fatal,
}

fn draw(rng: &mut Rng) -> Fault {
    let plan = plan();
    let r = rng.below(MILLION);
    if r < plan.fatal {
        Fault::Fatal
    } else if r < plan.fatal + plan.rate {
        match rng.below(3) {
            0 => Fault::Short,
            1 => Fault::WouldBlock,
            _ => Fault::Interrupted,
        }
    } else {
        Fault::None
    }
}

/// A length in `1..len` (`len >= 2`), small more often than large, so that
/// one-byte reads and writes are common.
fn cut(rng: &mut Rng, len: usize) -> usize {
    let cap = 1u64 << rng.below(18);
    1 + rng.below(cap.min(len as u64 - 1)) as usize
}

/// Counters of injected faults, by kind.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    short_read: u64,
    wouldblock_read: u64,
    eintr_read: u64,
    reset_read: u64,
    short_write: u64,
    wouldblock_write: u64,
    eintr_write: u64,
    reset_write: u64,
    eintr_accept: u64,
    aborted_accept: u64,
    emfile_accept: u64,
}

thread_local! {
    static TOTALS: Cell<Totals> = Cell::new(Totals::default());
    static ACCEPT_RNG: RefCell<Option<Rng>> = const { RefCell::new(None) };
}

fn count(f: impl FnOnce(&mut Totals)) {
    TOTALS.with(|t| {
        let mut totals = t.get();
        f(&mut totals);
        t.set(totals);
    });
}

/// Logs what has been injected so far (on this thread: the loop's), in
/// one line: `fault injection totals: kind=n ...`.
pub fn log_totals() {
    let t = TOTALS.with(Cell::get);
    log::warn!(
        "fault injection totals: short_read={} wouldblock_read={} eintr_read={} reset_read={} \
         short_write={} wouldblock_write={} eintr_write={} reset_write={} \
         eintr_accept={} aborted_accept={} emfile_accept={}",
        t.short_read,
        t.wouldblock_read,
        t.eintr_read,
        t.reset_read,
        t.short_write,
        t.wouldblock_write,
        t.eintr_write,
        t.reset_write,
        t.eintr_accept,
        t.aborted_accept,
        t.emfile_accept
    );
}

/// The fault, if any, the next `accept` returns instead of accepting.
/// Never `WouldBlock`: `accept` does not say it while the backlog holds a
/// peer, and the loop relies on that.
pub fn accept_fault() -> Option<io::Error> {
    ACCEPT_RNG.with(|cell| {
        let mut cell = cell.borrow_mut();
        let plan = plan();
        let rng = cell.get_or_insert_with(|| plan.rng(u64::MAX));
        if rng.below(MILLION) >= plan.accept {
            return None;
        }
        let errno = match rng.below(3) {
            0 => {
                count(|t| t.eintr_accept += 1);
                libc::EINTR
            }
            1 => {
                count(|t| t.aborted_accept += 1);
                libc::ECONNABORTED
            }
            _ => {
                count(|t| t.emfile_accept += 1);
                libc::EMFILE
            }
        };
        Some(io::Error::from_raw_os_error(errno))
    })
}

/// Panics if `input` holds [`POISON`]: a stand-in for a bug in a core,
/// called inside the core call.
#[allow(clippy::panic)] // The one deliberate panic: what the test contains.
pub fn poison(input: &[u8]) {
    if input.windows(POISON.len()).any(|w| w == POISON) {
        panic!("injected panic: the input holds the poison bytes FF FF FF FF");
    }
}

/// A socket whose reads and writes fail on a seeded schedule.
pub struct Faulty<S> {
    inner: S,
    rng: Rng,
    /// A fault was injected that the kernel would not have produced (a
    /// short or refused read or write): the socket may hold more than the
    /// loop believes, and no edge will say so.
    pending: bool,
}

impl<S> Faulty<S> {
    /// Wraps `inner` with the schedule of connection `id`.
    pub fn new(inner: S, id: u64) -> Faulty<S> {
        Faulty {
            inner,
            rng: plan().rng(id),
            pending: false,
        }
    }

    /// Whether an injected fault may have hidden data or room since the
    /// last call; clears the hint.
    pub fn take_pending(&mut self) -> bool {
        std::mem::take(&mut self.pending)
    }
}

impl Faulty<TcpStream> {
    /// Shuts down one or both halves (not faulted).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }
}

impl<S: Read> Read for Faulty<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match draw(&mut self.rng) {
            Fault::None => self.inner.read(buf),
            Fault::Short if buf.len() < 2 => self.inner.read(buf),
            Fault::Short => {
                count(|t| t.short_read += 1);
                let k = cut(&mut self.rng, buf.len());
                let n = self.inner.read(buf.get_mut(..k).unwrap_or_default())?;
                self.pending |= n == k;
                Ok(n)
            }
            Fault::WouldBlock => {
                count(|t| t.wouldblock_read += 1);
                self.pending = true;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Fault::Interrupted => {
                count(|t| t.eintr_read += 1);
                Err(io::Error::from_raw_os_error(libc::EINTR))
            }
            Fault::Fatal => {
                count(|t| t.reset_read += 1);
                Err(io::Error::from_raw_os_error(libc::ECONNRESET))
            }
        }
    }
}

impl<S: Write> Faulty<S> {
    /// The fault for the next write; `None` if the write goes through
    /// whole, `Some(Ok(k))` to write at most `k` of `len` bytes.
    fn write_fault(&mut self, len: usize) -> Option<io::Result<usize>> {
        match draw(&mut self.rng) {
            Fault::None => None,
            Fault::Short if len < 2 => None,
            Fault::Short => {
                count(|t| t.short_write += 1);
                Some(Ok(cut(&mut self.rng, len)))
            }
            Fault::WouldBlock => {
                count(|t| t.wouldblock_write += 1);
                self.pending = true;
                Some(Err(io::ErrorKind::WouldBlock.into()))
            }
            Fault::Interrupted => {
                count(|t| t.eintr_write += 1);
                Some(Err(io::Error::from_raw_os_error(libc::EINTR)))
            }
            Fault::Fatal => {
                count(|t| t.reset_write += 1);
                let errno = if self.rng.below(2) == 0 {
                    libc::EPIPE
                } else {
                    libc::ECONNRESET
                };
                Some(Err(io::Error::from_raw_os_error(errno)))
            }
        }
    }
}

impl<S: Write> Write for Faulty<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.write_fault(buf.len()) {
            None => self.inner.write(buf),
            Some(Ok(k)) => {
                let n = self.inner.write(buf.get(..k).unwrap_or_default())?;
                self.pending |= n == k;
                Ok(n)
            }
            Some(Err(e)) => Err(e),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        match self.write_fault(len) {
            None => self.inner.write_vectored(bufs),
            Some(Ok(k)) => {
                // The first k bytes of the slices, as slices.
                let mut left = k;
                let mut cut_bufs = Vec::with_capacity(bufs.len());
                for b in bufs {
                    if left == 0 {
                        break;
                    }
                    let take = left.min(b.len());
                    cut_bufs.push(IoSlice::new(b.get(..take).unwrap_or_default()));
                    left -= take;
                }
                let n = self.inner.write_vectored(&cut_bufs)?;
                self.pending |= n == k;
                Ok(n)
            }
            Some(Err(e)) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: mio::event::Source> mio::event::Source for Faulty<S> {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.inner.register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.inner.reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.inner.deregister(registry)
    }
}

/// The connection socket the loop uses in this build, and the two calls
/// that differ from the plain socket's (see `conn::seam`).
pub mod seam {
    use mio::net::TcpStream;

    use super::Faulty;

    /// A connection's socket: behind the fault-injecting wrapper.
    pub type Stream = Faulty<TcpStream>;

    /// Wraps a freshly accepted socket with connection `id`'s schedule.
    pub fn wrap(stream: TcpStream, id: u64) -> Stream {
        Faulty::new(stream, id)
    }

    /// Whether an injected fault may have hidden data or room: the loop
    /// must serve the connection again without waiting for an event.
    pub fn take_pending(stream: &mut Stream) -> bool {
        stream.take_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_is_always_shorter_than_the_whole_and_never_empty() {
        let mut rng = Rng::from_seed(3);
        for len in [2usize, 3, 10, 1 << 20] {
            for _ in 0..1000 {
                let k = cut(&mut rng, len);
                assert!((1..len).contains(&k), "{k} of {len}");
            }
        }
    }

    #[test]
    fn poison_panics_only_on_the_poison_bytes() {
        poison(b"\xff\xff\xffx\xff");
        poison(b"");
        let hit = std::panic::catch_unwind(|| poison(b"ab\xff\xff\xff\xffcd"));
        assert!(hit.is_err());
    }

    #[test]
    fn neighbouring_connections_get_different_schedules() {
        let plan = Plan {
            seed: 7,
            rate: 0,
            fatal: 0,
            accept: 0,
        };
        let a: Vec<u64> = (0..4).map(|_| plan.rng(1).next_u64()).collect();
        let (mut r1, mut r2) = (plan.rng(1), plan.rng(2));
        assert_ne!(r1.next_u64(), r2.next_u64());
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same id, same schedule");
    }
}
