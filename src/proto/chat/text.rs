//! The text check every relayed chat line passes (protocol section 2):
//! valid UTF-8 with no control character but TAB, where "control" also
//! covers the characters that let a sender make a line look like another
//! line, or like another sender's, on some terminal (docs/PROTOCOLS.md, chat):
//!
//! | code points | what they are |
//! |-------------|---------------|
//! | U+0000–U+001F but U+0009 TAB, U+007F | C0 controls and DEL |
//! | U+0080–U+009F | C1 controls (U+0085 NEL splits lines; U+009B is CSI) |
//! | U+2028, U+2029 | line and paragraph separators |
//! | U+061C, U+200E, U+200F | bidi marks (ALM, LRM, RLM) |
//! | U+202A–U+202E | bidi embeddings and overrides |
//! | U+2066–U+2069 | bidi isolates (Trojan Source, CVE-2021-42574) |
//!
//! Rust's `char::is_control` covers the first two rows only.
//!
//! **Cost.** The common line is ASCII: one pass over its bytes, ORed
//! together with no early exit (which the compiler vectorizes), finds both
//! a C0 control or DEL and whether any byte is 0x80 or above; an ASCII
//! line is then done (but for UTF-8 validation, itself word at a time on
//! ASCII). A line with a byte above 0x7F is also searched (vectorized, by
//! `memchr`) for the three lead bytes the other controls start with.

use super::command::ChatError;

/// Whether `c` is a control character for chat: refused wherever it
/// appears in a line (the table above).
pub fn is_control(c: char) -> bool {
    matches!(
        c,
        '\0'..='\u{8}'
            | '\u{a}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `line` as text, if it is valid UTF-8 without a control character
/// ([`is_control`]); otherwise [`ChatError::InvalidText`].
pub fn check_text(line: &[u8]) -> Result<&str, ChatError> {
    let (c0, high) = line.iter().fold((false, false), |(c0, high), &b| {
        (
            c0 | ((b < 0x20) & (b != b'\t')) | (b == 0x7f),
            high | (b >= 0x80),
        )
    });
    if c0 {
        return Err(ChatError::InvalidText);
    }
    let text = std::str::from_utf8(line).map_err(|_| ChatError::InvalidText)?;
    if high && has_wide_control(line) {
        return Err(ChatError::InvalidText);
    }
    Ok(text)
}

/// Whether valid UTF-8 `text` holds a control character above U+007F.
/// Every one of them starts with byte 0xC2 (C1: C2 80–C2 9F), 0xD8
/// (U+061C: D8 9C) or 0xE2 (U+200E/F: E2 80 8E/8F; U+2028–U+202E: E2 80
/// A8–AE; U+2066–U+2069: E2 81 A6–A9); in valid UTF-8 these are always
/// lead bytes, so a vectorized search for the three finds every candidate.
fn has_wide_control(text: &[u8]) -> bool {
    memchr::memchr3_iter(0xc2, 0xd8, 0xe2, text).any(|at| {
        let next = text.get(at..).unwrap_or_default();
        matches!(
            next,
            [0xc2, 0x80..=0x9f, ..]
                | [0xd8, 0x9c, ..]
                | [0xe2, 0x80, 0x8e | 0x8f | 0xa8..=0xae, ..]
                | [0xe2, 0x81, 0xa6..=0xa9, ..]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// docs/PROTOCOLS.md, chat's list, written out as ranges, independently of
    /// [`is_control`]'s `match`.
    const LISTED: [(u32, u32); 9] = [
        (0x00, 0x08),
        (0x0a, 0x1f),
        (0x7f, 0x7f),
        (0x80, 0x9f),
        (0x2028, 0x2029),
        (0x061c, 0x061c),
        (0x200e, 0x200f),
        (0x202a, 0x202e),
        (0x2066, 0x2069),
    ];

    fn listed(c: char) -> bool {
        let c = u32::from(c);
        LISTED.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
    }

    /// Every listed code point, each range's ends included.
    fn every_listed() -> Vec<char> {
        LISTED
            .iter()
            .flat_map(|&(lo, hi)| lo..=hi)
            .filter_map(char::from_u32)
            .collect()
    }

    /// The code points just outside each listed range.
    fn neighbours() -> Vec<char> {
        LISTED
            .iter()
            .flat_map(|&(lo, hi)| [lo.wrapping_sub(1), hi + 1])
            .filter_map(char::from_u32)
            .filter(|&c| !listed(c))
            .collect()
    }

    fn check(s: &str) -> Result<&str, ChatError> {
        check_text(s.as_bytes())
    }

    #[test]
    fn every_unicode_scalar_value_is_refused_exactly_when_listed() {
        let mut refused = 0;
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            let line = format!("a{c}b");
            assert_eq!(check(&line).is_err(), listed(c), "U+{:04X}", u32::from(c));
            assert_eq!(is_control(c), listed(c), "U+{:04X}", u32::from(c));
            refused += usize::from(listed(c));
        }
        // 31 C0 (TAB aside) + DEL + 32 C1 + 2 + 1 + 2 + 5 + 4.
        assert_eq!(refused, 31 + 1 + 32 + 2 + 1 + 2 + 5 + 4);
    }

    #[test]
    fn the_neighbours_of_every_range_pass() {
        let n = neighbours();
        for expected in [
            '\t', ' ', '~', '\u{a0}', '\u{61b}', '\u{61d}', '\u{200d}', '\u{2010}', '\u{2027}',
            '\u{202f}', '\u{2065}', '\u{206a}',
        ] {
            assert!(n.contains(&expected), "{expected:?} is a neighbour");
        }
        for c in n {
            let line = format!("{c}x{c}");
            assert_eq!(check(&line), Ok(line.as_str()), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn text_refuses_invalid_utf8() {
        for bad in [
            &b"\xff"[..],
            b"\xc3",
            b"ok \xc3(",
            b"\xed\xa0\x80",     // a surrogate
            b"\xc0\x80",         // over-long NUL
            b"\xe2\x80",         // a cut U+2028
            b"\xf4\x90\x80\x80", // above U+10FFFF
        ] {
            assert_eq!(check_text(bad), Err(ChatError::InvalidText), "{bad:?}");
        }
        assert_eq!(check("a\tb é ☃ 𝄞"), Ok("a\tb é ☃ 𝄞"));
        assert_eq!(check(""), Ok(""));
    }

    /// The issue's forgeries.
    #[test]
    fn the_forgeries_of_issue_16_are_refused() {
        for line in [
            "Admin. hello\u{85}MSG admin please send me your password",
            "/quit bye\u{85}LEAVE x",
            "/msg bob hi\u{2028}PRIV admin x",
            "evil \u{202e}txt.exe",
        ] {
            assert_eq!(check(line), Err(ChatError::InvalidText), "{line:?}");
        }
    }

    proptest! {
        /// Any listed code point, anywhere in any text (ASCII or not), is
        /// refused; text without one is accepted unchanged.
        #[test]
        fn a_listed_code_point_anywhere_is_refused(
            text in "[ -~\u{a0}-\u{2fff}]{0,40}",
            at in 0usize..41,
            which in 0usize..1000,
        ) {
            let clean: String = text.chars().filter(|&c| !listed(c)).collect();
            prop_assert_eq!(check(&clean), Ok(clean.as_str()));
            let every = every_listed();
            let bad = every[which % every.len()];
            let mut chars: Vec<char> = clean.chars().collect();
            chars.insert(at.min(chars.len()), bad);
            let line: String = chars.into_iter().collect();
            prop_assert_eq!(check(&line), Err(ChatError::InvalidText));
        }

        /// The fast scan agrees with a character-at-a-time reference on
        /// arbitrary bytes.
        #[test]
        fn check_text_matches_the_reference(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let reference = match std::str::from_utf8(&bytes) {
                Ok(s) if !s.chars().any(listed) => Ok(s),
                _ => Err(ChatError::InvalidText),
            };
            prop_assert_eq!(check_text(&bytes), reference);
        }
    }
}
