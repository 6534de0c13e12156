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
//! Two action tables are in use by the course this protocol comes from;
//! the server speaks one, chosen by `--transform-table` ([`Table`]):
//!
//! | ACTION | `2021` (default) | `2023`    |
//! |--------|------------------|-----------|
//! | `0x01` | uppercase        | uppercase |
//! | `0x02` | lowercase        | lowercase |
//! | `0x04` | title-case       | reverse   |
//! | `0x08` | reverse          | shuffle   |
//! | `0x10` | shuffle          | random    |
//!
//! | name       | response DATA |
//! |------------|---------------|
//! | uppercase  | ASCII `a`–`z` become `A`–`Z`; other bytes unchanged |
//! | lowercase  | ASCII `A`–`Z` become `a`–`z`; other bytes unchanged |
//! | title-case | an ASCII letter is uppercased when the byte before it is not an ASCII letter (or it is the first byte), lowercased otherwise; other bytes unchanged |
//! | reverse    | the bytes in reverse order |
//! | shuffle    | a uniformly random permutation of the bytes |
//! | random     | a random edit ([`random_edit`]): bytes dropped or repeated up to 16 times, order kept |
//!
//! Every response to a valid action but random has the request's LENGTH.
//! LENGTH 0 is valid and answered with an empty response (`00 00 00 00`).
//!
//! ## 5. Errors
//!
//! - **Unknown ACTION** (any value not in the table, including 0 and
//!   combinations of bits): the server reads and discards the LENGTH data
//!   bytes, so the stream stays in step, and answers the 5 bytes `error`
//!   (`00 00 00 05 65 72 72 6f 72`). Later requests are served normally.
//! - **Over budget**: reverse, shuffle and random must hold a message
//!   whole before answering (random also holds its result beside it). The
//!   bytes they hold, across all connections, stay within `--max-buffer`
//!   (default 128 MiB). A request takes from that budget as its data
//!   arrives, not when its header does (a header alone holds nothing, so
//!   headers that promise much and send little reserve nothing): once its
//!   data — or random's result — would pass the budget, what it holds is
//!   given back, the rest of its data is discarded as it arrives and it is
//!   answered `error`. Held bytes are released when their response has
//!   been sent.
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
//! reverse and shuffle hold LENGTH bytes, random those and its result,
//! within the budget above, and are worked on in bounded slices (see
//! [`super::held`]): a large one does one slice per turn of the loop,
//! between other connections' turns, and the requests pipelined after it
//! wait for it, in order.
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
use std::str::FromStr;

use super::budget::Budget;
use super::held::{Held, Job, Slices};
use super::prefix::{split_at_most, WordReader};
pub use super::random_edit::{is_possible_edit, random_edit, OverBudget, RandomEdit, MAX_REPEAT};
use super::rng::Rng;
use super::{Cx, Output, Session};
use crate::config::Protocol;

/// Largest LENGTH a header can carry (27 bits).
pub const MAX_LENGTH: u32 = (1 << 27) - 1;

/// The response to an unknown action or a refused message.
pub const ERROR_REPLY: &[u8] = b"error";

/// Bytes of a request or response header.
pub const HEADER_BYTES: usize = 4;

/// The actions of section 4. Which ACTION code names which action depends
/// on the server's [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// ASCII letters to upper case.
    Uppercase,
    /// ASCII letters to lower case.
    Lowercase,
    /// First letter of each run of letters upper, the rest lower.
    TitleCase,
    /// Bytes in reverse order.
    Reverse,
    /// A uniformly random permutation.
    Shuffle,
    /// A random edit: bytes dropped or repeated (see [`random_edit`]).
    Random,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 6] = [
        Action::Uppercase,
        Action::Lowercase,
        Action::TitleCase,
        Action::Reverse,
        Action::Shuffle,
        Action::Random,
    ];

    /// The action's name as the spec writes it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Uppercase => "uppercase",
            Action::Lowercase => "lowercase",
            Action::TitleCase => "title-case",
            Action::Reverse => "reverse",
            Action::Shuffle => "shuffle",
            Action::Random => "random",
        }
    }

    /// Whether the result is random (shuffle and random): a client can check
    /// it is a possible result, not compare it with one.
    pub fn is_random(self) -> bool {
        matches!(self, Action::Shuffle | Action::Random)
    }

    /// Whether the server can stream this action (answer before the data
    /// has all arrived).
    pub fn streams(self) -> bool {
        matches!(
            self,
            Action::Uppercase | Action::Lowercase | Action::TitleCase
        )
    }

    /// The work this action does on a message it holds whole, if it holds
    /// it (see [`super::held`]).
    pub fn held_job(self) -> Option<Job> {
        match self {
            Action::Reverse => Some(Job::Reverse),
            Action::Shuffle => Some(Job::Shuffle),
            Action::Random => Some(Job::Random),
            Action::Uppercase | Action::Lowercase | Action::TitleCase => None,
        }
    }

    /// Applies a length-keeping action to a whole message, in place. Random
    /// changes the length: it is left to [`random_edit`], and does nothing
    /// here.
    pub fn apply(self, data: &mut [u8], rng: &mut Rng) {
        match self {
            Action::Uppercase => data.make_ascii_uppercase(),
            Action::Lowercase => data.make_ascii_lowercase(),
            Action::TitleCase => title_case(data, &mut false),
            Action::Reverse => data.reverse(),
            Action::Shuffle => rng.shuffle(data),
            Action::Random => {}
        }
    }

    /// Whether `response` is a correct transform of `request` (for shuffle:
    /// any permutation; for random: any possible edit). Lets a client tell
    /// data from the `error` reply.
    pub fn is_valid_response(self, request: &[u8], response: &[u8]) -> bool {
        match self {
            Action::Random => is_possible_edit(request, response),
            _ if request.len() != response.len() => false,
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

/// Which action each ACTION code names: the course this protocol comes from
/// published two tables, and clients of both exist (`--transform-table`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Table {
    /// The labs of 2021: 0x04 title-case, 0x08 reverse, 0x10 shuffle.
    #[default]
    Y2021,
    /// The labs from 2023 on: 0x04 reverse, 0x08 shuffle, 0x10 random.
    Y2023,
}

impl Table {
    /// Both tables.
    pub const ALL: [Table; 2] = [Table::Y2021, Table::Y2023];

    /// The table's name on command lines: `2021` or `2023`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Y2021 => "2021",
            Table::Y2023 => "2023",
        }
    }

    /// The five actions of the table, in code order (0x01, 0x02, 0x04,
    /// 0x08, 0x10).
    pub fn actions(self) -> [Action; 5] {
        match self {
            Table::Y2021 => [
                Action::Uppercase,
                Action::Lowercase,
                Action::TitleCase,
                Action::Reverse,
                Action::Shuffle,
            ],
            Table::Y2023 => [
                Action::Uppercase,
                Action::Lowercase,
                Action::Reverse,
                Action::Shuffle,
                Action::Random,
            ],
        }
    }

    /// The action this table gives the 5-bit `code`, if any: one bit set,
    /// the lowest five. A plain lookup (a branch or two), on every header.
    pub fn action(self, code: u8) -> Option<Action> {
        if !code.is_power_of_two() {
            return None;
        }
        self.actions().get(code.trailing_zeros() as usize).copied()
    }

    /// The code of `action` in this table, if the table has it.
    pub fn code(self, action: Action) -> Option<u8> {
        let at = self.actions().iter().position(|&a| a == action)?;
        Some(1 << at)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table name that is neither `2021` nor `2023`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTable(pub String);

impl fmt::Display for UnknownTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown action table '{}' (expected 2021 or 2023)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTable {}

impl FromStr for Table {
    type Err = UnknownTable;
    fn from_str(s: &str) -> Result<Table, UnknownTable> {
        Table::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTable(s.to_string()))
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
    /// The generator of shuffle and random.
    pub rng: Rng,
    /// Which action each ACTION code names (`--transform-table`).
    pub table: Table,
    /// The most work a held message gets per turn.
    pub slices: Slices,
}

impl Shared {
    /// Shared state with a `max_buffer`-byte budget, speaking the default
    /// (2021) action table.
    pub fn new(max_buffer: usize, rng: Rng) -> Shared {
        Shared {
            budget: Budget::new(max_buffer),
            rng,
            table: Table::default(),
            slices: Slices::DEFAULT,
        }
    }

    /// The same, speaking `table`.
    pub fn with_table(self, table: Table) -> Shared {
        Shared { table, ..self }
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
    /// A message reverse or shuffle holds whole: gathered within budget,
    /// the reply built in place (its header, then the data as it arrives),
    /// then transformed in slices, one per turn (no input is taken while
    /// it is worked on), and queued as one segment.
    Held(Held),
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
        cx.shared.counts.request(Protocol::Transform);
        self.state = match cx.shared.transform.table.action(code) {
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
            Some(action) => match action.held_job() {
                _ if length == 0 => {
                    cx.out.put_u32(0);
                    FRESH
                }
                Some(job) => State::Held(Held::new(length, job, &cx.shared.transform.budget)),
                None => State::Discard { left: length },
            },
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

/// Does one slice of the work on a whole message; queues its reply once
/// done, or gives the message back.
fn work(mut held: Held, cx: &mut Cx<'_>) -> Option<Held> {
    let transform = &mut cx.shared.transform;
    match held.step(&mut transform.rng, transform.slices) {
        Ok(false) => return Some(held),
        Ok(true) => {
            let (reply, reservation) = held.into_reply();
            cx.out.put_held(reply, reservation);
        }
        // A random result that would pass the budget: what it held goes
        // back with `held`.
        Err(OverBudget) => put_error(cx),
    }
    None
}

fn put_error(cx: &mut Cx<'_>) {
    cx.out.put_u32(ERROR_REPLY.len() as u32);
    cx.out.put(ERROR_REPLY);
}

impl super::Declared for TransformSession {
    const DECLARATION: super::Declaration = super::Declaration {
        name: "transform",
        default_port: 8083,
        served_by_default: true,
        transport: super::Transport::Tcp,
        server_full: b"",
        too_many_from_address: b"",
        flow: super::Flow::RequestReply,
        pacing: super::Pacing::Unpaced,
    };

    fn open(_shared: &mut super::Shared) -> TransformSession {
        TransformSession::new()
    }
}

impl Session for TransformSession {
    /// Consumes all of `input`: partial headers and held messages are kept in
    /// the session itself, so the connection never carries transform input.
    /// Except behind a large reverse or shuffle: input stops at the end of
    /// its message while it is worked on in slices ([`Session::wants_turn`]),
    /// and what follows is offered again once it is done.
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
                State::Held(held) if held.is_working() => break,
                State::Held(held) => match held.push(rest) {
                    Ok(after) => {
                        rest = after;
                        if held.is_whole() {
                            // Its first slice now: for all but large
                            // messages, the whole work.
                            self.on_turn(cx);
                        }
                    }
                    // Over budget: what it held goes back now.
                    Err(left) => self.state = State::Discard { left },
                },
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
        input.len() - rest.len()
    }

    fn mid_message(&self) -> bool {
        !matches!(&self.state, State::Header(reader) if reader.is_empty())
    }

    fn wants_turn(&self) -> bool {
        matches!(&self.state, State::Held(held) if held.is_working())
    }

    fn on_turn(&mut self, cx: &mut Cx<'_>) {
        if !matches!(&self.state, State::Held(held) if held.is_whole()) {
            return;
        }
        if let State::Held(held) = std::mem::replace(&mut self.state, FRESH) {
            if let Some(held) = work(held, cx) {
                self.state = State::Held(held);
            }
        }
    }

    /// The whole message being collected or worked on, as allocated.
    fn held_bytes(&self) -> usize {
        match &self.state {
            State::Held(held) => held.heap_bytes(),
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

    /// Feeds `chunks` one read at a time, as the loop does: input the
    /// session leaves while it wants turns is offered again once its turns
    /// are over. Returns all replies.
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
            let mut rest: &[u8] = chunk;
            loop {
                let used = session.on_input(rest, &mut cx);
                rest = &rest[used..];
                let mut turns = 0;
                while session.wants_turn() {
                    assert!(used > 0, "a session wanting turns took input");
                    session.on_turn(&mut cx);
                    turns += 1;
                    assert!(turns < 1_000_000, "turns never end");
                }
                if rest.is_empty() {
                    break;
                }
                assert!(turns > 0, "input left without turns to take");
            }
        }
        assert!(effects.is_empty(), "transform never delivers to others");
        out.take_all()
    }

    /// Slices of a few units, so that small messages take many turns.
    const TINY: Slices = Slices {
        shuffle_swaps: 3,
        reverse_pairs: 2,
        random_bytes: 3,
        copy_bytes: 2,
    };

    fn with_slices(mut shared: AllShared, slices: Slices) -> AllShared {
        shared.transform.slices = slices;
        shared
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
        for code in [0x01, 0x02, 0x04, 0x08, 0x10] {
            for table in Table::ALL {
                let mut shared = shared(1 << 20);
                shared.transform.table = table;
                assert_eq!(run(&mut shared, &[&request(code, b"")]), response(b""));
            }
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
    fn a_header_alone_holds_nothing_and_data_is_charged_as_it_arrives() {
        let mut shared = shared(10);
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
        session.on_input(&encode_header(0x08, MAX_LENGTH), &mut cx);
        assert_eq!(cx.shared.transform.budget.held(), 0, "header only");
        session.on_input(b"abcd", &mut cx);
        assert_eq!(cx.shared.transform.budget.held(), 4);
        // Another connection's message fits beside it, then this one's
        // next bytes would pass the budget: it gives back what it held.
        let other = cx.shared.transform.budget.try_reserve(6).unwrap();
        session.on_input(b"e", &mut cx);
        assert_eq!(cx.shared.transform.budget.held(), 6);
        drop(other);
        // The rest is discarded as it arrives, however much comes.
        session.on_input(&vec![b'x'; 100_000], &mut cx);
        assert_eq!(cx.shared.transform.budget.held(), 0);
        assert!(out.take_all().is_empty(), "answered at the end");
    }

    #[test]
    fn a_message_that_passes_the_budget_mid_data_is_answered_error_in_step() {
        let mut input = request(0x10, &[b'z'; 11]);
        input.extend(request(0x08, b"0123456789"));
        input.extend(request(0x01, b"ok"));
        let mut expected = response(b"error");
        expected.extend(response(b"9876543210"));
        expected.extend(response(b"OK"));
        for chunk in [1, 3, input.len()] {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            assert_eq!(run(&mut shared(10), &chunks), expected, "reads of {chunk}");
        }
    }

    #[test]
    fn a_large_message_is_worked_on_in_turns_and_what_follows_waits() {
        let data: Vec<u8> = (0..100).collect();
        let mut input = request(0x08, &data);
        input.extend(request(0x01, b"after"));
        let mut shared = with_slices(shared(1000), TINY);
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
        let used = session.on_input(&input, &mut cx);
        assert_eq!(used, 104, "input stops at the end of the held message");
        assert!(session.wants_turn() && session.mid_message());
        assert!(cx.out.is_empty());
        let mut turns = 1;
        while session.wants_turn() {
            assert!(cx.out.is_empty(), "no reply before the work is done");
            session.on_turn(&mut cx);
            turns += 1;
        }
        assert_eq!(turns, 25, "50 pairs, 2 a turn");
        assert_eq!(
            session.on_input(&input[used..], &mut cx),
            input.len() - used
        );
        let mut reversed = data.clone();
        reversed.reverse();
        let mut expected = response(&reversed);
        expected.extend(response(b"AFTER"));
        assert_eq!(out.take_all(), expected);
    }

    #[test]
    fn sliced_work_gives_the_replies_of_work_done_at_once() {
        let data: Vec<u8> = (0..=255).cycle().take(3000).collect();
        let mut input = Vec::new();
        for code in [0x10, 0x08, 0x01, 0x10, 0x08] {
            input.extend(request(code, &data[..1000 + usize::from(code)]));
        }
        // In the 2023 table 0x10 is random: its result is built behind the
        // message and moved over it, in slices too.
        for table in Table::ALL {
            let shared = |budget| {
                let mut shared = shared(budget);
                shared.transform.table = table;
                shared
            };
            let at_once = run(&mut shared(1 << 20), &[&input]);
            for slices in [
                TINY,
                Slices {
                    shuffle_swaps: 1,
                    reverse_pairs: 1,
                    random_bytes: 1,
                    copy_bytes: 1,
                },
            ] {
                let sliced = run(&mut with_slices(shared(1 << 20), slices), &[&input]);
                assert_eq!(sliced, at_once, "{table} {slices:?}");
                let bytes: Vec<&[u8]> = input.chunks(7).collect();
                let sliced = run(&mut with_slices(shared(1 << 20), slices), &bytes);
                assert_eq!(sliced, at_once, "{table} {slices:?}, reads of 7");
            }
        }
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

    fn shared_2023(max_buffer: usize) -> AllShared {
        let mut shared = shared(max_buffer);
        shared.transform.table = Table::Y2023;
        shared
    }

    #[test]
    fn the_two_tables_map_codes_as_the_spec_lists() {
        use Action::*;
        let expect = [
            (
                Table::Y2021,
                [Uppercase, Lowercase, TitleCase, Reverse, Shuffle],
            ),
            (
                Table::Y2023,
                [Uppercase, Lowercase, Reverse, Shuffle, Random],
            ),
        ];
        for (table, actions) in expect {
            for (bit, action) in actions.into_iter().enumerate() {
                let code = 1u8 << bit;
                assert_eq!(table.action(code), Some(action), "{table} {code:#x}");
                assert_eq!(table.code(action), Some(code));
            }
            for code in (0..32u8).filter(|c| !c.is_power_of_two()) {
                assert_eq!(table.action(code), None, "{table} {code:#x}");
            }
            assert_eq!(table.name().parse::<Table>(), Ok(table));
        }
        assert_eq!(Table::Y2021.code(Random), None);
        assert_eq!(Table::Y2023.code(TitleCase), None);
        assert!("2022".parse::<Table>().is_err());
        assert_eq!(Table::default(), Table::Y2021);
    }

    #[test]
    fn a_2023_server_answers_the_2023_codes() {
        let mut input = request(0x04, b"abc");
        input.extend(request(0x08, b"aab"));
        input.extend(request(0x01, b"up"));
        let reply = run(&mut shared_2023(1 << 20), &[&input]);
        assert_eq!(&reply[..7], &response(b"cba")[..], "0x04 is reverse");
        let shuffled = &reply[7..14];
        assert_eq!(&shuffled[..4], &3u32.to_be_bytes());
        assert!(Action::Shuffle.is_valid_response(b"aab", &shuffled[4..]));
        assert_eq!(&reply[14..], &response(b"UP")[..]);
    }

    #[test]
    fn a_2023_random_reply_is_a_possible_edit_with_its_own_length() {
        let data = b"hello, random world";
        let reply = run(&mut shared_2023(1 << 20), &[&request(0x10, data)]);
        let len = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
        assert_eq!(reply.len(), 4 + len, "the header gives the result's length");
        assert!(is_possible_edit(data, &reply[4..]), "{:?}", &reply[4..]);
        assert!(Action::Random.is_valid_response(data, &reply[4..]));
        assert!(!Action::Random.is_valid_response(b"hello", b"error"));
        assert_eq!(
            run(&mut shared_2023(1 << 20), &[&request(0x10, b"")]),
            response(b"")
        );
    }

    #[test]
    fn a_random_whose_message_and_result_pass_the_budget_is_refused() {
        // The message alone fills the budget: no room for any result.
        let data = b"12345678";
        let mut tight = shared_2023(data.len());
        let mut input = request(0x10, data);
        input.extend(request(0x04, b"ab"));
        let reply = run(&mut tight, &[&input]);
        let mut expected = response(b"error");
        expected.extend(response(b"ba"));
        assert_eq!(reply, expected);
        assert_eq!(tight.transform.budget.held(), 0);
        // Room for the message and the longest result: always served.
        let mut roomy = shared_2023(data.len() * (1 + MAX_REPEAT));
        let reply = run(&mut roomy, &[&request(0x10, data)]);
        assert!(is_possible_edit(data, &reply[4..]));
        assert_eq!(roomy.transform.budget.held(), 0);
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
                table in prop_oneof![Just(Table::Y2021), Just(Table::Y2023)],
                tiny_slices in any::<bool>(),
            ) {
                let shared = |budget| {
                    let mut shared = shared(budget);
                    shared.transform.table = table;
                    shared
                };
                let stream = requests.concat();
                let whole = run(&mut shared(budget), &[&stream]);
                let slices = if tiny_slices { TINY } else { Slices::DEFAULT };
                let split = || with_slices(shared(budget), slices);
                let cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                let chunks = crate::proto::testing::split_at(&stream, &cuts);
                prop_assert_eq!(run(&mut split(), &chunks), whole.clone());
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                prop_assert_eq!(run(&mut split(), &bytes), whole);
            }
        }
    }
}
