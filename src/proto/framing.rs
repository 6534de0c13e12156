//! The line framer shared by the text protocols (tne, cmd, chat).
//!
//! A push parser in the style of `httparse` and tokio-util's `LinesCodec`:
//! the caller owns the bytes, the framer owns only a few words of state and
//! hands back complete lines borrowed from the input (no copy). The framer
//! implements the spec's line rules once:
//!
//! - a line is the bytes up to and excluding LF; one CR immediately before
//!   the LF is dropped, so telnet and `nc -C` work;
//! - a line may be at most `max_line` bytes, CR and LF not counted. A longer
//!   line is reported **once**, as [`Frame::TooLong`], as soon as it cannot
//!   fit (often before its LF arrives); its bytes are consumed, and the rest
//!   of it up to the next LF is consumed as it arrives (discarded, never
//!   carried). The line after that LF is framed afresh;
//! - at most `max_line + 1` bytes are ever left unconsumed, so what a
//!   connection carries between reads is bounded by `--max-line`;
//! - search is linear: the framer remembers how many bytes of the
//!   unconsumed input it has already searched for LF, so a partial line
//!   carried across many reads is never searched twice.
//!
//! It follows the input contract of [`Session::on_input`](super::Session):
//! bytes not consumed are offered again, at the start of the next input,
//! with more appended. Feeding the framer anything else (dropping carried
//! bytes, say) is not unsafe, merely wrong: the framer searches again from
//! the start when the input is shorter than what it had searched.

use std::fmt;
use std::ops::ControlFlow;

/// What [`LineFramer::decode`] found at the start of the unconsumed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line, without its LF and without one CR just before it.
    Line(&'a [u8]),
    /// A line longer than the limit. Reported once per over-long line; the
    /// rest of that line is discarded as it arrives.
    TooLong,
    /// No complete line yet: offer the unconsumed bytes again with more
    /// appended.
    NeedMore,
}

/// The error of a line longer than the limit, for cores that handle lines
/// as `Result`s (see [`LineFramer::each_line`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("line too long")
    }
}

impl std::error::Error for LineTooLong {}

/// Splits a byte stream into lines, one connection's worth of state.
#[derive(Clone, Debug)]
pub struct LineFramer {
    max_line: usize,
    /// Bytes at the start of the unconsumed input already searched for LF
    /// (none was there).
    scanned: usize,
    /// Inside an over-long line already reported: everything up to and
    /// including the next LF is dropped.
    discarding: bool,
    /// Bytes searched for LF over the framer's life, to prove the search is
    /// linear.
    #[cfg(test)]
    searched: usize,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes (CR and LF not
    /// counted).
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            max_line,
            scanned: 0,
            discarding: false,
            #[cfg(test)]
            searched: 0,
        }
    }

    /// The longest line accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// True while a line has begun and not ended: unconsumed bytes are
    /// waiting for their LF, or an over-long line is being discarded.
    pub fn mid_line(&self) -> bool {
        self.scanned > 0 || self.discarding
    }

    /// True when the stream stopped inside a line that has not been
    /// answered: bytes without an LF are carried, and they are not the rest
    /// of an over-long line already reported. Meaningful at end of stream.
    pub fn has_unanswered_partial(&self) -> bool {
        self.scanned > 0 && !self.discarding
    }

    /// Decodes the next frame at the start of `input`, the unconsumed bytes
    /// (see the module doc). Returns the frame and how many bytes of `input`
    /// it consumed; the caller drops those bytes before the next call. With
    /// [`Frame::NeedMore`] the count may be non-zero (the discarded tail of
    /// an over-long line) and the caller stops until more bytes arrive.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> (Frame<'a>, usize) {
        let mut skipped = 0;
        if self.discarding {
            let found = find_lf(input);
            #[cfg(test)]
            {
                self.searched += found.map_or(input.len(), |i| i + 1);
            }
            match found {
                None => return (Frame::NeedMore, input.len()),
                Some(lf) => {
                    self.discarding = false;
                    self.scanned = 0;
                    skipped = lf + 1;
                }
            }
        }
        let rest = input.get(skipped..).unwrap_or_default();
        let from = if self.scanned <= rest.len() {
            self.scanned
        } else {
            0
        };
        let found = rest.get(from..).and_then(find_lf).map(|i| from + i);
        #[cfg(test)]
        {
            self.searched += found.map_or(rest.len(), |i| i + 1) - from;
        }
        match found {
            Some(lf) => {
                self.scanned = 0;
                let (line, _) = rest.split_at(lf);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let frame = if line.len() > self.max_line {
                    Frame::TooLong
                } else {
                    Frame::Line(line)
                };
                (frame, skipped + lf + 1)
            }
            None => {
                // A CR at the very end may yet be dropped (if an LF follows),
                // so it does not count against the limit yet.
                let at_least = rest.len() - usize::from(rest.last() == Some(&b'\r'));
                if at_least > self.max_line {
                    self.scanned = 0;
                    self.discarding = true;
                    (Frame::TooLong, skipped + rest.len())
                } else {
                    self.scanned = rest.len();
                    (Frame::NeedMore, skipped)
                }
            }
        }
    }

    /// Calls `handle` with every line of `input` (or [`LineTooLong`] for an
    /// over-long one), in order, until the input runs out of complete lines
    /// or `handle` breaks; returns the bytes consumed. After a break, the
    /// bytes after the line that broke are left unconsumed.
    pub fn each_line<'a>(
        &mut self,
        input: &'a [u8],
        mut handle: impl FnMut(Result<&'a [u8], LineTooLong>) -> ControlFlow<()>,
    ) -> usize {
        let mut pos = 0;
        loop {
            let (frame, used) = self.decode(input.get(pos..).unwrap_or_default());
            pos += used;
            let item = match frame {
                Frame::Line(line) => Ok(line),
                Frame::TooLong => Err(LineTooLong),
                Frame::NeedMore => return pos,
            };
            if handle(item).is_break() {
                return pos;
            }
        }
    }
}

/// Index of the first LF in `bytes` (SIMD search: see benches/framing.rs).
/// An empty input, which every batch of lines ends on, is answered here
/// rather than through memchr's dispatch.
#[inline]
fn find_lf(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a core sees: every frame, with the carried bytes handled as the
    /// connection does (unconsumed input offered again with the next chunk).
    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Event {
        Line(Vec<u8>),
        TooLong,
    }

    fn feed(max_line: usize, chunks: &[&[u8]]) -> (Vec<Event>, usize) {
        let mut framer = LineFramer::new(max_line);
        let mut carried = Vec::new();
        let mut events = Vec::new();
        let mut most_carried = 0;
        for chunk in chunks {
            carried.extend_from_slice(chunk);
            let used = framer.each_line(&carried, |item| {
                events.push(match item {
                    Ok(line) => Event::Line(line.to_vec()),
                    Err(LineTooLong) => Event::TooLong,
                });
                ControlFlow::Continue(())
            });
            carried.drain(..used);
            most_carried = most_carried.max(carried.len());
        }
        (events, most_carried)
    }

    fn line(s: &str) -> Event {
        Event::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_end_at_lf_and_one_cr_before_it_is_dropped() {
        let (events, _) = feed(100, &[b"a\nb\r\nc\r\r\n\r\n\n"]);
        assert_eq!(
            events,
            [line("a"), line("b"), line("c\r"), line(""), line("")]
        );
    }

    #[test]
    fn a_cr_not_before_lf_is_kept() {
        let (events, _) = feed(100, &[b"a\rb\n"]);
        assert_eq!(events, [line("a\rb")]);
    }

    #[test]
    fn a_partial_line_waits_for_its_lf() {
        let mut framer = LineFramer::new(100);
        assert_eq!(framer.decode(b"abc"), (Frame::NeedMore, 0));
        assert!(framer.mid_line());
        assert_eq!(framer.decode(b"abcd\nx"), (Frame::Line(b"abcd"), 5));
        assert_eq!(framer.decode(b"x"), (Frame::NeedMore, 0));
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_accepted_with_or_without_cr() {
        let (events, _) = feed(3, &[b"abc\nabc\r\n"]);
        assert_eq!(events, [line("abc"), line("abc")]);
        let (events, _) = feed(3, &[b"abc", b"\r", b"\n"]);
        assert_eq!(events, [line("abc")]);
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_its_rest_discarded() {
        let (events, _) = feed(3, &[b"abcd", b"efgh", b"ij\nok\n"]);
        assert_eq!(events, [Event::TooLong, line("ok")]);
    }

    #[test]
    fn an_over_long_line_is_reported_before_its_lf_arrives() {
        let mut framer = LineFramer::new(3);
        assert_eq!(framer.decode(b"abcd"), (Frame::TooLong, 4));
        assert_eq!(framer.decode(b"efg"), (Frame::NeedMore, 3));
        assert!(framer.mid_line());
        assert!(!framer.has_unanswered_partial());
        assert_eq!(framer.decode(b"h\nok\n"), (Frame::Line(b"ok"), 5));
        assert!(!framer.mid_line());
    }

    #[test]
    fn an_over_long_line_complete_in_one_input_is_consumed_through_its_lf() {
        let mut framer = LineFramer::new(3);
        assert_eq!(framer.decode(b"abcd\nok\n"), (Frame::TooLong, 5));
        assert_eq!(framer.decode(b"ok\n"), (Frame::Line(b"ok"), 3));
    }

    #[test]
    fn carried_bytes_never_exceed_max_line_plus_one() {
        let long = vec![b'x'; 10_000];
        let chunks: Vec<&[u8]> = long.chunks(7).collect();
        let (events, most) = feed(64, &chunks);
        assert_eq!(events, [Event::TooLong]);
        assert!(most <= 65, "carried {most} bytes");
    }

    #[test]
    fn max_line_zero_accepts_only_empty_lines() {
        let (events, _) = feed(0, &[b"\n\r\na\n"]);
        assert_eq!(events, [line(""), line(""), Event::TooLong]);
    }

    #[test]
    fn each_line_stops_where_the_handler_breaks() {
        let mut framer = LineFramer::new(10);
        let mut seen = Vec::new();
        let used = framer.each_line(b"a\nBYE\nc\n", |item| {
            let l = item.unwrap();
            seen.push(l.to_vec());
            if l == b"BYE" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(used, 6);
        assert_eq!(seen, [b"a".to_vec(), b"BYE".to_vec()]);
    }

    #[test]
    fn unanswered_partial_is_known_at_end_of_stream() {
        let mut framer = LineFramer::new(10);
        assert!(!framer.has_unanswered_partial());
        framer.each_line(b"a\nbc", |_| ControlFlow::Continue(()));
        assert!(framer.has_unanswered_partial());
    }

    #[test]
    fn a_shorter_input_than_was_searched_is_searched_again() {
        let mut framer = LineFramer::new(100);
        assert_eq!(framer.decode(b"abcdef"), (Frame::NeedMore, 0));
        assert_eq!(framer.decode(b"a\n"), (Frame::Line(b"a"), 2));
    }

    #[test]
    fn a_long_partial_line_is_searched_once_not_per_read() {
        // 20,000 one-byte reads of a 20,000-byte line: a framer that
        // searched the carried bytes again on each read would search 2e8.
        let n = 20_000;
        let mut framer = LineFramer::new(n);
        let mut carried = Vec::with_capacity(n + 1);
        for _ in 0..n {
            carried.push(b'x');
            assert_eq!(framer.decode(&carried), (Frame::NeedMore, 0));
        }
        carried.push(b'\n');
        let (frame, used) = framer.decode(&carried);
        assert_eq!(used, carried.len());
        assert!(matches!(frame, Frame::Line(l) if l.len() == n));
        assert_eq!(framer.searched, n + 1, "every byte searched once");
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    2 => Just(b'\n'),
                    2 => Just(b'\r'),
                    1 => Just(b'a'),
                ],
                0..200,
            )
        }

        /// The spec's definition, written the slow obvious way.
        fn reference(max_line: usize, stream: &[u8]) -> Vec<Event> {
            let mut events = Vec::new();
            let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
            // The bytes after the last LF are not a line, but are reported
            // as soon as they cannot fit (a CR at the end may yet be dropped).
            let tail = parts.pop().unwrap_or_default();
            for part in parts {
                let line = part.strip_suffix(b"\r").unwrap_or(part);
                events.push(if line.len() > max_line {
                    Event::TooLong
                } else {
                    Event::Line(line.to_vec())
                });
            }
            let tail_at_least = tail.len() - usize::from(tail.last() == Some(&b'\r'));
            if tail_at_least > max_line {
                events.push(Event::TooLong);
            }
            events
        }

        proptest! {
            /// Any split of any stream, byte by byte included, gives the
            /// lines of the spec's definition, and carries at most
            /// max_line + 1 bytes.
            #[test]
            fn any_split_gives_the_spec_lines(
                stream in arb_stream(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
                max_line in 0usize..12,
            ) {
                let expected = reference(max_line, &stream);
                let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                let chunks = crate::proto::testing::split_at(&stream, &cuts);
                let (events, most) = feed(max_line, &chunks);
                prop_assert_eq!(&events, &expected);
                prop_assert!(most <= max_line + 1);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                let (events, most) = feed(max_line, &bytes);
                prop_assert_eq!(&events, &expected);
                prop_assert!(most <= max_line + 1);
            }
        }
    }
}
