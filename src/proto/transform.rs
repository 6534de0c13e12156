//! # transform — binary header, pipelined text transforms
//!
//! *The onepoll transform protocol, version 1. Default TCP port 8083.*
//!
//! ## 1. Overview
//!
//! A client sends requests, each a 4-byte header followed by data; the server
//! answers each with a 4-byte length followed by the transformed data.
//! Responses come in request order. A client may send any number of requests
//! before reading any response (pipelining); the server never needs a
//! response to be read before it reads the next request, except that it
//! stops reading a connection whose unsent responses pass 1 MiB, and resumes
//! when they drain (backpressure).
//!
//! ## 2. Request
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | ACTION  |                    LENGTH                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 DATA (LENGTH bytes) ...                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The header is one 32-bit big-endian word: ACTION is its top 5 bits,
//! LENGTH its low 27 bits (0 to 134,217,727). DATA is any bytes.
//!
//! ## 3. Response
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    LENGTH (32 bits)                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 DATA (LENGTH bytes) ...                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ## 4. Actions
//!
//! | ACTION | name       | response DATA |
//! |--------|------------|---------------|
//! | `0x01` | uppercase  | ASCII `a`–`z` become `A`–`Z`; other bytes unchanged |
//! | `0x02` | lowercase  | ASCII `A`–`Z` become `a`–`z`; other bytes unchanged |
//! | `0x04` | title-case | an ASCII letter is uppercased when the byte before it is not an ASCII letter (or it is the first byte), lowercased otherwise; other bytes unchanged |
//! | `0x08` | reverse    | the bytes in reverse order |
//! | `0x10` | shuffle    | a uniformly random permutation of the bytes |
//!
//! Every response to a valid action has the request's LENGTH. LENGTH 0 is
//! valid and answered with an empty response (`00 00 00 00`).
//!
//! ## 5. Errors
//!
//! - **Unknown ACTION** (any value not in the table, including 0 and
//!   combinations of bits): the server reads and discards the LENGTH data
//!   bytes, so the stream stays in step, and answers the 5 bytes `error`
//!   (`00 00 00 05 65 72 72 6f 72`). Later requests are served normally.
//! - **Over budget**: reverse and shuffle must hold a message whole before
//!   answering. The bytes they hold, across all connections, stay within
//!   `--max-buffer` (default 256 MiB). A reverse or shuffle request is
//!   admitted when its header arrives if the bytes held plus its LENGTH fit;
//!   otherwise its data is discarded as it arrives and it is answered
//!   `error`. Held bytes are released when their response has been sent.
//!
//! The response `error` is distinguishable from data only by context: a
//! client that knows what it asked can check whether a 5-byte `error` is
//! the transform of its data (see [`Action::is_valid_response`]).
//!
//! ## 6. Streaming and memory
//!
//! uppercase, lowercase and title-case are streamed: the response header is
//! sent as soon as the request header arrives, and data is transformed and
//! sent as it arrives, so the server's memory does not grow with LENGTH.
//! reverse and shuffle hold LENGTH bytes, within the budget above.
//!
//! ## 7. Example
//!
//! A client pipelines uppercase of `hi`, an unknown action 0x03 with data
//! `x`, and reverse of `abc`:
//!
//! ```text
//! C: 08 00 00 02 68 69          uppercase (0x01 << 27 | 2), "hi"
//! C: 18 00 00 01 78             action 0x03, LENGTH 1, "x"
//! C: 40 00 00 03 61 62 63       reverse (0x08 << 27 | 3), "abc"
//! S: 00 00 00 02 48 49          "HI"
//! S: 00 00 00 05 65 72 72 6f 72 "error"
//! S: 00 00 00 03 63 62 61       "cba"
//! ```

use std::fmt;

use super::budget::{Budget, Reservation};
use super::prefix::{split_at_most, WordReader};
use super::rng::Rng;
use super::{Cx, Output, Session};

/// Largest LENGTH a header can carry (27 bits).
pub const MAX_LENGTH: u32 = (1 << 27) - 1;

/// The response to an unknown action or a refused message.
pub const ERROR_REPLY: &[u8] = b"error";

/// Bytes of a request or response header.
pub const HEADER_BYTES: usize = 4;

/// The actions of section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `0x01`: ASCII letters to upper case.
    Uppercase,
    /// `0x02`: ASCII letters to lower case.
    Lowercase,
    /// `0x04`: first letter of each run of letters upper, the rest lower.
    TitleCase,
    /// `0x08`: bytes in reverse order.
    Reverse,
    /// `0x10`: a uniformly random permutation.
    Shuffle,
}

impl Action {
    /// Every action, in code order.
    pub const ALL: [Action; 5] = [
        Action::Uppercase,
        Action::Lowercase,
        Action::TitleCase,
        Action::Reverse,
        Action::Shuffle,
    ];

    /// The action with this 5-bit code, if any.
    pub fn from_code(code: u8) -> Option<Action> {
        match code {
            0x01 => Some(Action::Uppercase),
            0x02 => Some(Action::Lowercase),
            0x04 => Some(Action::TitleCase),
            0x08 => Some(Action::Reverse),
            0x10 => Some(Action::Shuffle),
            _ => None,
        }
    }

    /// The action's 5-bit code.
    pub fn code(self) -> u8 {
        match self {
            Action::Uppercase => 0x01,
            Action::Lowercase => 0x02,
            Action::TitleCase => 0x04,
            Action::Reverse => 0x08,
            Action::Shuffle => 0x10,
        }
    }

    /// The action's name as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Uppercase => "uppercase",
            Action::Lowercase => "lowercase",
            Action::TitleCase => "title-case",
            Action::Reverse => "reverse",
            Action::Shuffle => "shuffle",
        }
    }

    /// Whether the server can stream this action (answer before the data
    /// has all arrived).
    pub fn streams(self) -> bool {
        matches!(
            self,
            Action::Uppercase | Action::Lowercase | Action::TitleCase
        )
    }

    /// Applies the action to a whole message, in place.
    pub fn apply(self, data: &mut [u8], rng: &mut Rng) {
        match self {
            Action::Uppercase => data.make_ascii_uppercase(),
            Action::Lowercase => data.make_ascii_lowercase(),
            Action::TitleCase => title_case(data, &mut false),
            Action::Reverse => data.reverse(),
            Action::Shuffle => rng.shuffle(data),
        }
    }

    /// Whether `response` is a correct transform of `request` (for shuffle:
    /// any permutation). Lets a client tell data from the `error` reply.
    pub fn is_valid_response(self, request: &[u8], response: &[u8]) -> bool {
        if request.len() != response.len() {
            return false;
        }
        match self {
            Action::Shuffle => {
                let (mut a, mut b) = (request.to_vec(), response.to_vec());
                a.sort_unstable();
                b.sort_unstable();
                a == b
            }
            _ => {
                let mut expected = request.to_vec();
                self.apply(&mut expected, &mut Rng::from_seed(0));
                expected == response
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes a request header: `code` in the top 5 bits, `length` in the low
/// 27. Bits of `code` above 5 and of `length` above 27 are dropped.
pub fn encode_header(code: u8, length: u32) -> [u8; 4] {
    ((u32::from(code & 0x1f) << 27) | (length & MAX_LENGTH)).to_be_bytes()
}

/// Splits a request header into its action code and LENGTH.
pub fn decode_header(header: [u8; 4]) -> (u8, u32) {
    let word = u32::from_be_bytes(header);
    ((word >> 27) as u8, word & MAX_LENGTH)
}

/// Title-cases `bytes` in place. `prev_letter` says whether the byte before
/// the slice was an ASCII letter, and is updated, so a message may be
/// processed in pieces.
pub fn title_case(bytes: &mut [u8], prev_letter: &mut bool) {
    // Branch-free, so that the compiler can vectorise it: a letter gets
    // its case bit (0x20) cleared, then set again if the byte before it
    // was a letter; any other byte is left as it is. The only state
    // carried from byte to byte is "was the previous byte a letter".
    const CASE_BIT: u8 = 0x20;
    let mut prev = u8::from(*prev_letter);
    for b in bytes {
        let letter = u8::from((*b | CASE_BIT).wrapping_sub(b'a') < 26);
        let case_mask = letter * CASE_BIT;
        *b = (*b & !case_mask) | (case_mask & (prev * CASE_BIT));
        prev = letter;
    }
    *prev_letter = prev != 0;
}

/// State shared by every transform connection.
#[derive(Debug)]
pub struct Shared {
    /// Bytes reverse and shuffle may hold, all connections together.
    pub budget: Budget,
    /// The shuffle's generator.
    pub rng: Rng,
}

impl Shared {
    /// Shared state with a `max_buffer`-byte budget.
    pub fn new(max_buffer: usize, rng: Rng) -> Shared {
        Shared {
            budget: Budget::new(max_buffer),
            rng,
        }
    }
}

/// Where a connection is in its request stream.
enum State {
    /// Reading a header.
    Header(WordReader),
    /// Streaming a case change; the response header is already queued.
    Stream {
        action: Action,
        left: u32,
        prev_letter: bool,
    },
    /// Collecting a whole message for reverse or shuffle, within budget.
    Whole {
        action: Action,
        left: u32,
        /// The reply being built: its 4-byte header, then the data as it
        /// arrives, transformed in place once complete and queued as one
        /// segment (no separate buffer for the header).
        reply: Vec<u8>,
        reservation: Reservation,
    },
    /// Skipping the data of a request that will be answered `error`.
    Discard { left: u32 },
}

const FRESH: State = State::Header(WordReader::new());

/// The transform state machine of one connection.
pub struct TransformSession {
    state: State,
}

impl Default for TransformSession {
    fn default() -> Self {
        TransformSession::new()
    }
}

impl TransformSession {
    /// A session waiting for its first header.
    pub fn new() -> TransformSession {
        TransformSession { state: FRESH }
    }

    /// Starts the request whose header is `header`; `rest` is the input
    /// after it. Returns what is left of `rest`: a streamed action answers
    /// the part of its body already here at once, behind its reply header,
    /// in one piece of output (for small pipelined requests, the usual
    /// case, the whole reply).
    fn begin<'a>(&mut self, header: [u8; 4], mut rest: &'a [u8], cx: &mut Cx<'_>) -> &'a [u8] {
        let (code, length) = decode_header(header);
        self.state = match Action::from_code(code) {
            Some(action) if action.streams() => {
                let (chunk, after) = split_at_most(rest, length as usize);
                rest = after;
                let mut prev_letter = false;
                put_streamed(
                    cx.out,
                    action,
                    length.to_be_bytes(),
                    chunk,
                    &mut prev_letter,
                );
                let left = length - chunk.len() as u32;
                if left == 0 {
                    FRESH
                } else {
                    State::Stream {
                        action,
                        left,
                        prev_letter,
                    }
                }
            }
            Some(action) => {
                if length == 0 {
                    cx.out.put_u32(0);
                    FRESH
                } else {
                    match cx.shared.transform.budget.try_reserve(length as usize) {
                        Some(reservation) => {
                            let mut reply = Vec::with_capacity(HEADER_BYTES + length as usize);
                            reply.extend_from_slice(&length.to_be_bytes());
                            State::Whole {
                                action,
                                left: length,
                                reply,
                                reservation,
                            }
                        }
                        None => State::Discard { left: length },
                    }
                }
            }
            None => {
                if length == 0 {
                    put_error(cx);
                    FRESH
                } else {
                    State::Discard { left: length }
                }
            }
        };
        rest
    }
}

/// Appends `head` (a reply header, or nothing) and then `chunk` as the
/// streamed `action` transforms it, in one piece of output.
fn put_streamed<const N: usize>(
    out: &mut Output,
    action: Action,
    head: [u8; N],
    chunk: &[u8],
    prev_letter: &mut bool,
) {
    match action {
        Action::Uppercase => out.put_each_mapped(head, chunk, |b| b.to_ascii_uppercase()),
        Action::Lowercase => out.put_each_mapped(head, chunk, |b| b.to_ascii_lowercase()),
        _ => out.put_mapped(head, chunk, |b| title_case(b, prev_letter)),
    }
}

fn put_error(cx: &mut Cx<'_>) {
    cx.out.put_u32(ERROR_REPLY.len() as u32);
    cx.out.put(ERROR_REPLY);
}

impl Session for TransformSession {
    /// Consumes all of `input`: partial headers and held messages are kept in
    /// the session itself, so the connection never carries transform input.
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        let mut rest = input;
        while !rest.is_empty() {
            match &mut self.state {
                State::Header(reader) => {
                    let (word, after) = reader.push(rest);
                    rest = after;
                    if let Some(word) = word {
                        rest = self.begin(word.to_be_bytes(), rest, cx);
                    }
                }
                State::Stream {
                    action,
                    left,
                    prev_letter,
                } => {
                    let (chunk, after) = split_at_most(rest, *left as usize);
                    let n = chunk.len();
                    put_streamed(cx.out, *action, [], chunk, prev_letter);
                    rest = after;
                    *left -= n as u32;
                    if *left == 0 {
                        self.state = FRESH;
                    }
                }
                State::Whole { left, reply, .. } => {
                    let (chunk, after) = split_at_most(rest, *left as usize);
                    reply.extend_from_slice(chunk);
                    rest = after;
                    *left -= chunk.len() as u32;
                    if *left == 0 {
                        if let State::Whole {
                            action,
                            mut reply,
                            reservation,
                            ..
                        } = std::mem::replace(&mut self.state, FRESH)
                        {
                            if let Some(data) = reply.get_mut(HEADER_BYTES..) {
                                action.apply(data, &mut cx.shared.transform.rng);
                            }
                            cx.out.put_held(reply, reservation);
                        }
                    }
                }
                State::Discard { left } => {
                    let (skipped, after) = split_at_most(rest, *left as usize);
                    rest = after;
                    *left -= skipped.len() as u32;
                    if *left == 0 {
                        self.state = FRESH;
                        put_error(cx);
                    }
                }
            }
        }
        input.len()
    }

    fn mid_message(&self) -> bool {
        !matches!(&self.state, State::Header(reader) if reader.is_empty())
    }

    /// The whole message being collected, as allocated.
    fn held_bytes(&self) -> usize {
        match &self.state {
            State::Whole { reply, .. } => reply.capacity(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Output, Shared as AllShared};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::SystemTime;

    fn shared(max_buffer: usize) -> AllShared {
        let mut shared = AllShared::new(&crate::config::Config::default());
        shared.transform = Shared::new(max_buffer, Rng::from_seed(9));
        shared
    }

    fn request(code: u8, data: &[u8]) -> Vec<u8> {
        let mut v = encode_header(code, data.len() as u32).to_vec();
        v.extend_from_slice(data);
        v
    }

    fn response(data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    /// Feeds `chunks` one call at a time; returns all replies.
    fn run(shared: &mut AllShared, chunks: &[&[u8]]) -> Vec<u8> {
        let mut session = TransformSession::new();
        let mut out = Output::new();
        let mut effects = Vec::new();
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        for chunk in chunks {
            let mut cx = Cx::new(
                &mut out,
                shared,
                &mut effects,
                peer,
                1,
                SystemTime::UNIX_EPOCH,
            );
            assert_eq!(session.on_input(chunk, &mut cx), chunk.len());
        }
        assert!(effects.is_empty(), "transform never delivers to others");
        out.take_all()
    }

    fn run_whole(input: &[u8]) -> Vec<u8> {
        run(&mut shared(1 << 20), &[input])
    }

    #[test]
    fn each_action_transforms_as_specified() {
        let cases: [(u8, &[u8], &[u8]); 4] = [
            (0x01, b"Hello, World 9z", b"HELLO, WORLD 9Z"),
            (0x02, b"Hello, World 9Z", b"hello, world 9z"),
            (0x04, b"hELLO wORLD x1y o'neil", b"Hello World X1Y O'Neil"),
            (0x08, b"abc\x00\xff", b"\xff\x00cba"),
        ];
        for (code, input, expected) in cases {
            assert_eq!(
                run_whole(&request(code, input)),
                response(expected),
                "action {code:#x}"
            );
        }
    }

    #[test]
    fn shuffle_returns_a_permutation() {
        let data: Vec<u8> = (0..=255).collect();
        let reply = run_whole(&request(0x10, &data));
        assert_eq!(&reply[..4], &256u32.to_be_bytes());
        assert!(Action::Shuffle.is_valid_response(&data, &reply[4..]));
        assert_ne!(
            &reply[4..],
            &data[..],
            "256 bytes left in place: not shuffled"
        );
    }

    #[test]
    fn length_zero_is_an_empty_response_for_every_action() {
        for action in Action::ALL {
            assert_eq!(run_whole(&request(action.code(), b"")), response(b""));
        }
    }

    #[test]
    fn unknown_action_is_discarded_and_answered_error_in_step() {
        let mut input = request(0x03, b"xyz");
        input.extend(request(0x00, b""));
        input.extend(request(0x1f, b"q"));
        input.extend(request(0x01, b"ok"));
        let mut expected = response(b"error");
        expected.extend(response(b"error"));
        expected.extend(response(b"error"));
        expected.extend(response(b"OK"));
        assert_eq!(run_whole(&input), expected);
    }

    #[test]
    fn streamed_header_goes_out_before_the_data_arrives() {
        let mut shared = shared(0);
        let req = request(0x01, b"abcdef");
        let mut session = TransformSession::new();
        let mut out = Output::new();
        let mut effects = Vec::new();
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        let mut cx = Cx::new(
            &mut out,
            &mut shared,
            &mut effects,
            peer,
            1,
            SystemTime::UNIX_EPOCH,
        );
        session.on_input(&req[..6], &mut cx);
        assert!(session.mid_message());
        assert_eq!(out.take_all(), [&6u32.to_be_bytes()[..], b"AB"].concat());
    }

    #[test]
    fn title_case_carries_the_previous_letter_across_splits() {
        let req = request(0x04, b"abc def");
        for cut in 0..req.len() {
            let reply = run(&mut shared(0), &[&req[..cut], &req[cut..]]);
            assert_eq!(reply, response(b"Abc Def"), "cut at {cut}");
        }
    }

    #[test]
    fn over_budget_whole_message_is_refused_and_budget_is_shared() {
        let mut shared = shared(10);
        // Held (unsent) replies keep their reservation: the first 8-byte
        // reverse is admitted, the second no longer fits in 10 bytes.
        let mut input = request(0x08, b"12345678");
        input.extend(request(0x08, b"abcdefgh"));
        input.extend(request(0x08, b"ab"));
        let reply = run(&mut shared, &[&input]);
        let mut expected = response(b"87654321");
        expected.extend(response(b"error"));
        expected.extend(response(b"ba"));
        assert_eq!(reply, expected);
        assert_eq!(
            shared.transform.budget.held(),
            0,
            "sent replies released the budget"
        );
    }

    #[test]
    fn largest_length_header_is_accepted() {
        let header = encode_header(0x01, MAX_LENGTH);
        assert_eq!(decode_header(header), (0x01, MAX_LENGTH));
        let reply = run_whole(&[&header[..], b"ab"].concat());
        assert_eq!(reply, [&MAX_LENGTH.to_be_bytes()[..], b"AB"].concat());
    }

    #[test]
    fn mid_message_is_false_only_between_requests() {
        let mut shared = shared(100);
        let mut session = TransformSession::new();
        let mut out = Output::new();
        let mut effects = Vec::new();
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        let mut cx = Cx::new(
            &mut out,
            &mut shared,
            &mut effects,
            peer,
            1,
            SystemTime::UNIX_EPOCH,
        );
        assert!(!session.mid_message());
        session.on_input(&[0x40], &mut cx);
        assert!(session.mid_message());
        session.on_input(&[0, 0, 1], &mut cx);
        assert!(session.mid_message());
        session.on_input(b"z", &mut cx);
        assert!(!session.mid_message());
    }

    /// The spec's title case, written the obvious way: the reference the
    /// branch-free `title_case` must match.
    fn title_case_reference(bytes: &[u8], mut prev_letter: bool) -> Vec<u8> {
        bytes
            .iter()
            .map(|&b| {
                let letter = b.is_ascii_alphabetic();
                let out = match (letter, prev_letter) {
                    (true, true) => b.to_ascii_lowercase(),
                    (true, false) => b.to_ascii_uppercase(),
                    (false, _) => b,
                };
                prev_letter = letter;
                out
            })
            .collect()
    }

    #[test]
    fn title_case_matches_the_reference_for_every_byte_pair() {
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                for prev in [false, true] {
                    let mut got = [first, second];
                    let mut carried = prev;
                    title_case(&mut got, &mut carried);
                    assert_eq!(
                        got[..],
                        title_case_reference(&[first, second], prev)[..],
                        "{first:#04x} {second:#04x} after letter: {prev}"
                    );
                    assert_eq!(carried, second.is_ascii_alphabetic());
                }
            }
        }
    }

    mod splits {
        use super::*;
        use proptest::prelude::*;

        fn arb_request() -> impl Strategy<Value = Vec<u8>> {
            (
                prop_oneof![
                    Just(0x01u8),
                    Just(0x02),
                    Just(0x04),
                    Just(0x08),
                    Just(0x10),
                    0u8..32
                ],
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(code, data)| request(code, &data))
        }

        proptest! {
            /// Long runs too (the vectorised body of `title_case`, not
            /// only its tail): the same as the reference, at any split.
            #[test]
            fn title_case_matches_the_reference_at_any_split(
                text in proptest::collection::vec(
                    prop_oneof![any::<u8>(), b'a'..=b'z', b'A'..=b'Z', Just(b' ')],
                    0..300,
                ),
                cut in any::<prop::sample::Index>(),
            ) {
                let cut = cut.index(text.len() + 1);
                let mut got = text.clone();
                let (head, tail) = got.split_at_mut(cut);
                let mut prev = false;
                title_case(head, &mut prev);
                title_case(tail, &mut prev);
                prop_assert_eq!(got, title_case_reference(&text, false));
            }

            /// Any split of any request stream gives the same replies as the
            /// stream fed whole (shuffle included: the generator is seeded
            /// and consumed only at message ends, so it is split-blind).
            #[test]
            fn any_split_gives_the_same_replies(
                requests in proptest::collection::vec(arb_request(), 1..20),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
                budget in prop_oneof![Just(0usize), Just(100), Just(1 << 20)],
            ) {
                let stream = requests.concat();
                let whole = run(&mut shared(budget), &[&stream]);
                let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                let chunks = crate::proto::testing::split_at(&stream, &cuts);
                prop_assert_eq!(run(&mut shared(budget), &chunks), whole.clone());
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                prop_assert_eq!(run(&mut shared(budget), &bytes), whole);
            }
        }
    }
}
