//! Whole messages that transform holds (docs/PROTOCOLS.md, transform): what reverse and shuffle
//! (and any action that needs a message whole) plug into, kept apart from
//! transform's action table.
//!
//! A [`Held`] message lives in two stages:
//! - gathered as its data arrives, taken from the `--max-buffer` budget
//!   byte for byte as it comes: a header alone holds nothing, and a message
//!   whose data would pass the budget is refused as soon as it would (its
//!   caller discards the rest and answers `error`);
//! - once whole, worked on by its [`Job`] in bounded slices ([`Slices`]),
//!   so that a 128 MiB shuffle does not keep the loop from every other
//!   connection for a second and more: the core does one slice per turn
//!   and tells the loop it wants another ([`super::Session::wants_turn`]).
//!
//! Adding an action that holds its message: give [`Job`] a variant and its
//! arm in [`Job::step`], and map the action to it in transform's
//! `Action::held_job`. Random's result is a new sequence of bytes (it
//! holds its message and its result): it is written behind the message in
//! the same buffer, charged to the budget as it grows, and moved over the
//! message in slices once done, so it needs no state beyond what a
//! [`Held`] has (a connection holds one inline: keep it at six words).

use super::budget::{Budget, Reservation};
use super::prefix::split_at_most;
use super::random_edit::{OverBudget, RandomEdit};
use super::rng::Rng;

/// Bytes of a response header, which a held reply starts with.
const HEADER_BYTES: usize = 4;

/// Message bytes a random edit goes through between two charges of its
/// result to the budget (a result may pass the budget by at most 16 times
/// this before it is refused).
const RANDOM_PIECE: usize = 4096;

/// How much work one slice may do. The defaults keep a slice short next to
/// a wake-up's other work (one slice of a large shuffle is measured in
/// `benches/cores.rs`, `transform/shuffle-128MiB`, with the figure in
/// docs/PERFORMANCE.md); tests use tiny ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slices {
    /// Fisher–Yates swaps per slice. A swap in a large message is a cache
    /// miss or two, so far fewer swaps than reverse pairs fit in a slice.
    pub shuffle_swaps: usize,
    /// Byte pairs a reverse exchanges per slice: sequential, so many more
    /// per slice (1 Mi pairs touch 2 MiB).
    pub reverse_pairs: usize,
    /// Message bytes a random edit goes through per slice (a draw or two
    /// of the generator each).
    pub random_bytes: usize,
    /// Result bytes a random edit moves over its message per slice, once
    /// done (a plain copy).
    pub copy_bytes: usize,
}

impl Slices {
    /// The server's slices.
    pub const DEFAULT: Slices = Slices {
        shuffle_swaps: 1 << 16,
        reverse_pairs: 1 << 20,
        random_bytes: 1 << 17,
        copy_bytes: 1 << 22,
    };
}

impl Default for Slices {
    fn default() -> Self {
        Slices::DEFAULT
    }
}

/// The work an action does on a whole message, advanced a slice at a time
/// (how far it has got is kept by [`Held`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// The bytes in reverse order; its progress is the pairs exchanged
    /// from both ends.
    Reverse,
    /// A Fisher–Yates shuffle; its progress is the swaps made.
    Shuffle,
    /// The random edit: not in place, so [`Held`] does it (its result is
    /// written behind the message, then moved over it); its progress is
    /// the message bytes edited, then the result bytes moved.
    Random,
}

impl Job {
    /// Does at most one slice of an in-place job on `data`, `done` units of
    /// it having been done; returns the new count and whether it is all
    /// done. Any slicing gives the same result as the work done at once.
    /// (Random is not in place: [`Held::step`] does it, and this says it
    /// is done at once.)
    pub fn step(
        self,
        data: &mut [u8],
        done: usize,
        rng: &mut Rng,
        slices: Slices,
    ) -> (usize, bool) {
        match self {
            Job::Reverse => {
                let now = reverse_some(data, done, slices.reverse_pairs.max(1));
                (now, now >= data.len() / 2)
            }
            Job::Shuffle => {
                let now = rng.shuffle_some(data, done, slices.shuffle_swaps.max(1));
                (now, now >= data.len().saturating_sub(1))
            }
            Job::Random => (done, true),
        }
    }
}

/// Exchanges at most `pairs` more pairs of a reverse of `data` that has
/// exchanged `done` pairs from both ends; returns the new count. The block
/// `done..done + n` and its mirror at the end are swapped and each
/// reversed: together, exactly the pairs `(k, len - 1 - k)` of the block.
fn reverse_some(data: &mut [u8], done: usize, pairs: usize) -> usize {
    let len = data.len();
    if done == 0 && len / 2 <= pairs {
        // The usual case, a message done in one slice.
        data.reverse();
        return len / 2;
    }
    let n = pairs.min((len / 2).saturating_sub(done));
    if n == 0 {
        return done;
    }
    let (front, back) = data.split_at_mut(len - done - n);
    if let (Some(head), Some(tail)) = (front.get_mut(done..done + n), back.get_mut(..n)) {
        head.swap_with_slice(tail);
        head.reverse();
        tail.reverse();
    }
    done + n
}

/// A message held whole: first gathered as its data arrives, within the
/// budget, then worked on by its [`Job`] a slice at a time. A connection
/// holds this inline, so it is kept to six words.
#[derive(Debug)]
pub struct Held {
    /// The reply being built: its 4-byte header, then the data so far
    /// (transformed in place once whole). Nothing is allocated before the
    /// first data byte.
    reply: Vec<u8>,
    /// The data bytes gathered so far, charged to the budget until the
    /// reply has been sent (or the message is dropped).
    reservation: Reservation,
    /// While gathering: the message's LENGTH (also in the reply's header
    /// word until the reply is done). While working: the units of
    /// the job done (a u32 is enough: a message is at most 2^27 - 1
    /// bytes).
    count: u32,
    /// The work to do once the message is whole.
    job: Job,
    /// Where the message is in its life.
    phase: Phase,
}

/// The stages of a [`Held`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Its data is arriving.
    Gathering,
    /// Whole, and its job under way.
    Working,
    /// Random only: the result is complete behind the message and is being
    /// moved over it.
    Moving,
}

impl Held {
    /// Starts gathering a message of `length` bytes (more than 0) for
    /// `job`, holding nothing yet.
    pub fn new(length: u32, job: Job, budget: &Budget) -> Held {
        Held {
            reply: Vec::new(),
            reservation: budget.reserve_none(),
            count: length,
            job,
            phase: Phase::Gathering,
        }
    }

    /// Data bytes still to come.
    pub fn left(&self) -> u32 {
        if self.phase != Phase::Gathering {
            return 0;
        }
        let gathered = self.reply.len().saturating_sub(HEADER_BYTES);
        self.count.saturating_sub(gathered as u32)
    }

    /// Heap bytes the message holds, as allocated.
    pub fn heap_bytes(&self) -> usize {
        self.reply.capacity()
    }

    /// Whether every data byte has arrived.
    pub fn is_whole(&self) -> bool {
        self.left() == 0
    }

    /// Whether the job has begun and is not done.
    pub fn is_working(&self) -> bool {
        self.phase != Phase::Gathering
    }

    /// Takes the message's bytes from the front of `input`, charging them
    /// to the budget; returns the input after them. `Err(left)` if they
    /// would pass the budget: nothing of `input` was taken, the bytes
    /// gathered so far are given back when `self` is dropped, and `left`
    /// bytes of the message are still to come (to be discarded).
    pub fn push<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], u32> {
        let left = self.left();
        let (chunk, after) = split_at_most(input, left as usize);
        if chunk.is_empty() {
            return Ok(after);
        }
        if !self.reservation.try_grow(chunk.len()) {
            return Err(left);
        }
        // The header goes in with the first data, after the allocation: a
        // message sent whole is one allocation, not one and a realloc.
        let need = self.reply.len().max(HEADER_BYTES) + chunk.len();
        if need > self.reply.capacity() {
            // Grows by doubling, as a Vec does, but never past the whole
            // message: a message sent whole is one exact allocation. The
            // budget counts the data; the capacity not yet written (at most
            // as much again) is address space the kernel has not backed.
            let whole = HEADER_BYTES + self.count as usize;
            let target = need.max(2 * self.reply.capacity()).min(whole);
            self.reply.reserve_exact(target - self.reply.len());
        }
        if self.reply.is_empty() {
            self.reply.extend_from_slice(&self.count.to_be_bytes());
        }
        self.reply.extend_from_slice(chunk);
        Ok(after)
    }

    /// Does one slice of the work on the whole message; `Ok(true)` once it
    /// is all done, [`OverBudget`] if a random result would pass the
    /// budget (the message is then to be dropped and answered `error`).
    /// (Call only once [`Held::is_whole`].)
    pub fn step(&mut self, rng: &mut Rng, slices: Slices) -> Result<bool, OverBudget> {
        if self.phase == Phase::Gathering {
            self.phase = Phase::Working;
            self.count = 0;
        }
        if self.job == Job::Random {
            return self.step_random(rng, slices);
        }
        let Some(data) = self.reply.get_mut(HEADER_BYTES..) else {
            return Ok(true);
        };
        let (done, finished) = self.job.step(data, self.count as usize, rng, slices);
        self.count = u32::try_from(done).unwrap_or(u32::MAX);
        Ok(finished)
    }

    /// The message's length: the reply's header word holds it until the
    /// reply is done.
    fn message_len(&self) -> usize {
        match self.reply.get(..HEADER_BYTES) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]) as usize,
            _ => 0,
        }
    }

    /// Charges the budget with the random result written behind a
    /// message of `len` bytes and not yet charged.
    fn charge_result(&mut self, len: usize) -> Result<(), OverBudget> {
        let written = self.reply.len() - HEADER_BYTES - len;
        let charged = self.reservation.bytes() - len;
        if self.reservation.try_grow(written.saturating_sub(charged)) {
            Ok(())
        } else {
            Err(OverBudget)
        }
    }

    /// One slice of the random edit: edits the next message bytes onto the
    /// end of the buffer, charging the budget as the result grows; once the
    /// message is through, moves the result over it a slice at a time and
    /// writes its length into the header.
    fn step_random(&mut self, rng: &mut Rng, slices: Slices) -> Result<bool, OverBudget> {
        let len = self.message_len();
        let start = HEADER_BYTES + len;
        if self.phase == Phase::Working {
            let first = self.reply.get(HEADER_BYTES).copied();
            let mut edit = RandomEdit::resume(first, self.reply.len() - start);
            let end = (self.count as usize + slices.random_bytes.max(1)).min(len);
            // A piece of the message is copied out before it is edited onto
            // the same buffer's end. Pieces end on the same message offsets
            // however the work is sliced, and the budget is charged there,
            // so whether (and where) an edit passes the budget does not
            // depend on the slicing: nor, then, does the generator's state.
            let mut piece = [0u8; RANDOM_PIECE];
            let mut at = self.count as usize;
            while at < end {
                let n = (end - at).min(RANDOM_PIECE - at % RANDOM_PIECE);
                let (Some(src), Some(dst)) = (
                    self.reply.get(HEADER_BYTES + at..HEADER_BYTES + at + n),
                    piece.get_mut(..n),
                ) else {
                    return Err(OverBudget);
                };
                dst.copy_from_slice(src);
                edit.feed(dst, rng, &mut self.reply, usize::MAX)?;
                at += n;
                if at % RANDOM_PIECE == 0 {
                    self.charge_result(len)?;
                }
            }
            self.count = at as u32;
            if at < len {
                return Ok(false);
            }
            edit.finish(&mut self.reply, usize::MAX)?;
            self.charge_result(len)?;
            self.phase = Phase::Moving;
            self.count = 0;
        }
        let result_len = self.reply.len() - start;
        let moved = self.count as usize;
        let n = slices.copy_bytes.max(1).min(result_len - moved);
        self.reply
            .copy_within(start + moved..start + moved + n, HEADER_BYTES + moved);
        self.count = (moved + n) as u32;
        if moved + n < result_len {
            return Ok(false);
        }
        self.reply.truncate(HEADER_BYTES + result_len);
        if let Some(head) = self.reply.get_mut(..HEADER_BYTES) {
            head.copy_from_slice(&(result_len as u32).to_be_bytes());
        }
        Ok(true)
    }

    /// The finished reply (header and data) and the budget it holds until
    /// it has been sent.
    pub fn into_reply(self) -> (Vec<u8>, Reservation) {
        (self.reply, self.reservation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Slices = Slices {
        shuffle_swaps: 3,
        reverse_pairs: 2,
        random_bytes: 3,
        copy_bytes: 2,
    };

    fn collect(data: &[u8], budget: &Budget, chunk: usize) -> Result<Held, u32> {
        let mut c = Held::new(data.len() as u32, Job::Shuffle, budget);
        for piece in data.chunks(chunk) {
            let rest = c.push(piece)?;
            assert!(rest.is_empty());
        }
        assert!(c.is_whole());
        Ok(c)
    }

    #[test]
    fn a_held_message_stays_six_words() {
        assert_eq!(std::mem::size_of::<Held>(), 48);
    }

    #[test]
    fn data_is_charged_as_it_arrives_and_a_header_holds_nothing() {
        let budget = Budget::new(10);
        let mut c = Held::new(1_000_000, Job::Reverse, &budget);
        assert_eq!(budget.held(), 0, "a header alone holds nothing");
        assert_eq!(c.push(b"abc"), Ok(&b""[..]));
        assert_eq!(budget.held(), 3);
        assert_eq!(c.push(b"defghij"), Ok(&b""[..]));
        assert_eq!(budget.held(), 10);
        assert_eq!(c.push(b"k"), Err(1_000_000 - 10), "the 11th byte passes");
        assert_eq!(budget.held(), 10, "refusing takes nothing");
        drop(c);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn push_takes_only_the_message_and_returns_the_rest() {
        let budget = Budget::new(100);
        let mut c = Held::new(3, Job::Reverse, &budget);
        assert_eq!(c.push(b"ab"), Ok(&b""[..]));
        assert_eq!(c.push(b"cNEXT"), Ok(&b"NEXT"[..]));
        assert!(c.is_whole());
        assert_eq!(c.left(), 0);
        assert_eq!(c.step(&mut Rng::from_seed(0), Slices::DEFAULT), Ok(true));
        let (reply, reservation) = c.into_reply();
        assert_eq!(reply, [&3u32.to_be_bytes()[..], b"cba"].concat());
        assert_eq!(reservation.bytes(), 3);
    }

    #[test]
    fn a_message_sent_whole_is_one_exact_allocation() {
        let budget = Budget::new(1 << 20);
        let c = collect(&[7u8; 1000], &budget, 1000).unwrap();
        assert_eq!(c.reply.capacity(), 1004);
        let c = collect(&[7u8; 1000], &budget, 1).unwrap();
        assert!(c.reply.capacity() >= 1004 && c.reply.capacity() < 2008);
    }

    #[test]
    fn every_slicing_of_a_reverse_gives_the_reverse() {
        for len in 0..40usize {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut expected = data.clone();
            expected.reverse();
            for pairs in 1..=len.max(1) {
                let mut got = data.clone();
                let slices = Slices {
                    reverse_pairs: pairs,
                    ..TINY
                };
                let mut rng = Rng::from_seed(0);
                let mut steps = 1;
                let (mut done, mut finished) = Job::Reverse.step(&mut got, 0, &mut rng, slices);
                while !finished {
                    (done, finished) = Job::Reverse.step(&mut got, done, &mut rng, slices);
                    steps += 1;
                }
                assert_eq!(got, expected, "len {len}, {pairs} pairs a slice");
                assert_eq!(steps, (len / 2).div_ceil(pairs).max(1));
            }
        }
    }

    #[test]
    fn a_shuffle_in_slices_is_the_shuffle_done_at_once() {
        let data: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let mut whole = data.clone();
        Rng::from_seed(3).shuffle(&mut whole);
        let budget = Budget::new(1000);
        let mut held = collect(&data, &budget, 17).unwrap();
        let mut rng = Rng::from_seed(3);
        let mut steps = 1;
        while !held.step(&mut rng, TINY).unwrap() {
            assert!(held.is_working());
            steps += 1;
        }
        assert_eq!(steps, 199usize.div_ceil(3));
        let (reply, _) = held.into_reply();
        assert_eq!(&reply[4..], &whole[..]);
    }

    #[test]
    fn one_byte_is_done_at_the_first_step() {
        for job in [Job::Reverse, Job::Shuffle] {
            assert_eq!(
                job.step(&mut [1], 0, &mut Rng::from_seed(0), TINY),
                (0, true)
            );
        }
    }
}
