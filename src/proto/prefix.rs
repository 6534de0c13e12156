//! The 32-bit big-endian word the binary protocols start each message with
//! (transform's header, upload's line count), read at any split of the
//! input without indexing.

/// Accumulates one 32-bit big-endian word from input split anywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WordReader {
    word: u32,
    have: u8,
}

impl WordReader {
    /// A reader with no byte yet.
    pub const fn new() -> WordReader {
        WordReader { word: 0, have: 0 }
    }

    /// Whether no byte of the word has arrived.
    pub fn is_empty(&self) -> bool {
        self.have == 0
    }

    /// Takes bytes from `input` until the word is complete. Returns the word
    /// once complete (the reader is then empty again) and the input left.
    pub fn push<'a>(&mut self, mut input: &'a [u8]) -> (Option<u32>, &'a [u8]) {
        if self.have == 0 {
            // The usual case, a whole word at hand: one load.
            if let Some((word, rest)) = input.split_first_chunk::<4>() {
                return (Some(u32::from_be_bytes(*word)), rest);
            }
        }
        while self.have < 4 {
            let Some((&byte, rest)) = input.split_first() else {
                return (None, input);
            };
            self.word = (self.word << 8) | u32::from(byte);
            self.have += 1;
            input = rest;
        }
        let word = self.word;
        *self = WordReader::new();
        (Some(word), input)
    }
}

/// Splits `bytes` after at most `n` bytes: never panics.
pub fn split_at_most(bytes: &[u8], n: usize) -> (&[u8], &[u8]) {
    bytes.split_at(n.min(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_read_at_every_split() {
        let input = [0x12, 0x34, 0x56, 0x78, 0xaa];
        for cut in 0..=input.len() {
            let mut reader = WordReader::new();
            let (first, rest) = reader.push(&input[..cut]);
            assert!(rest.is_empty() || first.is_some());
            let (word, rest) = match first {
                Some(w) => (w, [rest, &input[cut..]].concat()),
                None => {
                    let (w, rest) = reader.push(&input[cut..]);
                    (w.unwrap(), rest.to_vec())
                }
            };
            assert_eq!(word, 0x1234_5678, "cut at {cut}");
            assert_eq!(rest, [0xaa]);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn split_at_most_clamps() {
        assert_eq!(split_at_most(b"abc", 2), (&b"ab"[..], &b"c"[..]));
        assert_eq!(split_at_most(b"abc", 9), (&b"abc"[..], &b""[..]));
    }
}
