//! Target `upload`: line-counted files saved through the in-memory store.
//!
//! Input: `[limit][fault][fault_at][cuts][stream]`; `limit % 4` picks a
//! `--max-upload` of 0, 8, 64 bytes or unlimited; `fault % 5` injects
//! nothing, a failing create, a write failing past `fault_at % 32` bytes,
//! or a failing rename (twice as likely: nothing).
//!
//! Invariants, for the stream fed whole, at the fuzzer's split points and
//! byte by byte:
//! - every byte is consumed, and status bytes are only `A`, `Q`, `E`; `Q`
//!   or `E` comes at most once, last, and asks to close;
//! - the statuses and the saved files are the reference's, written here
//!   from the module's sections 2-5: file k saved as `k.txt`, byte for byte
//!   the bytes up to its N-th LF, `E` as soon as a file passes the limit or
//!   a store call fails;
//! - `mid_message` is true exactly inside a line count or a file;
//! - one temporary at most is open, none once the connection is closed,
//!   and nothing refused or unfinished is ever saved.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::SystemTime;

use onepoll::config::{Config, UploadLayout};
use onepoll::proto::upload::{self, Fault, MemStore, UploadSession};
use onepoll::proto::{CloseReason, Cx, Output, Session, Shared};

use super::harness::show;
use super::input::{self, Input};

/// Linux error numbers the faults carry (no libc dependency needed).
const EACCES: i32 = 13;
const EISDIR: i32 = 21;
const ENOSPC: i32 = 28;

/// What a run leaves.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    statuses: Vec<u8>,
    saved: Vec<(PathBuf, Vec<u8>)>,
    closing: bool,
    mid_message: bool,
    /// Temporaries open when the input ran out, before the close.
    open: usize,
}

/// The outcome the module's sections 2-5 give for `stream`.
fn reference(stream: &[u8], limit: u64, fault: Option<Fault>) -> Outcome {
    let mut rest = stream;
    let mut statuses = Vec::new();
    let mut saved = Vec::new();
    let mut k = 0u64;
    // (closing, mid_message, inside a file)
    let (closing, mid_message, in_file) = loop {
        let Some((header, after)) = rest.split_first_chunk::<4>() else {
            break (false, !rest.is_empty(), false);
        };
        let lines = u32::from_be_bytes(*header) as usize;
        if lines == 0 {
            statuses.push(b'Q');
            break (true, false, false);
        }
        k += 1;
        if let Some(Fault::Begin(_)) = fault {
            statuses.push(b'E');
            break (true, false, false);
        }
        // The file: up to and including its N-th LF, or all there is.
        let end = after
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(lines - 1)
            .map(|(i, _)| i + 1);
        let body = &after[..end.unwrap_or(after.len())];
        let write_limit = match fault {
            Some(Fault::WriteAfter(at, _)) => at,
            _ => u64::MAX,
        };
        if body.len() as u64 > limit || body.len() as u64 > write_limit {
            statuses.push(b'E');
            break (true, false, false);
        }
        let Some(end) = end else {
            break (false, true, true);
        };
        if let Some(Fault::Commit(_)) = fault {
            statuses.push(b'E');
            break (true, false, false);
        }
        statuses.push(b'A');
        saved.push((PathBuf::from(format!("{k}.txt")), body.to_vec()));
        rest = &after[end..];
    };
    saved.sort(); // as the store lists them: by name
    Outcome {
        statuses,
        saved,
        closing,
        mid_message,
        open: usize::from(in_file),
    }
}

fn call<R>(
    session: &mut UploadSession,
    out: &mut Output,
    shared: &mut Shared,
    f: impl FnOnce(&mut UploadSession, &mut Cx<'_>) -> R,
) -> (R, bool) {
    let mut effects = Vec::new();
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let mut cx = Cx::new(out, shared, &mut effects, peer, 42, SystemTime::UNIX_EPOCH);
    let r = f(session, &mut cx);
    let close = cx.close_requested();
    assert!(effects.is_empty(), "upload delivers to nobody else");
    (r, close)
}

/// Feeds `chunks` as the loop would (until a close request), then closes
/// the connection (with end of stream first if `eof`).
fn run(chunks: &[&[u8]], limit: u64, fault: Option<Fault>, eof: bool) -> Outcome {
    let store = MemStore::new(UploadLayout::Flat);
    if let Some(fault) = fault {
        store.inject(fault);
    }
    let mut shared = Shared::new(&Config::default());
    shared.upload = upload::Shared::new(Box::new(store.clone()), limit);
    let mut session = UploadSession::new();
    let mut out = Output::new();
    let mut closing = false;
    'chunks: for chunk in chunks {
        // The rest of a chunk is offered again while the core pauses on
        // its per-call budget of files, as the loop does.
        let mut rest: &[u8] = chunk;
        loop {
            if closing {
                break 'chunks;
            }
            let ((used, paused), close) = call(&mut session, &mut out, &mut shared, |s, cx| {
                (s.on_input(rest, cx), s.wants_turn())
            });
            closing = close;
            assert!(store.open_temporaries() <= 1, "one file at a time");
            if used == rest.len() {
                break;
            }
            assert!(paused, "upload leaves input only when it pauses");
            assert!(used > 0, "a pause makes progress");
            rest = rest.get(used..).unwrap_or_default();
        }
    }
    let mid_message = session.mid_message();
    let open = store.open_temporaries();
    let statuses = out.take_all();
    if eof && !closing {
        call(&mut session, &mut out, &mut shared, |s, cx| s.on_eof(cx));
        assert_eq!(store.open_temporaries(), 0, "end of stream drops the file");
    }
    call(&mut session, &mut out, &mut shared, |s, cx| {
        s.on_close(cx, CloseReason::PeerClosed)
    });
    assert!(out.is_empty(), "nothing said after the input ends");
    drop(session);
    assert_eq!(store.open_temporaries(), 0, "no temporary left");
    let saved = store
        .names()
        .into_iter()
        .map(|name| {
            let data = store.saved(&name.to_string_lossy()).unwrap_or_default();
            (name, data)
        })
        .collect();
    Outcome {
        statuses,
        saved,
        closing,
        mid_message,
        open,
    }
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let limit = [0, 8, 64, u64::MAX][usize::from(input.byte() % 4)];
    let fault_kind = input.byte() % 5;
    let fault_at = u64::from(input.byte() % 32);
    let fault = match fault_kind {
        1 => Some(Fault::Begin(EACCES)),
        2 => Some(Fault::WriteAfter(fault_at, ENOSPC)),
        3 => Some(Fault::Commit(EISDIR)),
        _ => None,
    };
    let cuts = input.cuts();
    let stream = input.rest();

    let whole = run(&[stream], limit, fault, false);
    let statuses = &whole.statuses;
    assert!(
        statuses.iter().all(|b| b"AQE".contains(b)),
        "status bytes other than A, Q, E: {:?}",
        show(statuses)
    );
    let ends = statuses.iter().filter(|&&b| b != b'A').count();
    assert!(ends <= 1, "Q or E more than once");
    assert_eq!(
        whole.closing,
        ends == 1 && statuses.last() != Some(&b'A'),
        "Q or E comes last and closes"
    );
    assert_eq!(
        whole,
        reference(stream, limit, fault),
        "statuses or files differ from the spec's"
    );
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        run(&input::split(stream, &cuts), limit, fault, true),
        whole,
        "a split changed the outcome"
    );
    assert_eq!(
        run(&bytes, limit, fault, true),
        whole,
        "byte by byte differs"
    );
}
