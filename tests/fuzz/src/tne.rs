//! Target `tne`: the TNE20003 core over TCP (a session) and over UDP
//! ([`answer_datagram`]).
//!
//! Input: `[max_line][flags][cuts][stream]`; bit 0 of `flags` marks the
//! datagram truncated.
//!
//! Invariants:
//! - TCP: the replies are exactly the reference's (written here from the
//!   module's table), for the stream fed whole, at the fuzzer's split
//!   points and byte by byte; every reply line starts `TNE20003:A:` or
//!   `TNE20003:E:`, and there is one per input line, over-long ones and an
//!   unterminated last one included; at most `max_line + 1` bytes are
//!   carried; `mid_message` is false once every line has ended.
//! - UDP: the stream as one datagram gets the reference's reply, starting
//!   `TNE20003:A:` or `TNE20003:E:`, with no LF, appended after what the
//!   buffer held; never longer than 3x the datagram or 11 bytes (an
//!   error's reason is cut to fit, an ack never).

use onepoll::proto::tne::{answer_datagram, TneSession};
use onepoll::proto::Session;

use super::harness::{reply_lines, show, Conn};
use super::input::{self, Input};

const ACK: &[u8] = b"TNE20003:A:";
const ERR: &[u8] = b"TNE20003:E:";

/// The reply to one message (a line without its end, or a datagram
/// without its optional line end), without LF, from the module's table.
fn reference_reply(message: &[u8]) -> Vec<u8> {
    let error = |reason: &str| [ERR, reason.as_bytes()].concat();
    if message.is_empty() {
        return error("empty line");
    }
    let Some(msg) = message.strip_prefix(b"TNE20003:") else {
        return error("missing TNE20003 header");
    };
    if msg.is_empty() {
        return error("empty message");
    }
    for &b in msg {
        if b == b'\n' {
            return error("LF inside message");
        }
        if b == 0 || b > 0x7f {
            return error("byte outside 0x01-0x7F");
        }
    }
    [ACK, msg].concat()
}

/// The reply stream to `stream` over TCP, then end of stream.
fn reference_tcp(max_line: usize, stream: &[u8]) -> Vec<u8> {
    let (lines, tail) = input::reference_lines(max_line, stream);
    let mut out = Vec::new();
    for line in lines {
        match line {
            Some(line) => out.extend(reference_reply(line)),
            None => out.extend_from_slice(b"TNE20003:E:line too long"),
        }
        out.push(b'\n');
    }
    if tail == Some(false) {
        out.extend_from_slice(b"TNE20003:E:message not ended by LF\n");
    }
    out
}

fn run_tcp(max_line: usize, chunks: &[&[u8]]) -> Vec<u8> {
    let mut conn = Conn::new(TneSession::new(max_line));
    for chunk in chunks {
        conn.feed(chunk);
        assert!(
            conn.most_carried <= max_line + 1,
            "carried {} bytes, max_line {max_line}",
            conn.most_carried
        );
    }
    assert_eq!(
        conn.session.mid_message(),
        !conn.carried.is_empty() || chunks.concat().last().is_some_and(|&b| b != b'\n'),
        "mid_message at the end"
    );
    conn.eof();
    assert!(conn.effects.is_empty(), "tne delivers to nobody else");
    assert!(!conn.closed, "tne never closes on its own");
    conn.take()
}

fn check_tcp(max_line: usize, cuts: &[u16], stream: &[u8]) {
    let whole = run_tcp(max_line, &[stream]);
    let lines = reply_lines(&whole);
    for line in &lines {
        assert!(
            line.starts_with(ACK) || line.starts_with(ERR),
            "malformed reply line {:?}",
            show(line)
        );
    }
    let input_lines = stream.iter().filter(|&&b| b == b'\n').count();
    let unended = usize::from(stream.last().is_some_and(|&b| b != b'\n'));
    assert_eq!(
        lines.len(),
        input_lines + unended,
        "one reply per input line"
    );
    assert_eq!(
        whole,
        reference_tcp(max_line, stream),
        "replies differ from the table's"
    );
    assert_eq!(
        run_tcp(max_line, &input::split(stream, cuts)),
        whole,
        "a split changed the replies"
    );
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run_tcp(max_line, &bytes), whole, "byte by byte differs");
}

fn check_udp(max_line: usize, truncated: bool, datagram: &[u8]) {
    let mut out = b"before".to_vec();
    let cut = answer_datagram(datagram, truncated, max_line, &mut out);
    let reply = out
        .strip_prefix(b"before")
        .expect("answer_datagram appends");
    assert!(
        reply.starts_with(ACK) || reply.starts_with(ERR),
        "malformed datagram reply {:?}",
        show(reply)
    );
    assert!(!reply.contains(&b'\n'), "a reply datagram has no LF");
    let message = datagram
        .strip_suffix(b"\n")
        .map_or(datagram, |l| l.strip_suffix(b"\r").unwrap_or(l));
    let whole = if truncated || message.len() > max_line {
        b"TNE20003:E:line too long".to_vec()
    } else {
        reference_reply(message)
    };
    // Never more than 3x the datagram (at least 11 bytes): an error's
    // reason is cut to fit, an ack never.
    let cap = (3 * datagram.len()).max(ERR.len());
    let mut expected = whole.clone();
    if expected.starts_with(ERR) {
        expected.truncate(cap);
    }
    assert!(reply.len() <= cap, "a reply passes 3x the datagram");
    assert_eq!(cut, expected.len() < whole.len(), "cut is reported");
    assert_eq!(
        reply,
        &expected[..],
        "datagram reply differs from the table's"
    );
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max_line = input::max_line(input.byte());
    let truncated = input.byte() & 1 == 1;
    let cuts = input.cuts();
    let stream = input.rest();
    check_tcp(max_line, &cuts, stream);
    check_udp(max_line, truncated, stream);
}
