//! `--trace`: the loop's work, as it happens, for a reader learning how a
//! readiness loop runs. For every wake-up, one line with the number of
//! events handled and the time the wake-up took; for every event, one line
//! with the token named (`listener <protocol>`, `signal`,
//! `#3 <protocol> 127.0.0.1:60500`, `udp <protocol>`), its readiness, and what the
//! loop did about it: bytes read, bytes the core consumed, reply bytes
//! queued, bytes written, `WouldBlock` met, interest changes. Steps of a
//! wake-up that are not events (the flush at its end, a connection read
//! again without an event, a deadline) get a line of their own when they
//! did something, the close of a connection with its reason among them:
//!
//! ```text
//! listener <protocol> [readable]: accepted 1, registered READABLE, accept WouldBlock
//! wake-up: 1 event in <time>
//! #1 <protocol> 127.0.0.1:60500 [readable]: read 9 B (short read), core consumed 9 B, queued 9 B of replies, wrote 9 B
//! wake-up: 1 event in <time>
//! ```
//!
//! Lines go through `log` at trace level with the target [`TARGET`], so a
//! logger can show them alone (`--trace`) or with everything (`-vv`).
//!
//! **Off, it costs one load and one branch per hook.** Whether tracing is
//! on is decided once, at start ([`init`]), and kept in a static; every
//! hook is inlined and does nothing else when it is off: no formatting, no
//! allocation, no clock read. When it is on, the counts of the step under
//! way are kept in a thread-local tally (the loop is one thread), which
//! the hooks in the read and write paths add to without any change to
//! their signatures, and which a [`Scope`] prints when the step ends.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mio::event::Event;

use crate::proto::{CloseReason, Output};

/// The `log` target of every trace line.
pub const TARGET: &str = "onepoll::trace";

/// Whether trace lines are wanted; set once at start.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Decides, once, whether tracing is on: whether the logger shows trace
/// lines of [`TARGET`] (`--trace`, or `-vv`). Returns the answer.
pub fn init() -> bool {
    let on = log::log_enabled!(target: TARGET, log::Level::Trace);
    ENABLED.store(on, Ordering::Relaxed);
    on
}

/// Whether tracing is on.
#[inline(always)]
pub fn on() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What the step under way did, in plain counts.
#[derive(Clone, Copy, Default)]
struct Tally {
    reads: u32,
    read: u64,
    eof: bool,
    short_read: bool,
    read_would_block: bool,
    consumed: u64,
    queued: u64,
    turns: u32,
    writes: u32,
    written: u64,
    short_write: bool,
    write_would_block: bool,
    accepted: u32,
    accept_would_block: bool,
    interest: Option<&'static str>,
    closed: Option<CloseReason>,
    shutdown: bool,
}

impl Tally {
    const fn new() -> Tally {
        Tally {
            reads: 0,
            read: 0,
            eof: false,
            short_read: false,
            read_would_block: false,
            consumed: 0,
            queued: 0,
            turns: 0,
            writes: 0,
            written: 0,
            short_write: false,
            write_would_block: false,
            accepted: 0,
            accept_would_block: false,
            interest: None,
            closed: None,
            shutdown: false,
        }
    }

    fn is_empty(&self) -> bool {
        self.reads == 0
            && !self.read_would_block
            && self.consumed == 0
            && self.queued == 0
            && self.turns == 0
            && self.writes == 0
            && !self.write_would_block
            && self.accepted == 0
            && self.interest.is_none()
            && self.closed.is_none()
            && !self.shutdown
    }

    /// The facts, comma-separated, in the order they happen.
    fn describe(&self, out: &mut String) {
        let mut facts: Vec<String> = Vec::new();
        if self.shutdown {
            facts.push("shutdown begins: listeners closed".into());
        }
        if self.accepted > 0 {
            facts.push(format!("accepted {}, registered READABLE", self.accepted));
        }
        if self.accept_would_block {
            facts.push("accept WouldBlock".into());
        }
        if self.reads > 0 {
            let mut read = if self.eof && self.read == 0 {
                "read 0 B (EOF)".to_string()
            } else {
                format!("read {} B", self.read)
            };
            if self.reads > 1 {
                let _ = write!(read, " in {} reads", self.reads);
            }
            if self.eof && self.read > 0 {
                read.push_str(", then EOF");
            } else if self.short_read {
                read.push_str(" (short read)");
            }
            facts.push(read);
        }
        if self.read_would_block {
            facts.push("read WouldBlock".into());
        }
        if self.turns > 0 {
            facts.push(format!("{} turn(s) of the core's own work", self.turns));
        }
        if self.consumed > 0 || self.queued > 0 {
            facts.push(format!("core consumed {} B", self.consumed));
            facts.push(format!("queued {} B of replies", self.queued));
        }
        if self.writes > 0 {
            let mut wrote = format!("wrote {} B", self.written);
            if self.writes > 1 {
                let _ = write!(wrote, " in {} writes", self.writes);
            }
            if self.short_write {
                wrote.push_str(" (short write)");
            }
            facts.push(wrote);
        }
        if self.write_would_block {
            facts.push("write WouldBlock".into());
        }
        if let Some(interest) = self.interest {
            facts.push(format!("interest now {interest}"));
        }
        if let Some(reason) = self.closed {
            facts.push(format!("close ({reason})"));
        }
        if facts.is_empty() {
            out.push_str("nothing done now");
        } else {
            out.push_str(&facts.join(", "));
        }
    }
}

/// The trace state of the loop's thread.
struct State {
    tally: Tally,
    events: u32,
}

impl State {
    const fn new() -> State {
        State {
            tally: Tally::new(),
            events: 0,
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = const { RefCell::new(State::new()) };
}

/// Adds to the tally of the step under way (tracing on only).
#[inline(never)]
fn note(f: impl FnOnce(&mut Tally)) {
    STATE.with(|s| f(&mut s.borrow_mut().tally));
}

/// A read into a buffer of `len` bytes returned `n` (0: the peer's EOF;
/// less than `len`: a short read, the kernel had no more; a datagram
/// socket passes 0 for `len`).
#[inline(always)]
pub fn read(n: usize, len: usize) {
    if on() {
        note(|t| {
            t.reads += 1;
            t.read += n as u64;
            t.eof |= n == 0;
            t.short_read = n > 0 && n < len;
        });
    }
}

/// A read said `WouldBlock`.
#[inline(always)]
pub fn read_would_block() {
    if on() {
        note(|t| t.read_would_block = true);
    }
}

/// The output's length before a call into the core, to compare with
/// after it ([`fed`], [`turn`]): 0, and no work, when tracing is off.
#[inline(always)]
pub fn mark(out: &Output) -> usize {
    if on() {
        out.len()
    } else {
        0
    }
}

/// The core consumed `consumed` input bytes (`None`: it panicked), and
/// `out` grew from `mark` bytes by the replies it queued.
#[inline(always)]
pub fn fed(consumed: Option<usize>, mark: usize, out: &Output) {
    if on() {
        note(|t| {
            t.consumed += consumed.unwrap_or(0) as u64;
            t.queued += out.len().saturating_sub(mark) as u64;
        });
    }
}

/// A datagram of `consumed` bytes was answered with `queued` bytes.
#[inline(always)]
pub fn answered(consumed: usize, queued: usize) {
    if on() {
        note(|t| {
            t.consumed += consumed as u64;
            t.queued += queued as u64;
        });
    }
}

/// The core took one turn of its own work (consuming `consumed` carried
/// bytes once done), and `out` grew from `mark` bytes.
#[inline(always)]
pub fn turn(consumed: Option<usize>, mark: usize, out: &Output) {
    if on() {
        note(|t| t.turns += 1);
        fed(consumed, mark, out);
    }
}

/// A write sent `n` of the `offered` bytes.
#[inline(always)]
pub fn wrote(n: usize, offered: usize) {
    if on() {
        note(|t| {
            t.writes += 1;
            t.written += n as u64;
            t.short_write |= n < offered;
        });
    }
}

/// A write said `WouldBlock`.
#[inline(always)]
pub fn write_would_block() {
    if on() {
        note(|t| t.write_would_block = true);
    }
}

/// A connection was accepted and registered.
#[inline(always)]
pub fn accepted() {
    if on() {
        note(|t| t.accepted += 1);
    }
}

/// Accepting said `WouldBlock`: the backlog is empty.
#[inline(always)]
pub fn accept_would_block() {
    if on() {
        note(|t| t.accept_would_block = true);
    }
}

/// The registered interest changed to `interest` (`READABLE|WRITABLE`).
#[inline(always)]
pub fn interest(interest: &'static str) {
    if on() {
        note(|t| t.interest = Some(interest));
    }
}

/// The connection closed for `reason`.
#[inline(always)]
pub fn closed(reason: CloseReason) {
    if on() {
        note(|t| t.closed = Some(reason));
    }
}

/// A signal started the shutdown.
#[inline(always)]
pub fn shutdown() {
    if on() {
        note(|t| t.shutdown = true);
    }
}

/// The readiness an event reports, in words.
fn readiness(event: &Event, out: &mut String) {
    let flags = [
        (event.is_readable(), "readable"),
        (event.is_writable(), "writable"),
        (event.is_read_closed(), "read-closed"),
        (event.is_write_closed(), "write-closed"),
        (event.is_error(), "error"),
    ];
    let words: Vec<&str> = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
    out.push_str(&words.join(" "));
}

/// One step of a wake-up being traced: an event, or a step that is not
/// one (`flush`, `resume`, `timer`). Made at its start, it prints its line
/// when dropped, with what the hooks counted meanwhile; a step inside
/// another keeps its counts apart. Off, it holds nothing and prints
/// nothing.
#[must_use]
pub struct Scope(Option<Open>);

/// A step whose line is due: what it names, whether it is printed when
/// nothing was done, and the tally of the step it interrupted.
struct Open {
    line: String,
    always: bool,
    outer: Tally,
}

impl Scope {
    /// The handling of `event`, for the token `name` names (called only
    /// when tracing). Its line is printed even when nothing was done.
    #[inline(always)]
    pub fn event(event: &Event, name: impl FnOnce() -> String) -> Scope {
        if !on() {
            return Scope(None);
        }
        let mut line = name();
        line.push_str(" [");
        readiness(event, &mut line);
        line.push(']');
        STATE.with(|s| s.borrow_mut().events += 1);
        Scope::open(line, true)
    }

    /// A step that is not an event (`flush`, `resume`, `timer`) for what
    /// `name` names; its line is printed only if it did something.
    #[inline(always)]
    pub fn step(step: &'static str, name: impl FnOnce() -> String) -> Scope {
        if !on() {
            return Scope(None);
        }
        let mut line = name();
        let _ = write!(line, " [{step}]");
        Scope::open(line, false)
    }

    fn open(line: String, always: bool) -> Scope {
        let outer = STATE.with(|s| std::mem::take(&mut s.borrow_mut().tally));
        Scope(Some(Open {
            line,
            always,
            outer,
        }))
    }
}

impl Drop for Scope {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.is_some() {
            finish(self.0.take());
        }
    }
}

#[inline(never)]
fn finish(open: Option<Open>) {
    let Some(Open {
        mut line,
        always,
        outer,
    }) = open
    else {
        return;
    };
    let tally = STATE.with(|s| std::mem::replace(&mut s.borrow_mut().tally, outer));
    if always || !tally.is_empty() {
        line.push_str(": ");
        tally.describe(&mut line);
        log::trace!(target: TARGET, "{line}");
    }
}

/// One wake-up being traced: made when the poll returns, it prints
/// `wake-up: N events in T µs` when dropped at the end of the wake-up.
#[must_use]
pub struct Wake {
    started: Option<Instant>,
}

impl Wake {
    /// A wake-up begins (the poll returned).
    #[inline(always)]
    pub fn begin() -> Wake {
        if !on() {
            return Wake { started: None };
        }
        // Counts made outside any step (there should be none) are dropped.
        STATE.with(|s| *s.borrow_mut() = State::new());
        Wake {
            started: Some(Instant::now()),
        }
    }
}

impl Drop for Wake {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            end_wake(started);
        }
    }
}

#[inline(never)]
fn end_wake(started: Instant) {
    let took = started.elapsed().as_micros();
    let events = STATE.with(|s| s.borrow().events);
    let plural = if events == 1 { "" } else { "s" };
    log::trace!(target: TARGET, "wake-up: {events} event{plural} in {took} µs");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The facts are listed in the order they happen, and only those that
    /// happened.
    #[test]
    fn a_tally_says_what_happened() {
        let mut line = String::new();
        Tally::new().describe(&mut line);
        assert_eq!(line, "nothing done now");
        let tally = Tally {
            reads: 1,
            read: 9,
            short_read: true,
            consumed: 9,
            queued: 9,
            writes: 1,
            written: 9,
            ..Tally::new()
        };
        line.clear();
        tally.describe(&mut line);
        assert_eq!(
            line,
            "read 9 B (short read), core consumed 9 B, queued 9 B of replies, wrote 9 B"
        );
        let tally = Tally {
            reads: 1,
            eof: true,
            closed: Some(CloseReason::PeerClosed),
            ..Tally::new()
        };
        line.clear();
        tally.describe(&mut line);
        assert_eq!(line, "read 0 B (EOF), close (closed by peer)");
    }
}
