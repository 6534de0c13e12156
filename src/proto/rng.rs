//! A small, fast pseudo-random generator (wyrand) for transform's shuffle.
//!
//! Not cryptographic: a shuffle needs uniform permutations, not secrecy.
//! Seeded from the operating system's randomness through std's `RandomState`
//! (so no extra crate), or from a fixed seed in tests, which makes whole
//! reply streams reproducible.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A wyrand generator: 64 bits of state, passes BigCrush and PractRand.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator with a fixed seed (reproducible).
    pub fn from_seed(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator seeded from the OS's randomness.
    pub fn from_entropy() -> Rng {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x6f6e_6570_6f6c_6c21);
        Rng::from_seed(hasher.finish())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias (Lemire's
    /// multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Shuffles `bytes` into a uniformly random permutation (Fisher–Yates).
    pub fn shuffle(&mut self, bytes: &mut [u8]) {
        self.shuffle_some(bytes, 0, usize::MAX);
    }

    /// Advances a Fisher–Yates shuffle of `bytes` by at most `swaps` swaps,
    /// `done` swaps having been made before; returns the new `done`. The
    /// shuffle is complete once `done` reaches `bytes.len() - 1` (or for
    /// fewer than 2 bytes). Steps of any size draw the same numbers in the
    /// same order as one [`Rng::shuffle`], so a shuffle done in slices is
    /// the same permutation.
    pub fn shuffle_some(&mut self, bytes: &mut [u8], done: usize, swaps: usize) -> usize {
        let total = bytes.len().saturating_sub(1);
        let end = total.min(done.saturating_add(swaps));
        for step in done..end {
            let i = total - step;
            let j = self.below(i as u64 + 1) as usize;
            bytes.swap(i, j);
        }
        end.max(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        let mut rng = Rng::from_seed(1);
        for n in [1u64, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_roughly_uniform() {
        let mut rng = Rng::from_seed(42);
        // Count where byte 0 of [0,1,2,3] lands over many shuffles.
        let mut lands = [0u32; 4];
        for _ in 0..40_000 {
            let mut v = [0u8, 1, 2, 3];
            rng.shuffle(&mut v);
            let mut sorted = v;
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3]);
            lands[v.iter().position(|&b| b == 0).unwrap()] += 1;
        }
        for count in lands {
            assert!((9_000..11_000).contains(&count), "skewed: {lands:?}");
        }
    }

    #[test]
    fn a_shuffle_in_slices_is_the_same_permutation() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let mut whole = data.clone();
        Rng::from_seed(5).shuffle(&mut whole);
        for swaps in [1, 7, 998, 999, 5000] {
            let mut sliced = data.clone();
            let mut rng = Rng::from_seed(5);
            let mut done = 0;
            let mut steps = 0;
            while done < data.len() - 1 {
                done = rng.shuffle_some(&mut sliced, done, swaps);
                steps += 1;
            }
            assert_eq!(sliced, whole, "{swaps} swaps a step");
            assert_eq!(steps, 999usize.div_ceil(swaps));
        }
        assert_eq!(Rng::from_seed(1).shuffle_some(&mut [7], 0, 10), 0);
        assert_eq!(Rng::from_seed(1).shuffle_some(&mut [], 0, 10), 0);
    }

    #[test]
    fn seeded_generators_repeat() {
        let (mut a, mut b) = (Rng::from_seed(7), Rng::from_seed(7));
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
