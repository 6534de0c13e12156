//! Target `transform`: the binary transform protocol, with its shared
//! `--max-buffer` budget.
//!
//! Input: `[budget][cuts][stream]`; `budget % 4` picks a `--max-buffer` of
//! 0, 16, 256 or 1 MiB bytes (small, to be reached often; a request is
//! never given more than that to hold).
//!
//! Invariants:
//! - every byte is consumed (input left while the session wants turns is
//!   offered again after them, as the loop does);
//! - the reply stream parses as a sequence of length-prefixed responses,
//!   one per complete request, each the reference's (the action applied,
//!   a permutation for shuffle, `error` for an unknown action or a reverse
//!   or shuffle over budget), followed, for a trailing incomplete
//!   streamed request, by its header and the transform of the data so far;
//! - the same bytes for the stream fed whole, at the fuzzer's split points
//!   and byte by byte (the shuffle generator is seeded);
//! - the budget held never passes `--max-buffer`, equals what the
//!   reference holds (data is charged as it arrives: a trailing held
//!   request holds the data it has so far, a header alone nothing), and
//!   returns to zero when the replies are dropped;
//!   with replies taken after every read, every response is still the
//!   transform or `error`, and nothing is held at the end.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use onepoll::config::Config;
use onepoll::proto::rng::Rng;
use onepoll::proto::transform::{self, Action, Table, TransformSession, MAX_LENGTH};
use onepoll::proto::{Cx, Output, Session, Shared};

use super::harness::show;
use super::input::{self, Input};

/// One request of the stream, as the reference parses it.
struct Request<'s> {
    code: u8,
    data: &'s [u8],
    /// Its LENGTH: `data.len()` when complete.
    length: u32,
}

/// The complete requests of `stream`, the trailing incomplete one whose
/// header is whole (if any), and how many bytes follow the complete ones.
type Parsed<'s> = (Vec<Request<'s>>, Option<Request<'s>>, usize);

fn parse_requests(stream: &[u8]) -> Parsed<'_> {
    let mut rest = stream;
    let mut complete = Vec::new();
    while let Some((header, after)) = rest.split_first_chunk::<4>() {
        let word = u32::from_be_bytes(*header);
        let (code, length) = ((word >> 27) as u8, word & MAX_LENGTH);
        let len = length as usize;
        if after.len() < len {
            let partial = Request {
                code,
                data: after,
                length,
            };
            return (complete, Some(partial), rest.len());
        }
        let (data, next) = after.split_at(len);
        complete.push(Request { code, data, length });
        rest = next;
    }
    (complete, None, rest.len())
}

/// The responses of a reply stream, and the bytes after the last whole
/// one.
fn parse_responses(mut replies: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut responses = Vec::new();
    while let Some((header, after)) = replies.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*header) as usize;
        if after.len() < len {
            break;
        }
        let (data, next) = after.split_at(len);
        responses.push(data);
        replies = next;
    }
    (responses, replies)
}

/// The action applied to `data` by the reference (not for shuffle).
fn apply(action: Action, data: &[u8]) -> Vec<u8> {
    match action {
        Action::Uppercase => data.to_ascii_uppercase(),
        Action::Lowercase => data.to_ascii_lowercase(),
        Action::TitleCase => {
            let mut prev = false;
            data.iter()
                .map(|&b| {
                    let letter = b.is_ascii_alphabetic();
                    let out = match (letter, prev) {
                        (true, true) => b.to_ascii_lowercase(),
                        (true, false) => b.to_ascii_uppercase(),
                        _ => b,
                    };
                    prev = letter;
                    out
                })
                .collect()
        }
        Action::Reverse => data.iter().rev().copied().collect(),
        Action::Shuffle | Action::Random => unreachable!("no single answer"),
    }
}

fn is_permutation(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Whether `response` is a correct answer to `request` given whether the
/// budget admitted it (`None`: the caller does not know).
fn check_response(request: &Request<'_>, response: &[u8], admitted: Option<bool>, i: usize) {
    let what = || {
        format!(
            "response {i} to action {:#x}: {:?}",
            request.code,
            show(response)
        )
    };
    match Table::Y2021.action(request.code) {
        None => assert_eq!(response, b"error", "{}", what()),
        Some(action)
            if !action.streams() && !request.data.is_empty() && admitted == Some(false) =>
        {
            assert_eq!(response, b"error", "{} (over budget)", what())
        }
        Some(action) if !action.streams() && !request.data.is_empty() && admitted.is_none() => {
            let valid = response == b"error" || {
                if action == Action::Shuffle {
                    is_permutation(request.data, response)
                } else {
                    response == apply(action, request.data)
                }
            };
            assert!(valid, "{}", what());
        }
        Some(Action::Shuffle) => assert!(
            response.len() == request.data.len() && is_permutation(request.data, response),
            "{} (not a permutation)",
            what()
        ),
        Some(action) => assert_eq!(response, apply(action, request.data), "{}", what()),
    }
}

struct Run {
    replies: Vec<u8>,
    held_at_end: usize,
    mid_message: bool,
}

/// Feeds `chunks`; with `drain`, takes the replies after every read (so
/// held messages give their budget back) and returns them all.
fn run(budget: usize, chunks: &[&[u8]], drain: bool) -> Run {
    let mut shared = Shared::new(&Config::default());
    shared.transform = transform::Shared::new(budget, Rng::from_seed(7));
    let mut session = TransformSession::new();
    let mut out = Output::new();
    let mut effects = Vec::new();
    let mut replies = Vec::new();
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    for chunk in chunks {
        let mut cx = Cx::new(
            &mut out,
            &mut shared,
            &mut effects,
            peer,
            1,
            SystemTime::UNIX_EPOCH,
        );
        let mut rest: &[u8] = chunk;
        loop {
            let used = session.on_input(rest, &mut cx);
            rest = rest.get(used..).expect("consumed at most its input");
            let mut turns = 0;
            while session.wants_turn() {
                session.on_turn(&mut cx);
                turns += 1;
                assert!(turns < 10_000_000, "turns never end");
            }
            if rest.is_empty() {
                break;
            }
            assert!(
                turns > 0,
                "transform consumes all its input but behind turns"
            );
        }
        let held = shared.transform.budget.held();
        assert!(held <= budget, "held {held} bytes, budget {budget}");
        if drain {
            replies.extend(out.take_all());
            assert!(
                shared.transform.budget.held() <= held,
                "taking replies does not hold more"
            );
        }
    }
    assert!(effects.is_empty(), "transform delivers to nobody else");
    let held_at_end = shared.transform.budget.held();
    let mid_message = session.mid_message();
    replies.extend(out.take_all());
    drop(session);
    assert_eq!(
        shared.transform.budget.held(),
        0,
        "budget returned once replies and session are gone"
    );
    Run {
        replies,
        held_at_end,
        mid_message,
    }
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let budget = [0, 16, 256, 1 << 20][usize::from(input.byte() % 4)];
    let cuts = input.cuts();
    let stream = input.rest();
    let (requests, partial, trailing) = parse_requests(stream);

    // Fed whole, replies never taken: admission follows the reference.
    let whole = run(budget, &[stream], false);
    let (responses, _) = parse_responses(&whole.replies);
    assert_eq!(
        responses.len(),
        requests.len(),
        "one response per complete request"
    );
    assert_eq!(whole.mid_message, trailing > 0, "mid_message at the end");
    let mut held = 0usize;
    for (i, (request, response)) in requests.iter().zip(&responses).enumerate() {
        let admitted = match Table::Y2021.action(request.code) {
            Some(a) if !a.streams() && !request.data.is_empty() => {
                let fits = held + request.data.len() <= budget;
                if fits {
                    held += request.data.len();
                }
                Some(fits)
            }
            _ => None,
        };
        check_response(request, response, admitted.or(Some(true)), i);
    }
    // What follows the complete requests' responses.
    let tail_start = responses
        .iter()
        .take(requests.len())
        .map(|r| 4 + r.len())
        .sum::<usize>();
    let tail = whole.replies.get(tail_start..).unwrap_or_default();
    match partial.as_ref().map(|p| (p, Table::Y2021.action(p.code))) {
        Some((p, Some(action))) if action.streams() => {
            let mut expected = p.length.to_be_bytes().to_vec();
            expected.extend(apply(action, p.data));
            assert_eq!(tail, &expected[..], "trailing streamed response");
        }
        Some((p, Some(_))) if p.length > 0 && held + p.data.len() <= budget => {
            held += p.data.len();
            assert!(tail.is_empty(), "a held message answered early");
        }
        _ => assert!(
            tail.is_empty(),
            "bytes after the last response: {:?}",
            show(tail)
        ),
    }
    assert_eq!(
        whole.held_at_end, held,
        "budget held differs from the reference"
    );

    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    for chunks in [input::split(stream, &cuts), bytes] {
        assert_eq!(
            run(budget, &chunks, false).replies,
            whole.replies,
            "a split changed the replies"
        );
    }

    // Replies taken after every read: budget is given back as they go, so
    // admission depends on the split; every response is still valid.
    let drained = run(budget, &input::split(stream, &cuts), true);
    let (responses, _) = parse_responses(&drained.replies);
    assert_eq!(responses.len(), requests.len(), "one response per request");
    for (i, (request, response)) in requests.iter().zip(&responses).enumerate() {
        check_response(request, response, None, i);
    }
}
