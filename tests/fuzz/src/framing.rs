//! Target `framing`: the line framer shared by tne, cmd and chat.
//!
//! Input: `[max_line][cuts][stream]` (see [`super::input`]).
//!
//! Invariants, for the stream fed whole, at the fuzzer's split points and
//! byte by byte, through both `each_line` and `decode`:
//! - the frames are exactly the spec's lines ([`super::input::reference_lines`]):
//!   one CR before LF dropped, an over-long line reported once;
//! - at most `max_line + 1` bytes are ever left unconsumed;
//! - at the end, `mid_line` and `has_unanswered_partial` say what the
//!   reference says about the bytes after the last LF.

use std::ops::ControlFlow;

use onepoll::proto::framing::{Frame, LineFramer};

use super::input::{self, Input};

/// A frame as a core sees it: a line, or `None` for an over-long one.
type Event = Option<Vec<u8>>;

struct Run {
    events: Vec<Event>,
    most_carried: usize,
    mid_line: bool,
    unanswered: bool,
}

/// Feeds `chunks` with the loop's carry, through `each_line`.
fn run_each_line(max_line: usize, chunks: &[&[u8]]) -> Run {
    let mut framer = LineFramer::new(max_line);
    let mut carried = Vec::new();
    let mut events = Vec::new();
    let mut most_carried = 0;
    for chunk in chunks {
        carried.extend_from_slice(chunk);
        let used = framer.each_line(&carried, |item| {
            events.push(item.ok().map(<[u8]>::to_vec));
            ControlFlow::Continue(())
        });
        assert!(used <= carried.len());
        carried.drain(..used);
        most_carried = most_carried.max(carried.len());
    }
    Run {
        events,
        most_carried,
        mid_line: framer.mid_line(),
        unanswered: framer.has_unanswered_partial(),
    }
}

/// The same through `decode`, one frame per call.
fn run_decode(max_line: usize, chunks: &[&[u8]]) -> Run {
    let mut framer = LineFramer::new(max_line);
    let mut carried: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut most_carried = 0;
    for chunk in chunks {
        carried.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            let rest = carried.get(at..).unwrap_or_default();
            let (frame, used) = framer.decode(rest);
            assert!(used <= rest.len(), "decode consumed more than offered");
            at += used;
            match frame {
                Frame::Line(line) => {
                    assert!(line.len() <= max_line, "a line over the limit");
                    events.push(Some(line.to_vec()));
                }
                Frame::TooLong => events.push(None),
                Frame::NeedMore => break,
            }
        }
        carried.drain(..at);
        most_carried = most_carried.max(carried.len());
    }
    Run {
        events,
        most_carried,
        mid_line: framer.mid_line(),
        unanswered: framer.has_unanswered_partial(),
    }
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max_line = input::max_line(input.byte());
    let cuts = input.cuts();
    let stream = input.rest();

    let (lines, tail) = input::reference_lines(max_line, stream);
    let expected: Vec<Event> = lines.iter().map(|l| l.map(<[u8]>::to_vec)).collect();
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let splits = [vec![stream], input::split(stream, &cuts), bytes];
    for chunks in &splits {
        for run in [
            run_each_line(max_line, chunks),
            run_decode(max_line, chunks),
        ] {
            assert_eq!(run.events, expected, "frames differ from the spec's lines");
            assert!(
                run.most_carried <= max_line + 1,
                "carried {} bytes, max_line {max_line}",
                run.most_carried
            );
            assert_eq!(run.mid_line, tail.is_some(), "mid_line at the end");
            assert_eq!(
                run.unanswered,
                tail == Some(false),
                "has_unanswered_partial at the end"
            );
        }
    }
}
