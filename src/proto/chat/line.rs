//! A minimal line framer for chat: LF-ended lines, one CR before the LF
//! dropped, at most `max_line` bytes, an over-long line reported once and
//! its rest discarded up to the next LF without being kept.
//!
//! Interim: this is to be replaced by the shared `proto::framing` line
//! framer once it is merged; [`LineSplitter::next`] is the only seam.

/// What [`LineSplitter::next`] found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A complete line, CR and LF removed.
    Line(&'a [u8]),
    /// A line passed the limit: report it once; its rest is being discarded.
    TooLong,
    /// The rest of an over-long line was discarded, up to its LF.
    Discarded,
    /// No complete line: stop. Unconsumed bytes (the start of a line) are
    /// to be offered again with more; bytes being discarded are consumed.
    Incomplete,
}

/// Splits a byte stream into lines, carrying only its own state: the
/// caller keeps unconsumed bytes and offers them again (the [`Session`]
/// input contract).
///
/// [`Session`]: crate::proto::Session
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    /// Dropping bytes up to the next LF.
    discarding: bool,
    /// Bytes at the start of the offered input already searched for LF
    /// (the incomplete line carried from the last call): never rescanned,
    /// so a line arriving byte by byte costs linear time.
    searched: usize,
}

impl LineSplitter {
    /// Frames the start of `input` with lines of at most `max_line` bytes;
    /// returns what was found and how many bytes it consumed.
    pub(super) fn next<'a>(&mut self, input: &'a [u8], max_line: usize) -> (Frame<'a>, usize) {
        let from = self.searched.min(input.len());
        let lf = input
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|at| from + at);
        self.searched = 0;
        match lf {
            Some(at) => {
                let consumed = at + 1;
                if std::mem::take(&mut self.discarding) {
                    return (Frame::Discarded, consumed);
                }
                let line = &input[..at];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > max_line {
                    (Frame::TooLong, consumed)
                } else {
                    (Frame::Line(line), consumed)
                }
            }
            None if self.discarding => (Frame::Incomplete, input.len()),
            None if too_long_so_far(input, max_line) => {
                self.discarding = true;
                (Frame::TooLong, input.len())
            }
            None => {
                self.searched = input.len();
                (Frame::Incomplete, 0)
            }
        }
    }
}

/// Whether an incomplete line is already known to be too long: more than
/// `max_line` bytes, unless the one extra byte is a CR that an LF may follow.
fn too_long_so_far(partial: &[u8], max_line: usize) -> bool {
    partial.len() > max_line.saturating_add(1)
        || (partial.len() == max_line.saturating_add(1) && !partial.ends_with(b"\r"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `input` in one call after another, as a session does; returns
    /// the frames found and the bytes left unconsumed.
    fn frames(splitter: &mut LineSplitter, input: &[u8], max: usize) -> (Vec<String>, usize) {
        let mut found = Vec::new();
        let mut at = 0;
        loop {
            let (frame, used) = splitter.next(&input[at..], max);
            at += used;
            match frame {
                Frame::Line(l) => found.push(String::from_utf8_lossy(l).into_owned()),
                Frame::TooLong => found.push("<too long>".into()),
                Frame::Discarded => {}
                Frame::Incomplete => return (found, input.len() - at),
            }
        }
    }

    #[test]
    fn one_cr_before_lf_is_dropped() {
        let (f, left) = frames(&mut LineSplitter::default(), b"a\r\nb\n\r\r\nc", 8);
        assert_eq!(f, ["a", "b", "\r"]);
        assert_eq!(left, 1);
    }

    #[test]
    fn a_line_of_max_bytes_passes_with_or_without_cr() {
        let (f, _) = frames(&mut LineSplitter::default(), b"abcd\nabcd\r\n", 4);
        assert_eq!(f, ["abcd", "abcd"]);
        let mut s = LineSplitter::default();
        assert_eq!(frames(&mut s, b"abcd\r", 4), (vec![], 5));
        assert_eq!(frames(&mut s, b"abcd\r\n", 4), (vec!["abcd".into()], 0));
    }

    #[test]
    fn over_long_line_is_reported_once_and_discarded_to_lf() {
        let mut s = LineSplitter::default();
        assert_eq!(frames(&mut s, b"abcde", 4), (vec!["<too long>".into()], 0));
        assert_eq!(frames(&mut s, b"fgh", 4), (vec![], 0));
        assert_eq!(frames(&mut s, b"ij\nok\n", 4), (vec!["ok".into()], 0));
        let (f, _) = frames(&mut LineSplitter::default(), b"abcde\nok\n", 4);
        assert_eq!(f, ["<too long>", "ok"]);
    }
}
