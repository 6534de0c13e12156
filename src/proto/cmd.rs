//! # cmd — the HELO command protocol
//!
//! *The onepoll command protocol, version 1. Default TCP port 8008.*
//!
//! ## 1. Overview
//!
//! A client sends request lines; the server answers each with one line, in
//! order. Requests may be pipelined. The server sends nothing on connect. A
//! client must introduce itself with `HELO` before anything else; `BYE`
//! ends the session.
//!
//! ## 2. Grammar (ABNF, RFC 5234)
//!
//! ```text
//! request  = verb [SP argument] [CR] LF   ; one CR before LF is dropped
//! verb     = 1*(%x00-09 / %x0B-1F / %x21-FF)  ; any bytes but SP and LF;
//!                                         ; matched case-insensitively
//! argument = *(%x00-09 / %x0B-FF)         ; everything after the first SP
//! reply    = *(%x00-09 / %x0B-FF) LF
//! ```
//!
//! An argument that is empty (`REQTIME ` with a trailing space) counts as
//! no argument.
//!
//! ## 3. Requests and replies
//!
//! | request | reply |
//! |---------|-------|
//! | `HELO <host>` | `Hello <host>, pleased to meet you.` (host: the argument without surrounding blanks) |
//! | `REQTIME` | the server's local time, `hh:mm:ss`, 24-hour |
//! | `REQDATE` | the server's local date, `YYYY-MM-DD` |
//! | `ECHO <text>` | `<text>` byte for byte; `ECHO` alone: an empty line |
//! | `REQIP` | the client's IP address (an IPv4-mapped IPv6 address as IPv4) |
//! | `BYE` | `See ya later`; then the server closes the connection |
//!
//! `HELO` may be repeated. After `BYE` the server reads nothing more: lines
//! pipelined after it are ignored.
//!
//! ## 4. Errors
//!
//! Every error is one line `ERR <reason>` (the reasons are [`CmdError`]'s
//! `Display`); the connection stays open.
//!
//! | case | reply |
//! |------|-------|
//! | any line but `HELO` and `BYE` before a successful `HELO` | `ERR say HELO first` |
//! | `HELO` without a host | `ERR HELO needs a host` |
//! | an unknown verb (an empty line too) | `ERR unknown command` |
//! | an argument to `REQTIME`, `REQDATE`, `REQIP` or `BYE` | `ERR <VERB> takes no argument` |
//! | a line over `--max-line` bytes | `ERR line too long` |
//! | the stream ends inside a line | `ERR line not ended by LF` |
//!
//! ## 5. Time
//!
//! REQTIME and REQDATE give the server's local time, from the clock the
//! event loop reads once per wake-up. The local UTC offset is asked of the
//! system for each request (so a daylight-saving change is followed); see
//! [`LocalClock`] for why that is sound and when UTC is used instead.
//!
//! ## 6. Limits
//!
//! A line may be at most `--max-line` bytes (default 8192), CR and LF not
//! counted. An over-long line is answered once and the rest of it up to the
//! next LF is discarded as it arrives, never buffered.
//!
//! ## 7. Example exchange
//!
//! ```text
//! C: ECHO hi
//! S: ERR say HELO first
//! C: helo client.example
//! S: Hello client.example, pleased to meet you.
//! C: REQTIME
//! S: 14:03:59
//! C: REQDATE
//! S: 2025-06-01
//! C: echo  two  spaces
//! S:  two  spaces
//! C: REQIP
//! S: 127.0.0.1
//! C: FROB
//! S: ERR unknown command
//! C: BYE
//! S: See ya later
//!    (the server closes the connection)
//! ```

use std::fmt;
use std::io::Write;
use std::ops::ControlFlow;
use std::time::SystemTime;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::framing::LineFramer;
use super::{Cx, Output, Session};
use crate::config::Protocol;

/// The verbs of section 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `HELO <host>`: introduce yourself.
    Helo,
    /// `REQTIME`: the server's local time.
    ReqTime,
    /// `REQDATE`: the server's local date.
    ReqDate,
    /// `ECHO [text]`: the text back.
    Echo,
    /// `REQIP`: your IP address.
    ReqIp,
    /// `BYE`: end the session.
    Bye,
}

impl Verb {
    /// Every verb, in the spec's order.
    pub const ALL: [Verb; 6] = [
        Verb::Helo,
        Verb::ReqTime,
        Verb::ReqDate,
        Verb::Echo,
        Verb::ReqIp,
        Verb::Bye,
    ];

    /// The verb's name, upper case.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Helo => "HELO",
            Verb::ReqTime => "REQTIME",
            Verb::ReqDate => "REQDATE",
            Verb::Echo => "ECHO",
            Verb::ReqIp => "REQIP",
            Verb::Bye => "BYE",
        }
    }

    /// The verb named `word`, ignoring ASCII case. The word is folded to
    /// upper case once and matched as a whole, rather than compared with
    /// each name in turn.
    pub fn parse(word: &[u8]) -> Option<Verb> {
        let mut folded = [0u8; 7];
        let folded = folded.get_mut(..word.len())?;
        for (f, b) in folded.iter_mut().zip(word) {
            *f = b.to_ascii_uppercase();
        }
        Some(match &*folded {
            b"HELO" => Verb::Helo,
            b"REQTIME" => Verb::ReqTime,
            b"REQDATE" => Verb::ReqDate,
            b"ECHO" => Verb::Echo,
            b"REQIP" => Verb::ReqIp,
            b"BYE" => Verb::Bye,
            _ => return None,
        })
    }

    /// Whether the verb takes an argument.
    pub fn takes_argument(self) -> bool {
        matches!(self, Verb::Helo | Verb::Echo)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request line, parsed in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The verb.
    pub verb: Verb,
    /// The bytes after the first space; empty when there are none.
    pub argument: &'a [u8],
}

/// Why a line was refused; `Display` is the reason sent after `ERR `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// A line other than HELO or BYE before a successful HELO.
    SayHeloFirst,
    /// HELO without a host.
    MissingHost,
    /// A verb not in the table, or an empty line.
    UnknownCommand,
    /// An argument to a verb that takes none.
    NoArgument(Verb),
    /// A line over `--max-line` bytes.
    LineTooLong,
    /// The stream ended inside a line.
    Unterminated,
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::SayHeloFirst => f.write_str("say HELO first"),
            CmdError::MissingHost => f.write_str("HELO needs a host"),
            CmdError::UnknownCommand => f.write_str("unknown command"),
            CmdError::NoArgument(verb) => write!(f, "{verb} takes no argument"),
            CmdError::LineTooLong => f.write_str("line too long"),
            CmdError::Unterminated => f.write_str("line not ended by LF"),
        }
    }
}

impl std::error::Error for CmdError {}

/// Parses a request line (without its line end). Does not know whether
/// HELO has been said; see [`CmdSession`].
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, CmdError> {
    let (word, argument) = match line.iter().position(|&b| b == b' ') {
        Some(space) => {
            let (word, rest) = line.split_at(space);
            (word, rest.get(1..).unwrap_or_default())
        }
        None => (line, &[][..]),
    };
    let verb = Verb::parse(word).ok_or(CmdError::UnknownCommand)?;
    if !verb.takes_argument() && !argument.is_empty() {
        return Err(CmdError::NoArgument(verb));
    }
    Ok(Request { verb, argument })
}

/// The server's local time zone, as REQTIME and REQDATE use it.
///
/// **Choice.** `time`'s [`UtcOffset::local_offset_at`] calls
/// `localtime_r`, which reads the `TZ` environment variable; that is
/// unsound only if another thread changes the environment at the same time.
/// onepoll's server is one thread and never changes its environment, so
/// asking per request is sound there, and it follows daylight-saving
/// changes, which an offset fixed at start would not. [`LocalClock::system`]
/// asks once when the server starts (still single-threaded; glibc also
/// caches `TZ` then): if the system cannot tell the offset, the clock is UTC
/// for the server's life, as the spec allows. If a later request's lookup
/// fails, the offset found at start is used.
#[derive(Clone, Copy, Debug)]
pub struct LocalClock {
    zone: Zone,
}

#[derive(Clone, Copy, Debug)]
enum Zone {
    /// Ask the system per request; `fallback` was its answer at start.
    System { fallback: UtcOffset },
    /// Always this offset (UTC when the local one could not be known).
    Fixed(UtcOffset),
}

impl LocalClock {
    /// The system's local zone, probed now (call it at server start); UTC,
    /// with a warning logged, when the system cannot tell.
    pub fn system() -> LocalClock {
        match UtcOffset::current_local_offset() {
            Ok(fallback) => LocalClock {
                zone: Zone::System { fallback },
            },
            Err(error) => {
                log::warn!("cmd: local time offset unknown ({error}); REQTIME and REQDATE use UTC");
                LocalClock::fixed(UtcOffset::UTC)
            }
        }
    }

    /// A clock always at `offset` (UTC, or a test's zone).
    pub fn fixed(offset: UtcOffset) -> LocalClock {
        LocalClock {
            zone: Zone::Fixed(offset),
        }
    }

    /// `now` in this zone.
    pub fn local(&self, now: SystemTime) -> OffsetDateTime {
        let utc = OffsetDateTime::from(now);
        let offset = match self.zone {
            Zone::System { fallback } => UtcOffset::local_offset_at(utc).unwrap_or(fallback),
            Zone::Fixed(offset) => offset,
        };
        utc.to_offset(offset)
    }
}

/// REQTIME's format: `hh:mm:ss`, 24-hour.
pub const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[hour]:[minute]:[second]");

/// REQDATE's format: `YYYY-MM-DD`.
pub const DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// State shared by every cmd connection.
#[derive(Clone, Debug)]
pub struct Shared {
    /// `--max-line`: longest request line.
    pub max_line: usize,
    /// The zone of REQTIME and REQDATE.
    pub clock: LocalClock,
}

impl Shared {
    /// Shared state for lines of at most `max_line` bytes, telling time by
    /// `clock`.
    pub fn new(max_line: usize, clock: LocalClock) -> Shared {
        Shared { max_line, clock }
    }
}

/// The cmd state machine of one connection.
pub struct CmdSession {
    framer: LineFramer,
    greeted: bool,
}

impl CmdSession {
    /// A session for lines of at most `max_line` bytes, before HELO.
    pub fn new(max_line: usize) -> CmdSession {
        CmdSession {
            framer: LineFramer::new(max_line),
            greeted: false,
        }
    }
}

/// Answers one line; breaks after BYE. `greeted`: a HELO has succeeded.
fn answer(greeted: &mut bool, line: &[u8], cx: &mut Cx<'_>) -> ControlFlow<()> {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(_) if !*greeted && !is_helo_or_bye(line) => {
            put_error(CmdError::SayHeloFirst, cx.out);
            return ControlFlow::Continue(());
        }
        Err(error) => {
            put_error(error, cx.out);
            return ControlFlow::Continue(());
        }
    };
    let out = &mut *cx.out;
    match request.verb {
        Verb::Helo => {
            let host = request.argument.trim_ascii();
            if host.is_empty() {
                put_error(CmdError::MissingHost, out);
            } else {
                *greeted = true;
                out.put_all(&[b"Hello ", host, b", pleased to meet you.\n"]);
            }
        }
        Verb::Bye => {
            out.put(b"See ya later\n");
            cx.close_after_flush();
            return ControlFlow::Break(());
        }
        _ if !*greeted => put_error(CmdError::SayHeloFirst, out),
        Verb::ReqTime => put_time(cx.shared.cmd.clock.local(cx.now), TIME_FORMAT, out),
        Verb::ReqDate => put_time(cx.shared.cmd.clock.local(cx.now), DATE_FORMAT, out),
        Verb::Echo => out.put_all(&[request.argument, b"\n"]),
        Verb::ReqIp => {
            let ip = cx.peer.ip().to_canonical();
            put_small(out, |w| writeln!(w, "{ip}"));
        }
    }
    ControlFlow::Continue(())
}

/// Whether `line`'s verb is HELO or BYE, whatever follows.
fn is_helo_or_bye(line: &[u8]) -> bool {
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    matches!(Verb::parse(word), Some(Verb::Helo | Verb::Bye))
}

fn put_error(error: CmdError, out: &mut Output) {
    put_small(out, |w| writeln!(w, "ERR {error}"));
}

fn put_time(when: OffsetDateTime, format: &[BorrowedFormatItem<'_>], out: &mut Output) {
    put_small(out, |w| {
        when.format_into(w, format).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    });
}

/// Appends a short formatted reply (at most 64 bytes: an error, a time, an
/// address) through a stack buffer, without allocating. A reply that does
/// not fit is a bug, caught by the tests, and is not sent.
fn put_small(out: &mut Output, write: impl FnOnce(&mut &mut [u8]) -> std::io::Result<()>) {
    let mut buf = [0u8; 64];
    let mut cursor = &mut buf[..];
    if write(&mut cursor).is_ok() {
        let len = 64 - cursor.len();
        out.put(buf.get(..len).unwrap_or_default());
    }
}

impl super::Declared for CmdSession {
    const DECLARATION: super::Declaration = super::Declaration {
        name: "cmd",
        default_port: 8008,
        served_by_default: true,
        transport: super::Transport::Tcp,
        server_full: b"ERR server full\n",
        too_many_from_address: b"ERR too many connections from your address\n",
        flow: super::Flow::RequestReply,
        pacing: super::Pacing::Unpaced,
    };

    fn open(shared: &mut super::Shared) -> CmdSession {
        CmdSession::new(shared.cmd.max_line)
    }
}

impl Session for CmdSession {
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        let greeted = &mut self.greeted;
        self.framer.each_line(input, |line| match line {
            Ok(line) => {
                cx.shared.counts.request(Protocol::Cmd);
                answer(greeted, line, cx)
            }
            Err(_) => {
                put_error(CmdError::LineTooLong, cx.out);
                ControlFlow::Continue(())
            }
        })
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        if self.framer.has_unanswered_partial() {
            put_error(CmdError::Unterminated, cx.out);
        }
    }

    fn mid_message(&self) -> bool {
        self.framer.mid_line()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{split_at, Harness};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Duration;

    /// 2023-11-14 22:13:20 UTC.
    const NOW_SECS: u64 = 1_700_000_000;

    fn session(max_line: usize) -> Harness<CmdSession> {
        let mut h = Harness::new(CmdSession::new(max_line));
        h.now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS);
        h.shared.cmd.clock = LocalClock::fixed(UtcOffset::UTC);
        h
    }

    /// Replies to `chunks` fed one read at a time, then end of stream, and
    /// whether the session asked to close.
    fn run_with(max_line: usize, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut h = session(max_line);
        for chunk in chunks {
            h.feed(chunk);
        }
        h.eof();
        assert!(h.most_carried <= max_line + 1, "carried {}", h.most_carried);
        (h.take(), h.closed)
    }

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        run_with(100, chunks).0
    }

    fn greeted(requests: &str) -> String {
        let input = format!("HELO me\n{requests}");
        let reply = run(&[input.as_bytes()]);
        let reply = String::from_utf8(reply).unwrap();
        reply
            .strip_prefix("Hello me, pleased to meet you.\n")
            .unwrap()
            .to_string()
    }

    #[test]
    fn helo_is_answered_with_the_host() {
        assert_eq!(
            run(&[b"HELO client.example\r\n"]),
            b"Hello client.example, pleased to meet you.\n"
        );
    }

    #[test]
    fn every_verb_is_answered_as_the_table_says() {
        assert_eq!(
            greeted("REQTIME\nREQDATE\nECHO hello  world \nECHO\nREQIP\nBYE\n"),
            "22:13:20\n2023-11-14\nhello  world \n\n127.0.0.1\nSee ya later\n"
        );
    }

    #[test]
    fn verbs_are_matched_ignoring_case() {
        assert_eq!(
            run(&[b"helo x\nReqTime\nrEqDaTe\necho a\nreqip\nbye\n"]),
            b"Hello x, pleased to meet you.\n22:13:20\n2023-11-14\na\n127.0.0.1\nSee ya later\n"
        );
    }

    #[test]
    fn every_verb_parses_from_its_name_and_nothing_near_it_does() {
        for verb in Verb::ALL {
            let name = verb.name();
            assert_eq!(Verb::parse(name.as_bytes()), Some(verb));
            assert_eq!(Verb::parse(name.to_lowercase().as_bytes()), Some(verb));
            let longer = format!("{name}X");
            assert_eq!(Verb::parse(longer.as_bytes()), None, "{longer}");
            let shorter = name.get(..name.len() - 1).unwrap_or_default();
            assert_eq!(Verb::parse(shorter.as_bytes()), None, "{shorter}");
        }
        for word in [&b""[..], b"REQTIMES", b"HELO\0", b"\xc3\x89CHO", b"ECHO "] {
            assert_eq!(Verb::parse(word), None, "{word:?}");
        }
    }

    #[test]
    fn time_and_date_are_in_the_clock_zone_and_zero_padded() {
        let mut h = session(100);
        h.shared.cmd.clock = LocalClock::fixed(UtcOffset::from_hms(2, 0, 0).unwrap());
        h.feed(b"HELO z\nREQTIME\nREQDATE\n");
        let reply = h.take();
        assert!(
            reply.ends_with(b"00:13:20\n2023-11-15\n"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        h.now = SystemTime::UNIX_EPOCH + Duration::from_secs(3_600 * 24 * 31 + 3_661);
        h.shared.cmd.clock = LocalClock::fixed(UtcOffset::UTC);
        h.feed(b"REQTIME\nREQDATE\n");
        assert_eq!(h.take(), b"01:01:01\n1970-02-01\n");
    }

    #[test]
    fn the_system_clock_gives_the_same_shape() {
        let mut h = session(100);
        h.shared.cmd.clock = LocalClock::system();
        h.now = SystemTime::now();
        h.feed(b"HELO z\nREQTIME\nREQDATE\n");
        let reply = String::from_utf8(h.take()).unwrap();
        let lines: Vec<&str> = reply.lines().collect();
        let shape = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        };
        assert_eq!(shape(lines[1]), "99:99:99");
        assert_eq!(shape(lines[2]), "9999-99-99");
    }

    #[test]
    fn anything_but_helo_and_bye_before_helo_is_refused() {
        assert_eq!(
            run(&[b"REQTIME\nECHO x\nFROB\n\nREQTIME now\nHELO\nHELO  \nHELO h\nREQIP\n"]),
            b"ERR say HELO first\nERR say HELO first\nERR say HELO first\nERR say HELO first\n\
              ERR say HELO first\nERR HELO needs a host\nERR HELO needs a host\n\
              Hello h, pleased to meet you.\n127.0.0.1\n"
        );
    }

    #[test]
    fn bye_before_helo_says_goodbye_and_closes() {
        let (reply, closed) = run_with(100, &[b"bye\r\n"]);
        assert_eq!(reply, b"See ya later\n");
        assert!(closed);
    }

    #[test]
    fn lines_after_bye_are_not_answered() {
        let (reply, closed) = run_with(100, &[b"HELO a\nBYE\nECHO late\n"]);
        assert_eq!(reply, b"Hello a, pleased to meet you.\nSee ya later\n");
        assert!(closed);
    }

    #[test]
    fn bye_leaves_the_bytes_after_it_unconsumed() {
        let mut h = session(100);
        let mut cx = Cx::new(&mut h.out, &mut h.shared, &mut h.effects, h.peer, 1, h.now);
        let used = h.session.on_input(b"BYE\nECHO x\n", &mut cx);
        assert_eq!(used, 4);
        assert!(cx.close_requested());
    }

    #[test]
    fn errors_after_helo_keep_the_connection() {
        assert_eq!(
            greeted("FROB x\n\nREQIP 1\nBYE now\nHELO\nECHO still here\n"),
            "ERR unknown command\nERR unknown command\nERR REQIP takes no argument\n\
             ERR BYE takes no argument\nERR HELO needs a host\nstill here\n"
        );
    }

    #[test]
    fn an_empty_argument_is_no_argument() {
        assert_eq!(greeted("REQDATE \nECHO \n"), "2023-11-14\n\n");
    }

    #[test]
    fn helo_host_is_trimmed_and_can_be_changed() {
        assert_eq!(
            run(&[b"HELO  a b \nHELO c\n"]),
            b"Hello a b, pleased to meet you.\nHello c, pleased to meet you.\n"
        );
    }

    #[test]
    fn reqip_shows_an_ipv4_mapped_peer_as_ipv4_and_ipv6_as_is() {
        let mut h = session(100);
        h.peer = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped(), 5));
        h.feed(b"HELO a\nREQIP\n");
        assert!(h.take().ends_with(b"\n192.0.2.7\n"));
        h.peer = SocketAddr::from((Ipv6Addr::LOCALHOST, 5));
        h.feed(b"REQIP\n");
        assert_eq!(h.take(), b"::1\n");
    }

    #[test]
    fn an_over_long_line_is_answered_once_at_every_split() {
        let mut input = b"HELO a\nECHO ".to_vec();
        input.extend_from_slice(&[b'x'; 30]);
        input.extend_from_slice(b"\r\nECHO after\n");
        let expected = b"Hello a, pleased to meet you.\nERR line too long\nafter\n";
        for cut in 0..=input.len() {
            let (reply, _) = run_with(16, &[&input[..cut], &input[cut..]]);
            assert_eq!(reply, expected, "cut {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run_with(16, &bytes).0, expected);
    }

    #[test]
    fn an_over_long_line_before_helo_is_too_long() {
        assert_eq!(run_with(4, &[b"ECHO hello\n"]).0, b"ERR line too long\n");
    }

    #[test]
    fn a_thousand_pipelined_requests_are_answered_in_order() {
        let mut input = b"HELO p\n".to_vec();
        let mut expected = b"Hello p, pleased to meet you.\n".to_vec();
        for i in 0..1000 {
            input.extend_from_slice(format!("ECHO {i}\r\n").as_bytes());
            expected.extend_from_slice(format!("{i}\n").as_bytes());
        }
        input.extend_from_slice(b"BYE\n");
        expected.extend_from_slice(b"See ya later\n");
        assert_eq!(run(&[&input]), expected);
    }

    #[test]
    fn a_stream_ending_inside_a_line_is_told_so() {
        assert_eq!(
            run(&[b"HELO a\nECHO b"]),
            b"Hello a, pleased to meet you.\nERR line not ended by LF\n"
        );
    }

    #[test]
    fn parse_request_splits_at_the_first_space() {
        assert_eq!(
            parse_request(b"echo  a b"),
            Ok(Request {
                verb: Verb::Echo,
                argument: b" a b"
            })
        );
        assert_eq!(parse_request(b"ECHOX"), Err(CmdError::UnknownCommand));
        assert_eq!(parse_request(b"HELO\tx"), Err(CmdError::UnknownCommand));
        assert_eq!(
            parse_request(b"reqtime x"),
            Err(CmdError::NoArgument(Verb::ReqTime))
        );
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        fn arb_line() -> impl Strategy<Value = Vec<u8>> {
            let verb = prop_oneof![
                Just("HELO"),
                Just("helo"),
                Just("REQTIME"),
                Just("reqdate"),
                Just("ECHO"),
                Just("Echo"),
                Just("REQIP"),
                Just("FROB"),
                Just(""),
            ];
            (
                verb,
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                any::<bool>(),
            )
                .prop_map(|(verb, arg, crlf)| {
                    let mut l = verb.as_bytes().to_vec();
                    if let Some(arg) = arg {
                        l.push(b' ');
                        l.extend(arg.into_iter().filter(|&b| b != b'\n'));
                    }
                    if crlf {
                        l.push(b'\r');
                    }
                    l.push(b'\n');
                    l
                })
        }

        proptest! {
            /// Any split of any request stream, byte by byte included, gives
            /// the same replies as the stream whole, one line per request.
            #[test]
            fn any_split_gives_the_same_replies(
                lines in proptest::collection::vec(arb_line(), 1..20),
                cuts in proptest::collection::vec(0usize..1000, 0..12),
            ) {
                let stream = lines.concat();
                let (whole, _) = run_with(16, &[&stream]);
                prop_assert_eq!(whole.iter().filter(|&&b| b == b'\n').count(), lines.len());
                prop_assert_eq!(&run_with(16, &split_at(&stream, &cuts)).0, &whole);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                prop_assert_eq!(&run_with(16, &bytes).0, &whole);
            }
        }
    }
}
