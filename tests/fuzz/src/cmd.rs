//! Target `cmd`: the HELO command protocol.
//!
//! Input: `[max_line][peer][time: u32][cuts][stream]`; `peer % 3` picks an
//! IPv4, an IPv6 or an IPv4-mapped IPv6 client address; `time` is the
//! clock in seconds since 1970 (the zone is UTC).
//!
//! Invariants, for the stream fed whole, at the fuzzer's split points and
//! byte by byte:
//! - one reply line per request line (over-long ones included) up to and
//!   including `BYE`, and one for a stream ending inside a line; nothing
//!   after `BYE`, which asks to close;
//! - each reply is the reference's, written here from the module's tables
//!   (HELO first, verbs ignoring case, arguments, the time and date
//!   computed from the clock independently of the `time` crate);
//! - at most `max_line + 1` bytes are carried while the connection is open.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use onepoll::proto::cmd::{CmdSession, LocalClock};
use time::UtcOffset;

use super::harness::{reply_lines, Conn};
use super::input::{self, Input};

const VERBS: [&str; 6] = ["HELO", "REQTIME", "REQDATE", "ECHO", "REQIP", "BYE"];

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What the reference needs to know about the connection.
struct Context {
    secs: u64,
    ip: &'static str,
}

/// The reply (without LF) to one line, and whether it was BYE.
fn reference_reply(greeted: &mut bool, line: &[u8], cx: &Context) -> (Vec<u8>, bool) {
    let err = |reason: &str| (format!("ERR {reason}").into_bytes(), false);
    let (word, argument) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &[][..]),
    };
    let verb = VERBS
        .iter()
        .copied()
        .find(|v| v.as_bytes().eq_ignore_ascii_case(word));
    let Some(verb) = verb else {
        return err(if *greeted {
            "unknown command"
        } else {
            "say HELO first"
        });
    };
    let introduces = verb == "HELO" || verb == "BYE";
    if !*greeted && !introduces {
        return err("say HELO first");
    }
    if !matches!(verb, "HELO" | "ECHO") && !argument.is_empty() {
        return err(&format!("{verb} takes no argument"));
    }
    match verb {
        "HELO" => {
            let host = argument.trim_ascii();
            if host.is_empty() {
                return err("HELO needs a host");
            }
            *greeted = true;
            let reply = [b"Hello ", host, b", pleased to meet you."].concat();
            (reply, false)
        }
        "BYE" => (b"See ya later".to_vec(), true),
        "REQTIME" => {
            let s = cx.secs % 86_400;
            let time = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
            (time.into_bytes(), false)
        }
        "REQDATE" => {
            let (y, m, d) = civil((cx.secs / 86_400) as i64);
            (format!("{y:04}-{m:02}-{d:02}").into_bytes(), false)
        }
        "ECHO" => (argument.to_vec(), false),
        _ => (cx.ip.as_bytes().to_vec(), false),
    }
}

/// The reply stream to `stream`, then end of stream: the replies, how
/// many lines they answer (every line up to BYE, and an unended one), and
/// whether the session closes.
fn reference(max_line: usize, stream: &[u8], cx: &Context) -> (Vec<u8>, usize, bool) {
    let (lines, tail) = input::reference_lines(max_line, stream);
    let mut greeted = false;
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let (reply, bye) = match line {
            Some(line) => reference_reply(&mut greeted, line, cx),
            None => (b"ERR line too long".to_vec(), false),
        };
        out.extend(reply);
        out.push(b'\n');
        if bye {
            return (out, i + 1, true);
        }
    }
    let answered = out.len();
    if tail == Some(false) {
        out.extend_from_slice(b"ERR line not ended by LF\n");
    }
    let lines = input::reference_lines(max_line, stream).0.len();
    let unended = usize::from(out.len() > answered);
    (out, lines + unended, false)
}

struct Setup {
    max_line: usize,
    peer: SocketAddr,
    now: SystemTime,
}

fn run(setup: &Setup, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut conn = Conn::new(CmdSession::new(setup.max_line));
    conn.shared.cmd.clock = LocalClock::fixed(UtcOffset::UTC);
    conn.peer = setup.peer;
    conn.now = setup.now;
    for chunk in chunks {
        conn.feed(chunk);
        assert!(
            conn.most_carried <= setup.max_line + 1,
            "carried {} bytes, max_line {}",
            conn.most_carried,
            setup.max_line
        );
    }
    conn.eof();
    assert!(conn.effects.is_empty(), "cmd delivers to nobody else");
    (conn.take(), conn.closed)
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max_line = input::max_line(input.byte());
    let (peer, ip) = match input.byte() % 3 {
        0 => (
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7), 1)),
            "192.0.2.7",
        ),
        1 => (SocketAddr::from((Ipv6Addr::LOCALHOST, 1)), "::1"),
        _ => (
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped(), 1)),
            "192.0.2.7",
        ),
    };
    let secs = u64::from(input.u32());
    let cuts = input.cuts();
    let stream = input.rest();
    let setup = Setup {
        max_line,
        peer,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    };

    let (whole, closed) = run(&setup, &[stream]);
    let (expected, answered, bye) = reference(max_line, stream, &Context { secs, ip });
    let replies = reply_lines(&whole).len();
    assert_eq!(replies, answered, "one reply line per request line");
    assert_eq!(whole, expected, "replies differ from the tables'");
    assert_eq!(closed, bye, "closes exactly after BYE");
    assert_eq!(
        run(&setup, &input::split(stream, &cuts)),
        (whole.clone(), closed),
        "a split changed the replies"
    );
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&setup, &bytes), (whole, closed), "byte by byte differs");
}
