//! Reply checkers: streaming, allocation-free comparisons of what a server
//! sends against what the spec demands, fed the bytes of each read as they
//! come, at any split. A wrong byte is an error with its offset.

use std::fmt;

use super::script::Expect;
use crate::proto::transform::{is_possible_edit, MAX_REPEAT};

/// The server sent a byte the spec does not allow here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the wrong byte within its reply (for a shuffle's data:
    /// the end of the data, where the permutation is found wrong).
    pub offset: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrong reply byte at offset {}", self.offset)
    }
}

impl std::error::Error for Mismatch {}

/// Where a connection is in its stream of replies, each of which must
/// match one [`Expect`].
#[derive(Debug, Default)]
pub struct Checker {
    pos: usize,
    counts: Option<Box<[u32; 256]>>,
    /// A random edit's reply: its header, then its data as it arrives.
    edit: Vec<u8>,
}

impl Checker {
    /// A checker at the start of a reply.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Whether part of a reply has arrived and not the rest.
    pub fn mid_reply(&self) -> bool {
        self.pos != 0
    }

    /// Checks `input`, the next bytes of the reply stream, against replies
    /// that each must match `expect`; returns how many replies it
    /// completed.
    pub fn feed(&mut self, expect: &Expect, input: &[u8]) -> Result<usize, Mismatch> {
        self.feed_upto(expect, input, usize::MAX)
            .map(|(_, done)| done)
    }

    /// Like [`Checker::feed`], but stops after `max` completed replies;
    /// returns the bytes consumed and the replies completed. Bytes left over
    /// are more than was asked for.
    pub fn feed_upto(
        &mut self,
        expect: &Expect,
        input: &[u8],
        max: usize,
    ) -> Result<(usize, usize), Mismatch> {
        if expect.is_empty() {
            return Ok((0, 0));
        }
        let mut done = 0;
        let mut used = 0;
        while used < input.len() && done < max {
            let rest = input.get(used..).unwrap_or_default();
            let (n, complete) = match expect {
                Expect::Exact(bytes) => self.step_exact(bytes, rest)?,
                Expect::Permutation {
                    header,
                    counts,
                    len,
                } => self.step_permutation(header, counts, *len, rest)?,
                Expect::Edit { data } => self.step_edit(data, rest)?,
            };
            used += n;
            done += usize::from(complete);
        }
        Ok((used, done))
    }

    /// Consumes bytes of the current reply; says whether it completed.
    fn step_exact(&mut self, bytes: &[u8], input: &[u8]) -> Result<(usize, bool), Mismatch> {
        let want = bytes.get(self.pos..).unwrap_or_default();
        let n = want.len().min(input.len());
        let (want, got) = (
            want.get(..n).unwrap_or_default(),
            input.get(..n).unwrap_or_default(),
        );
        // Slice equality is a memcmp; look for the byte only on a mismatch.
        if want != got {
            let i = want.iter().zip(got).position(|(w, g)| w != g).unwrap_or(0);
            return Err(Mismatch {
                offset: self.pos + i,
            });
        }
        self.pos += n;
        if self.pos == bytes.len() {
            self.pos = 0;
            return Ok((n, true));
        }
        Ok((n, false))
    }

    fn step_permutation(
        &mut self,
        header: &[u8; 4],
        expected: &[u32; 256],
        len: usize,
        input: &[u8],
    ) -> Result<(usize, bool), Mismatch> {
        let mut used = 0;
        if self.pos < 4 {
            let n = (4 - self.pos).min(input.len());
            let want = header.get(self.pos..self.pos + n).unwrap_or_default();
            if let Some(i) = want.iter().zip(input).position(|(w, g)| w != g) {
                return Err(Mismatch {
                    offset: self.pos + i,
                });
            }
            self.pos += n;
            used = n;
            if self.pos < 4 {
                return Ok((used, false));
            }
        }
        let counts = self.counts.get_or_insert_with(|| Box::new([0; 256]));
        let n = (4 + len - self.pos).min(input.len() - used);
        for &b in input.get(used..used + n).unwrap_or_default() {
            if let Some(count) = counts.get_mut(usize::from(b)) {
                *count += 1;
            }
        }
        self.pos += n;
        used += n;
        if self.pos < 4 + len {
            return Ok((used, false));
        }
        let ok = counts[..] == expected[..];
        counts.fill(0);
        self.pos = 0;
        match ok {
            true => Ok((used, true)),
            false => Err(Mismatch { offset: 4 + len }),
        }
    }
}

impl Checker {
    /// Consumes bytes of a random edit's reply: a length that the edit of
    /// `data` can have, then that many bytes, checked once all are here.
    fn step_edit(&mut self, data: &[u8], input: &[u8]) -> Result<(usize, bool), Mismatch> {
        let mut used = 0;
        if self.pos < 4 {
            let n = (4 - self.pos).min(input.len());
            self.edit
                .extend_from_slice(input.get(..n).unwrap_or_default());
            self.pos += n;
            used = n;
            if self.pos < 4 {
                return Ok((used, false));
            }
        }
        let len = match self.edit.get(..4) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]) as usize,
            _ => 0,
        };
        if len > data.len() * MAX_REPEAT || (len == 0) != data.is_empty() {
            self.reset_edit();
            return Err(Mismatch { offset: 0 });
        }
        let n = (4 + len - self.pos).min(input.len() - used);
        self.edit
            .extend_from_slice(input.get(used..used + n).unwrap_or_default());
        self.pos += n;
        used += n;
        if self.pos < 4 + len {
            return Ok((used, false));
        }
        let ok = is_possible_edit(data, self.edit.get(4..).unwrap_or_default());
        self.reset_edit();
        match ok {
            true => Ok((used, true)),
            false => Err(Mismatch { offset: 4 + len }),
        }
    }

    fn reset_edit(&mut self) {
        self.edit.clear();
        self.pos = 0;
    }
}

/// Skips a greeting line that must start with a known prefix (chat's
/// `WELCOME `), across reads.
#[derive(Debug, Default)]
pub struct LineSkip {
    matched: usize,
}

impl LineSkip {
    /// A skipper at the start of the line.
    pub fn new() -> LineSkip {
        LineSkip::default()
    }

    /// Feeds the next bytes: `Ok(Some(n))` when the line ended after `n`
    /// of them, `Ok(None)` when all were part of it, `Err` when the line
    /// does not start with `prefix`.
    pub fn feed(&mut self, prefix: &[u8], input: &[u8]) -> Result<Option<usize>, Mismatch> {
        for (i, &b) in input.iter().enumerate() {
            if self.matched < prefix.len() {
                if prefix.get(self.matched) != Some(&b) {
                    return Err(Mismatch {
                        offset: self.matched,
                    });
                }
                self.matched += 1;
            } else if b == b'\n' {
                self.matched = 0;
                return Ok(Some(i + 1));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::script::transform;
    use crate::proto::transform::{Action, Table};

    fn exact(b: &[u8]) -> Expect {
        Expect::Exact(b.to_vec())
    }

    #[test]
    fn exact_replies_are_counted_at_any_split() {
        let e = exact(b"TNE20003:A:hi\n");
        let stream = b"TNE20003:A:hi\nTNE20003:A:hi\nTNE20003:A:hi\n";
        for split in 0..stream.len() {
            for split2 in split..stream.len() {
                let mut c = Checker::new();
                let (a, rest) = stream.split_at(split);
                let (b, d) = rest.split_at(split2 - split);
                let total =
                    c.feed(&e, a).unwrap() + c.feed(&e, b).unwrap() + c.feed(&e, d).unwrap();
                assert_eq!(total, 3);
                assert!(!c.mid_reply());
            }
        }
    }

    #[test]
    fn a_wrong_byte_is_a_mismatch_at_its_offset() {
        let e = exact(b"HELLO\n");
        let mut c = Checker::new();
        assert_eq!(c.feed(&e, b"HELLO\nHE"), Ok(1));
        assert!(c.mid_reply());
        assert_eq!(c.feed(&e, b"LP"), Err(Mismatch { offset: 3 }));
    }

    #[test]
    fn feeding_stops_after_the_replies_asked_for() {
        let e = exact(b"ok\n");
        let mut c = Checker::new();
        assert_eq!(c.feed_upto(&e, b"ok\nok\nok", 2), Ok((6, 2)));
        assert_eq!(c.feed_upto(&e, b"ok\nok\nok", 0), Ok((0, 0)));
        assert_eq!(c.feed_upto(&exact(b""), b"x", 5), Ok((0, 0)));
    }

    #[test]
    fn shuffle_accepts_any_permutation_and_refuses_other_bytes() {
        let s = transform(Table::Y2021, Action::Shuffle, b"abca").unwrap();
        let mut c = Checker::new();
        assert_eq!(c.feed(&s.expect, b"\0\0\0\x04caab\0\0"), Ok(1));
        assert_eq!(c.feed(&s.expect, b"\0\x04aacb"), Ok(1));
        assert_eq!(
            c.feed(&s.expect, b"\0\0\0\x04aacc"),
            Err(Mismatch { offset: 8 })
        );
        let mut c = Checker::new();
        assert_eq!(
            c.feed(&s.expect, b"\0\0\0\x05error"),
            Err(Mismatch { offset: 3 })
        );
    }

    #[test]
    fn an_empty_shuffle_is_just_its_header() {
        let s = transform(Table::Y2021, Action::Shuffle, b"").unwrap();
        let mut c = Checker::new();
        assert_eq!(c.feed(&s.expect, b"\0\0\0\0\0\0\0\0"), Ok(2));
    }

    #[test]
    fn the_error_reply_is_not_an_uppercase_reply() {
        let s = transform(Table::Y2021, Action::Uppercase, b"hello").unwrap();
        let mut c = Checker::new();
        assert_eq!(
            c.feed(&s.expect, b"\0\0\0\x05error"),
            Err(Mismatch { offset: 4 })
        );
    }

    #[test]
    fn a_greeting_line_is_skipped_across_reads() {
        let mut s = LineSkip::new();
        assert_eq!(s.feed(b"WELCOME ", b"WELC"), Ok(None));
        assert_eq!(s.feed(b"WELCOME ", b"OME guest1"), Ok(None));
        assert_eq!(s.feed(b"WELCOME ", b"7\nrest"), Ok(Some(2)));
        let mut s = LineSkip::new();
        assert_eq!(
            s.feed(b"WELCOME ", b"ERR full\n"),
            Err(Mismatch { offset: 0 })
        );
    }

    #[test]
    fn random_edits_are_checked_at_any_split() {
        let s = transform(Table::Y2023, Action::Random, b"abc").unwrap();
        assert_eq!(s.request[0] >> 3, 0x10, "random is 0x10 in 2023");
        let good = [&5u32.to_be_bytes()[..], b"aabbc"].concat();
        let stream = [&good[..], &good[..]].concat();
        for split in 0..stream.len() {
            let mut c = Checker::new();
            let (a, b) = stream.split_at(split);
            let total = c.feed(&s.expect, a).unwrap() + c.feed(&s.expect, b).unwrap();
            assert_eq!(total, 2, "split at {split}");
        }
        let reordered = [&3u32.to_be_bytes()[..], b"cba"].concat();
        assert!(Checker::new().feed(&s.expect, &reordered).is_err());
        let too_long = 49u32.to_be_bytes();
        assert!(Checker::new().feed(&s.expect, &too_long).is_err());
        assert!(transform(Table::Y2021, Action::Random, b"abc").is_none());
    }
}
