//! # tne — TNE20003 message/acknowledge
//!
//! *The TNE20003 protocol as onepoll serves it. Default port 20003, TCP and
//! UDP.*
//!
//! ## 1. Overview
//!
//! A client sends messages; the server acknowledges each well-formed
//! message by echoing it back, and answers anything else with an error.
//! Over TCP messages are lines, answered one reply line each, in order,
//! pipelined freely. Over UDP each datagram is one message and gets one
//! reply datagram, sent to the datagram's source address.
//!
//! ## 2. Grammar (ABNF, RFC 5234)
//!
//! ```text
//! tcp-message = header msg [CR] LF        ; one CR before LF is dropped
//! udp-message = header msg                 ; the whole datagram
//! header      = %s"TNE20003:"              ; case-sensitive
//! msg         = 1*(%x01-09 / %x0B-7F)      ; ASCII but NUL, no LF
//! ack         = %s"TNE20003:A:" msg        ; msg byte for byte as sent
//! error       = %s"TNE20003:E:" reason     ; reason: a short sentence
//! tcp-reply   = (ack / error) LF
//! udp-reply   = ack / error                ; no LF
//! ```
//!
//! ## 3. Replies
//!
//! | input | reply (TCP adds LF) |
//! |-------|---------------------|
//! | `TNE20003:<msg>`, msg well formed | `TNE20003:A:<msg>` |
//! | an empty line or datagram | `TNE20003:E:empty line` |
//! | anything not starting `TNE20003:` | `TNE20003:E:missing TNE20003 header` |
//! | `TNE20003:` alone | `TNE20003:E:empty message` |
//! | a byte outside 0x01–0x7F in msg | `TNE20003:E:byte outside 0x01-0x7F` |
//! | an LF inside a datagram | `TNE20003:E:LF inside message` |
//! | a line or datagram over `--max-line` bytes | `TNE20003:E:line too long` |
//! | TCP only: the stream ends inside a line | `TNE20003:E:message not ended by LF` |
//!
//! The reasons are [`TneError`]'s `Display`. After an error the connection
//! stays open and the next line is parsed afresh.
//!
//! ## 4. Limits
//!
//! A line (CR and LF not counted) or a datagram may be at most `--max-line`
//! bytes (default 8192), header included. An over-long TCP line is answered
//! once, as soon as it is known to be too long, and the rest of it up to
//! the next LF is discarded as it arrives, never buffered. Over-long and
//! truncated datagrams are answered `line too long` (the server reads
//! datagrams into a buffer larger than `--max-line`).
//!
//! Leniency over UDP: one LF (with one CR before it) ending a datagram is
//! dropped, so that `nc -u`, which sends each typed line with its LF, works.
//! The reply datagram still has no LF.
//!
//! ## 5. Example exchange (TCP)
//!
//! ```text
//! C: TNE20003:hello world
//! S: TNE20003:A:hello world
//! C: hello
//! S: TNE20003:E:missing TNE20003 header
//! C: TNE20003:
//! S: TNE20003:E:empty message
//! C: TNE20003:A:B
//! S: TNE20003:A:A:B
//! ```

use std::fmt;
use std::ops::ControlFlow;

use super::framing::LineFramer;
use super::{Cx, Output, Session};
use crate::config::Protocol;

/// Every message starts with this header.
pub const HEADER: &[u8] = b"TNE20003:";

/// The prefix of an acknowledgement.
pub const ACK: &[u8] = b"TNE20003:A:";

/// The prefix of an error reply.
pub const ERROR: &[u8] = b"TNE20003:E:";

/// Why a message was refused; `Display` is the reason sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TneError {
    /// Nothing at all.
    EmptyLine,
    /// The message does not start with `TNE20003:`.
    MissingHeader,
    /// The header with nothing after it.
    EmptyMessage,
    /// A byte 0x00 or 0x80–0xFF in the message.
    NotAscii,
    /// An LF inside a datagram (over TCP an LF ends the line).
    LfInside,
    /// Longer than `--max-line`.
    TooLong,
    /// TCP: the stream ended inside a line.
    Unterminated,
}

impl TneError {
    /// The reason, as sent after `TNE20003:E:`.
    pub fn reason(self) -> &'static str {
        match self {
            TneError::EmptyLine => "empty line",
            TneError::MissingHeader => "missing TNE20003 header",
            TneError::EmptyMessage => "empty message",
            TneError::NotAscii => "byte outside 0x01-0x7F",
            TneError::LfInside => "LF inside message",
            TneError::TooLong => "line too long",
            TneError::Unterminated => "message not ended by LF",
        }
    }
}

impl fmt::Display for TneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TneError {}

/// Checks one message (a line without its line end, or a datagram) and
/// returns its `<msg>` part, borrowed.
pub fn parse_message(message: &[u8]) -> Result<&[u8], TneError> {
    if message.is_empty() {
        return Err(TneError::EmptyLine);
    }
    let msg = message
        .strip_prefix(HEADER)
        .ok_or(TneError::MissingHeader)?;
    if msg.is_empty() {
        return Err(TneError::EmptyMessage);
    }
    if !has_refused_byte(msg) {
        return Ok(msg);
    }
    // The rare path: which refused byte comes first names the error.
    match msg.iter().find(|&&b| is_refused(b)) {
        Some(b'\n') => Err(TneError::LfInside),
        Some(_) => Err(TneError::NotAscii),
        None => Ok(msg),
    }
}

/// A byte a message may not hold: NUL, LF (only a datagram can hold one)
/// or a byte above 0x7F.
fn is_refused(b: u8) -> bool {
    b == 0 || b == b'\n' || b > 0x7f
}

/// Whether `msg` holds a refused byte. Pure arithmetic on every byte, ORed
/// together, with no early exit: the compiler turns that into vector
/// instructions, where a search that stops at the first hit stays one
/// byte at a time (every well-formed message is scanned to its end anyway).
/// A byte's top bit after the mix below is set exactly when it is refused:
/// `b - 1` wraps for NUL, `b` itself has it above 0x7F, and `x - 1 & !x`
/// (with `x = b ^ LF`) has it only for LF.
fn has_refused_byte(msg: &[u8]) -> bool {
    let mixed = msg.iter().fold(0u8, |acc, &b| {
        let x = b ^ b'\n';
        acc | b.wrapping_sub(1) | b | (x.wrapping_sub(1) & !x)
    });
    mixed & 0x80 != 0
}

/// The reply to a checked message, without a line end, as its two parts:
/// the prefix (`TNE20003:A:` or `TNE20003:E:`) and the message or reason.
pub fn reply_parts(result: Result<&[u8], TneError>) -> [&[u8]; 2] {
    match result {
        Ok(msg) => [ACK, msg],
        Err(error) => [ERROR, error.reason().as_bytes()],
    }
}

/// Appends the TCP reply line for a checked message.
fn put_line(result: Result<&[u8], TneError>, out: &mut Output) {
    let [prefix, text] = reply_parts(result);
    out.put_all(&[prefix, text, b"\n"]);
}

/// A reply datagram is at most this many times as long as the datagram it
/// answers (docs/PROTOCOLS.md, tne; QUIC's limit towards an unvalidated address, RFC 9000
/// section 8): the source address of a datagram can be forged, so a short
/// request must not buy a long reply aimed at someone else.
pub const AMPLIFICATION: usize = 3;

/// The longest a reply datagram may always be, however short the datagram:
/// `TNE20003:E:` with its reason cut to nothing.
pub const MIN_REPLY_CAP: usize = ERROR.len();

/// The longest reply datagram allowed for a datagram of `datagram_len`
/// bytes: the larger of [`AMPLIFICATION`] times it and [`MIN_REPLY_CAP`].
pub fn reply_cap(datagram_len: usize) -> usize {
    datagram_len
        .saturating_mul(AMPLIFICATION)
        .max(MIN_REPLY_CAP)
}

/// Appends to `out` the reply datagram to `datagram` (no LF). `max_line`
/// is the server's `--max-line`; `truncated` says the datagram did not fit
/// the receive buffer, which makes it too long whatever its length.
///
/// The reply is never longer than [`reply_cap`] of the datagram: an error's
/// reason is cut to fit (down to `TNE20003:E:` alone); an ack is never cut
/// (it is at most 2 bytes longer than the datagram, a well-formed message
/// being at least 10 bytes). Returns true when the reason was cut, for the
/// caller to count.
pub fn answer_datagram(
    datagram: &[u8],
    truncated: bool,
    max_line: usize,
    out: &mut Vec<u8>,
) -> bool {
    let message = datagram
        .strip_suffix(b"\n")
        .map_or(datagram, |line| line.strip_suffix(b"\r").unwrap_or(line));
    let result = if truncated || message.len() > max_line {
        Err(TneError::TooLong)
    } else {
        parse_message(message)
    };
    let [prefix, text] = reply_parts(result);
    out.extend_from_slice(prefix);
    if result.is_ok() {
        out.extend_from_slice(text);
        return false;
    }
    // Reasons are ASCII: any byte boundary is a character boundary.
    let room = reply_cap(datagram.len()).saturating_sub(prefix.len());
    let kept = text.get(..room).unwrap_or(text);
    out.extend_from_slice(kept);
    kept.len() < text.len()
}

/// State shared by every tne connection and the UDP socket.
#[derive(Clone, Debug)]
pub struct Shared {
    /// `--max-line`: longest line or datagram.
    pub max_line: usize,
}

impl Shared {
    /// Shared state for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Shared {
        Shared { max_line }
    }
}

/// The tne state machine of one TCP connection.
pub struct TneSession {
    framer: LineFramer,
}

impl TneSession {
    /// A session for lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> TneSession {
        TneSession {
            framer: LineFramer::new(max_line),
        }
    }
}

impl super::Declared for TneSession {
    const DECLARATION: super::Declaration = super::Declaration {
        name: "tne",
        default_port: 20003,
        served_by_default: true,
        transport: super::Transport::TcpAndUdp(answer_datagram),
        server_full: b"TNE20003:E:server full\n",
        too_many_from_address: b"TNE20003:E:too many connections from your address\n",
        flow: super::Flow::RequestReply,
        pacing: super::Pacing::Unpaced,
    };

    fn open(shared: &mut super::Shared) -> TneSession {
        TneSession::new(shared.tne.max_line)
    }
}

impl Session for TneSession {
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        self.framer.each_line(input, |line| {
            cx.shared.counts.request(Protocol::Tne);
            let result = match line {
                Ok(line) => parse_message(line),
                Err(_) => Err(TneError::TooLong),
            };
            put_line(result, cx.out);
            ControlFlow::Continue(())
        })
    }

    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        if self.framer.has_unanswered_partial() {
            put_line(Err(TneError::Unterminated), cx.out);
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

    fn session(max_line: usize) -> Harness<TneSession> {
        Harness::new(TneSession::new(max_line))
    }

    /// `parse_message` written the obvious way, byte at a time: the
    /// reference for the vector-friendly scan.
    fn parse_reference(message: &[u8]) -> Result<&[u8], TneError> {
        let msg = match message.strip_prefix(HEADER) {
            _ if message.is_empty() => return Err(TneError::EmptyLine),
            None => return Err(TneError::MissingHeader),
            Some([]) => return Err(TneError::EmptyMessage),
            Some(msg) => msg,
        };
        match msg.iter().find(|&&b| b == 0 || b == b'\n' || b > 0x7f) {
            None => Ok(msg),
            Some(b'\n') => Err(TneError::LfInside),
            Some(_) => Err(TneError::NotAscii),
        }
    }

    #[test]
    fn a_refused_byte_is_found_at_any_position_and_the_first_names_the_error() {
        let clean = [b'x'; 70];
        for at in 0..clean.len() {
            for (bad, error) in [
                (0u8, TneError::NotAscii),
                (0x80, TneError::NotAscii),
                (0xff, TneError::NotAscii),
                (b'\n', TneError::LfInside),
            ] {
                let mut msg = HEADER.to_vec();
                msg.extend_from_slice(&clean);
                msg[HEADER.len() + at] = bad;
                assert_eq!(parse_message(&msg), Err(error), "{bad:#04x} at {at}");
                // A second, different refused byte later does not matter.
                if at + 40 < clean.len() {
                    msg[HEADER.len() + at + 40] = if bad == b'\n' { 0 } else { b'\n' };
                    assert_eq!(
                        parse_message(&msg),
                        Err(error),
                        "{bad:#04x} at {at}, then another"
                    );
                }
            }
        }
        assert_eq!(
            parse_message(b"TNE20003:\x7f\x01 ok"),
            Ok(&b"\x7f\x01 ok"[..])
        );
    }

    /// Replies to `chunks` fed one read at a time, then end of stream.
    fn run(max_line: usize, chunks: &[&[u8]]) -> Vec<u8> {
        let mut h = session(max_line);
        for chunk in chunks {
            h.feed(chunk);
        }
        h.eof();
        assert!(h.most_carried <= max_line + 1, "carried {}", h.most_carried);
        h.take()
    }

    fn udp(datagram: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        answer_datagram(datagram, false, 20, &mut out);
        out
    }

    /// A datagram padded with trailing `x` bytes to `len`, so that its
    /// error reply has room enough not to be cut.
    fn padded(datagram: &[u8], len: usize) -> Vec<u8> {
        let mut d = datagram.to_vec();
        d.resize(len, b'x');
        d
    }

    #[test]
    fn a_well_formed_message_is_acknowledged_byte_for_byte() {
        assert_eq!(
            run(100, &[b"TNE20003:hello, world! \x01\x7f\r\x1b\n"]),
            b"TNE20003:A:hello, world! \x01\x7f\r\x1b\n"
        );
    }

    #[test]
    fn every_error_case_is_answered_with_its_reason() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"\n", b"TNE20003:E:empty line\n"),
            (b"\r\n", b"TNE20003:E:empty line\n"),
            (b"hello\n", b"TNE20003:E:missing TNE20003 header\n"),
            (b"tne20003:hi\n", b"TNE20003:E:missing TNE20003 header\n"),
            (b"TNE20003\n", b"TNE20003:E:missing TNE20003 header\n"),
            (b"TNE20003:\n", b"TNE20003:E:empty message\n"),
            (
                b"TNE20003:caf\xc3\xa9\n",
                b"TNE20003:E:byte outside 0x01-0x7F\n",
            ),
            (b"TNE20003:a\0b\n", b"TNE20003:E:byte outside 0x01-0x7F\n"),
        ];
        for (input, reply) in cases {
            assert_eq!(run(100, &[input]), reply, "input {input:?}");
        }
    }

    #[test]
    fn the_connection_stays_usable_after_errors() {
        assert_eq!(
            run(100, &[b"x\nTNE20003:\nTNE20003:ok\n"]),
            b"TNE20003:E:missing TNE20003 header\nTNE20003:E:empty message\nTNE20003:A:ok\n"
        );
    }

    #[test]
    fn replies_come_in_order_for_a_thousand_pipelined_messages() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        for i in 0..1000 {
            if i % 10 == 3 {
                input.extend_from_slice(b"bad\r\n");
                expected.extend_from_slice(b"TNE20003:E:missing TNE20003 header\n");
            } else {
                input.extend_from_slice(format!("TNE20003:m{i}\n").as_bytes());
                expected.extend_from_slice(format!("TNE20003:A:m{i}\n").as_bytes());
            }
        }
        assert_eq!(run(100, &[&input]), expected);
    }

    #[test]
    fn an_over_long_line_is_answered_once_at_every_split() {
        let mut input = b"TNE20003:".to_vec();
        input.extend_from_slice(&[b'x'; 30]);
        input.extend_from_slice(b"\r\nTNE20003:after\n");
        let expected = b"TNE20003:E:line too long\nTNE20003:A:after\n";
        for cut in 0..=input.len() {
            assert_eq!(
                run(16, &[&input[..cut], &input[cut..]]),
                expected,
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(16, &bytes), expected);
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_served() {
        let line = b"TNE20003:1234567"; // 16 bytes
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\n");
        assert_eq!(run(16, &[&input]), b"TNE20003:A:1234567\n");
        input.insert(9, b'0');
        assert_eq!(run(16, &[&input]), b"TNE20003:E:line too long\n");
    }

    #[test]
    fn a_stream_ending_inside_a_line_is_told_so() {
        assert_eq!(
            run(100, &[b"TNE20003:a\nTNE20003:b"]),
            b"TNE20003:A:a\nTNE20003:E:message not ended by LF\n"
        );
        assert_eq!(
            run(4, &[b"TNE20003:toolong"]),
            b"TNE20003:E:line too long\n",
            "an over-long tail already answered is not answered twice"
        );
    }

    #[test]
    fn mid_message_tracks_a_partial_line() {
        let mut h = session(100);
        assert!(!h.session.mid_message());
        h.feed(b"TNE2");
        assert!(h.session.mid_message());
        h.feed(b"0003:x\n");
        assert!(!h.session.mid_message());
    }

    #[test]
    fn a_datagram_is_answered_without_lf() {
        assert_eq!(udp(b"TNE20003:hi there"), b"TNE20003:A:hi there");
        assert_eq!(udp(b"TNE20003:"), b"TNE20003:E:empty message");
        assert_eq!(udp(b""), b"TNE20003:E:");
        assert_eq!(
            udp(&padded(b"nope", 12)),
            b"TNE20003:E:missing TNE20003 header"
        );
        assert_eq!(
            udp(&padded(b"TNE20003:\xff", 12)),
            b"TNE20003:E:byte outside 0x01-0x7F"
        );
        assert_eq!(udp(b"TNE20003:a\nb"), b"TNE20003:E:LF inside message");
    }

    #[test]
    fn an_error_reply_is_cut_to_three_times_the_datagram_down_to_the_prefix() {
        let mut out = Vec::new();
        assert!(answer_datagram(b"", false, 20, &mut out), "0 bytes: cut");
        assert_eq!(out, b"TNE20003:E:");
        for (datagram, reply) in [
            (&b"x"[..], &b"TNE20003:E:"[..]),
            (b"\n", b"TNE20003:E:"),
            (b"ab", b"TNE20003:E:"),
            (b"abc", b"TNE20003:E:"),
            (b"abcd", b"TNE20003:E:m"),
            (b"abcde", b"TNE20003:E:miss"),
            (b"TNE20003", b"TNE20003:E:missing TNE20"),
        ] {
            let mut out = Vec::new();
            assert!(
                answer_datagram(datagram, false, 20, &mut out),
                "{datagram:?}"
            );
            assert_eq!(out, reply, "{datagram:?}");
            assert!(out.len() <= reply_cap(datagram.len()));
        }
        // Exactly room enough: not cut.
        let mut out = Vec::new();
        let exact = padded(b"nope", 12);
        assert!(!answer_datagram(&exact, false, 20, &mut out));
        assert_eq!(out.len(), 12 * 3 - 2);
        // Truncated and over-long datagrams are long: never cut.
        let mut out = Vec::new();
        assert!(!answer_datagram(b"TNE20003:ok", true, 100, &mut out));
        assert_eq!(out, b"TNE20003:E:line too long");
    }

    #[test]
    fn an_ack_is_never_cut() {
        for len in 1..30 {
            let d = padded(b"TNE20003:", 9 + len);
            let mut out = Vec::new();
            assert!(!answer_datagram(&d, false, 100, &mut out));
            assert_eq!(out.len(), d.len() + 2);
            let mut with_lf = d.clone();
            with_lf.extend_from_slice(b"\r\n");
            let mut out = Vec::new();
            assert!(!answer_datagram(&with_lf, false, 100, &mut out));
            assert!(out.starts_with(ACK));
        }
    }

    #[test]
    fn a_datagram_ending_in_a_line_end_is_accepted_for_nc_u() {
        assert_eq!(udp(b"TNE20003:hi\n"), b"TNE20003:A:hi");
        assert_eq!(udp(b"TNE20003:hi\r\n"), b"TNE20003:A:hi");
        assert_eq!(udp(b"TNE20003:hi\n\n"), b"TNE20003:E:LF inside message");
    }

    #[test]
    fn an_over_long_or_truncated_datagram_is_too_long() {
        assert_eq!(udp(&[b'x'; 21]), b"TNE20003:E:line too long");
        assert_eq!(udp(&[b'x'; 9]), b"TNE20003:E:missing TNE20003");
        assert_eq!(udp(b"TNE20003:12345678901"), b"TNE20003:A:12345678901");
        let mut out = Vec::new();
        answer_datagram(b"TNE20003:ok", true, 100, &mut out);
        assert_eq!(out, b"TNE20003:E:line too long");
    }

    #[test]
    fn answer_datagram_appends() {
        let mut out = b"x".to_vec();
        answer_datagram(b"TNE20003:y", false, 100, &mut out);
        assert_eq!(out, b"xTNE20003:A:y");
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        fn arb_line() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(1u8..0x80, 0..24).prop_map(|m| {
                    let mut l = b"TNE20003:".to_vec();
                    l.extend(m.into_iter().filter(|&b| b != b'\n'));
                    l
                }),
                proptest::collection::vec(any::<u8>(), 0..40)
                    .prop_map(|l| l.into_iter().filter(|&b| b != b'\n').collect()),
            ]
            .prop_flat_map(|l| (Just(l), any::<bool>()))
            .prop_map(|(mut l, crlf)| {
                if crlf {
                    l.push(b'\r');
                }
                l.push(b'\n');
                l
            })
        }

        proptest! {
            /// The vector-friendly scan agrees with the byte-at-a-time one.
            #[test]
            fn parse_message_matches_the_reference(
                body in proptest::collection::vec(
                    prop_oneof![8 => 1u8..0x80, 1 => Just(0u8), 1 => Just(b'\n'), 1 => 0x80u8..=0xff],
                    0..100,
                ),
                with_header in any::<bool>(),
            ) {
                let message = if with_header { [HEADER, &body].concat() } else { body };
                prop_assert_eq!(parse_message(&message), parse_reference(&message));
            }

            /// No reply datagram passes its cap; a cut reply is the
            /// prefix of the whole one, and an ack is never cut.
            #[test]
            fn a_reply_datagram_never_passes_three_times_the_datagram(
                datagram in proptest::collection::vec(any::<u8>(), 0..40),
                with_header in any::<bool>(),
            ) {
                let datagram = if with_header { [HEADER, &datagram].concat() } else { datagram };
                let mut out = Vec::new();
                let cut = answer_datagram(&datagram, false, 30, &mut out);
                prop_assert!(out.len() <= reply_cap(datagram.len()));
                let trimmed = datagram
                    .strip_suffix(b"\n")
                    .map_or(&datagram[..], |l| l.strip_suffix(b"\r").unwrap_or(l));
                let whole = if trimmed.len() > 30 {
                    [ERROR, TneError::TooLong.reason().as_bytes()].concat()
                } else {
                    reply_parts(parse_message(trimmed)).concat()
                };
                prop_assert_eq!(cut, out.len() < whole.len());
                prop_assert!(whole.starts_with(&out));
                if whole.starts_with(ACK) {
                    prop_assert!(!cut);
                }
            }

            /// Any split of any stream, byte by byte included, gives the
            /// same replies as the stream whole, one line per LF.
            #[test]
            fn any_split_gives_the_same_replies(
                lines in proptest::collection::vec(arb_line(), 1..20),
                cuts in proptest::collection::vec(0usize..1000, 0..12),
            ) {
                let stream = lines.concat();
                let whole = run(24, &[&stream]);
                prop_assert_eq!(whole.iter().filter(|&&b| b == b'\n').count(), lines.len());
                prop_assert_eq!(&run(24, &split_at(&stream, &cuts)), &whole);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                prop_assert_eq!(&run(24, &bytes), &whole);
            }
        }
    }
}
