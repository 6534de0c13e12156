//! The `random` action of transform's 2023 table (spec 1.5): a random
//! edit of a message that drops and repeats bytes, in one call or in
//! pieces, and the check that a result is one it can give. Sans-IO, on the
//! crate's own generator ([`Rng`]).

use std::fmt;

use super::rng::Rng;

/// Most times [`random_edit`] writes one byte.
pub const MAX_REPEAT: usize = 16;

/// A [`random_edit`] result that would pass the bytes it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget;

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the random edit's result would pass the transform budget")
    }
}

impl std::error::Error for OverBudget {}

/// The `random` action (spec 1.5), appended to `out`: each byte of `input`
/// is dropped with probability 1/6; a byte kept is, with probability 1/6,
/// written r times, r = min(⌊1/U⌋, 16) for U uniform in (0, 1], else once.
/// If no byte is kept the result is the first byte; an empty input gives an
/// empty result. So the result is at most 16 times as long as `input`.
///
/// Stops with [`OverBudget`] once the result would pass `max_out` bytes
/// (what is already in `out` is left there for the caller to drop). The
/// whole message at once; [`RandomEdit`] does the same in pieces.
pub fn random_edit(
    input: &[u8],
    rng: &mut Rng,
    out: &mut Vec<u8>,
    max_out: usize,
) -> Result<(), OverBudget> {
    let mut edit = RandomEdit::new();
    edit.feed(input, rng, out, max_out)?;
    edit.finish(out, max_out)
}

/// A [`random_edit`] made in pieces, so that a large message can be
/// edited a slice per turn of the loop: [`RandomEdit::feed`] each piece of
/// the message in order, then [`RandomEdit::finish`]. The result is the
/// same as the whole message's for the same generator, however the message
/// is cut.
#[derive(Clone, Debug, Default)]
pub struct RandomEdit {
    /// The message's first byte, once seen.
    first: Option<u8>,
    /// Bytes written so far.
    written: usize,
}

impl RandomEdit {
    /// An edit at the start of a message.
    pub fn new() -> RandomEdit {
        RandomEdit::default()
    }

    /// An edit taken up again part-way through a message whose first byte
    /// is `first` and whose result so far is `written` bytes long: the
    /// whole of an edit's state, so a caller that keeps the message and
    /// the result need keep nothing else.
    pub fn resume(first: Option<u8>, written: usize) -> RandomEdit {
        RandomEdit { first, written }
    }

    /// Edits the next `piece` of the message onto `out`; [`OverBudget`]
    /// once the result so far passes `max_out` bytes (checked every few
    /// KiB of input, not per byte).
    pub fn feed(
        &mut self,
        piece: &[u8],
        rng: &mut Rng,
        out: &mut Vec<u8>,
        max_out: usize,
    ) -> Result<(), OverBudget> {
        // One draw of 36 outcomes decides a byte: 6 drop it (1/6); of the
        // 30 that keep it, 5 repeat it (1/6 of the kept) and 25 write it
        // once.
        const DROP: u64 = 6;
        const REPEAT: u64 = DROP + 5;
        const CHECK_EVERY: usize = 4096;
        if self.first.is_none() {
            self.first = piece.first().copied();
        }
        for chunk in piece.chunks(CHECK_EVERY) {
            let before = out.len();
            for &b in chunk {
                match rng.below(36) {
                    0..DROP => {}
                    DROP..REPEAT => {
                        // U = (k + 1) / 2^53 is uniform in (0, 1], and
                        // ⌊1/U⌋ = ⌊2^53 / (k + 1)⌋ exactly, without floats.
                        let k = rng.next_u64() >> 11;
                        let r = ((1u64 << 53) / (k + 1)).min(MAX_REPEAT as u64) as usize;
                        out.resize(out.len() + r, b);
                    }
                    _ => out.push(b),
                }
            }
            self.written += out.len() - before;
            if self.written > max_out {
                return Err(OverBudget);
            }
        }
        Ok(())
    }

    /// Ends the message: if no byte was kept, the result is the first byte
    /// (nothing, for an empty message).
    pub fn finish(self, out: &mut Vec<u8>, max_out: usize) -> Result<(), OverBudget> {
        match self.first {
            Some(first) if self.written == 0 => {
                if max_out == 0 {
                    return Err(OverBudget);
                }
                out.push(first);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Whether `output` is a result [`random_edit`] can give for `input`: each
/// input byte, in order, written 0 to 16 times, and something kept unless
/// the input is empty. Linear time: greedily keeps writing the current
/// input byte while it matches and may repeat, else moves to the next input
/// byte equal to the output byte (staying is never worse than moving on).
pub fn is_possible_edit(input: &[u8], output: &[u8]) -> bool {
    if input.is_empty() != output.is_empty() || output.len() > input.len() * MAX_REPEAT {
        return false;
    }
    // `at`: the input byte being written, and how often it was.
    let mut at: Option<(usize, usize)> = None;
    for &o in output {
        at = match at {
            Some((i, n)) if n < MAX_REPEAT && input.get(i) == Some(&o) => Some((i, n + 1)),
            _ => {
                let from = at.map_or(0, |(i, _)| i + 1);
                let skip = input
                    .get(from..)
                    .and_then(|rest| rest.iter().position(|&b| b == o));
                match skip {
                    Some(k) => Some((from + k, 1)),
                    None => return false,
                }
            }
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rng::Rng;
    use proptest::prelude::*;

    #[test]
    fn random_edit_stops_at_its_limit() {
        let data = [b'x'; 10_000];
        let mut out = Vec::new();
        let done = random_edit(&data, &mut Rng::from_seed(3), &mut out, 100);
        assert_eq!(done, Err(OverBudget));
        let mut out = Vec::new();
        assert_eq!(
            random_edit(b"a", &mut Rng::from_seed(3), &mut out, 0),
            Err(OverBudget),
            "even one byte is over a zero limit"
        );
    }

    #[test]
    fn random_edit_drops_and_repeats_at_the_spec_rates() {
        let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
        let mut rng = Rng::from_seed(11);
        // How often a first byte is written, followed by ten other bytes
        // (so that "all dropped", 6^-10, does not blur the count).
        let (mut dropped, mut repeated, mut written) = (0u32, 0u32, [0u32; 17]);
        for &b in &data {
            let mut input = [b.wrapping_add(1); 11];
            input[0] = b;
            let mut out = Vec::new();
            random_edit(&input, &mut rng, &mut out, usize::MAX).unwrap();
            let n = out.iter().take_while(|&&o| o == b).count();
            dropped += u32::from(n == 0);
            repeated += u32::from(n > 1);
            written[n.min(16)] += 1;
        }
        let total = data.len() as f64;
        let drop_rate = f64::from(dropped) / total;
        assert!((0.15..0.185).contains(&drop_rate), "dropped {drop_rate}");
        // P(kept and r > 1) = 5/6 * 1/6 * P(U <= 1/2) = 5/72.
        let repeat_rate = f64::from(repeated) / total;
        assert!(
            (0.06..0.08).contains(&repeat_rate),
            "repeated {repeat_rate}"
        );
        assert!(written[16] > 0, "r reaches 16");
        assert!(written.iter().skip(2).all(|&c| c > 0), "{written:?}");
    }

    #[test]
    fn possible_edits_are_told_from_impossible_ones() {
        assert!(is_possible_edit(b"", b""));
        assert!(is_possible_edit(b"abc", b"a"));
        assert!(is_possible_edit(b"abc", b"c"));
        assert!(is_possible_edit(b"aba", b"aaaa"));
        assert!(is_possible_edit(b"abc", b"aabbbc"));
        assert!(is_possible_edit(b"a", &[b'a'; 16]));
        assert!(is_possible_edit(b"aa", &[b'a'; 32]));
        assert!(!is_possible_edit(b"a", &[b'a'; 17]));
        assert!(!is_possible_edit(b"abc", b""), "something is always kept");
        assert!(!is_possible_edit(b"", b"a"));
        assert!(!is_possible_edit(b"abc", b"ca"), "order is kept");
        assert!(!is_possible_edit(b"abc", b"abd"));
    }

    proptest! {
        /// Every result of random is a possible edit of its input, at
        /// most 16 times as long; empty gives empty, anything else
        /// gives something.
        #[test]
        fn random_gives_a_possible_edit(
            input in proptest::collection::vec(
                prop_oneof![any::<u8>(), b'a'..=b'c'],
                0..200,
            ),
            seed in any::<u64>(),
        ) {
            let mut out = Vec::new();
            random_edit(&input, &mut Rng::from_seed(seed), &mut out, usize::MAX).unwrap();
            prop_assert!(is_possible_edit(&input, &out), "{:?} -> {:?}", input, out);
            prop_assert!(out.len() <= input.len() * MAX_REPEAT);
            prop_assert_eq!(out.is_empty(), input.is_empty());
        }

        /// Edited in pieces, a message gives what it gives whole.
        #[test]
        fn random_in_pieces_is_random_whole(
            input in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            seed in any::<u64>(),
        ) {
            let mut whole = Vec::new();
            random_edit(&input, &mut Rng::from_seed(seed), &mut whole, usize::MAX).unwrap();
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            let mut rng = Rng::from_seed(seed);
            let mut edit = RandomEdit::new();
            let mut pieces = Vec::new();
            for piece in crate::proto::testing::split_at(&input, &cuts) {
                edit.feed(piece, &mut rng, &mut pieces, usize::MAX).unwrap();
            }
            edit.finish(&mut pieces, usize::MAX).unwrap();
            prop_assert_eq!(pieces, whole);
        }

        /// When every byte is dropped, the result is the first byte:
        /// one-byte inputs always give that byte, 1 to 16 times, and
        /// short inputs (often all dropped) never give nothing.
        #[test]
        fn all_dropped_gives_the_first_byte(
            input in proptest::collection::vec(any::<u8>(), 1..4),
            seed in any::<u64>(),
        ) {
            let mut out = Vec::new();
            random_edit(&input, &mut Rng::from_seed(seed), &mut out, usize::MAX).unwrap();
            prop_assert!(!out.is_empty());
            if let [only] = input[..] {
                prop_assert!(out.iter().all(|&b| b == only) && out.len() <= MAX_REPEAT);
            }
        }
    }
}
