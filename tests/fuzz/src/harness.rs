//! One connection driven exactly as the event loop drives it: unconsumed
//! input carried and offered again with the next read, nothing offered
//! after a close request, and the most bytes ever carried recorded.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use onepoll::config::Config;
use onepoll::proto::{Cx, Effect, Output, Session, Shared};

/// One connection's worth of loop state around a session.
pub struct Conn<S> {
    /// The core under test.
    pub session: S,
    /// State shared by all connections.
    pub shared: Shared,
    /// Replies queued and not taken.
    pub out: Output,
    /// Deliveries to other connections the session asked for.
    pub effects: Vec<Effect>,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The time every call sees.
    pub now: SystemTime,
    /// Input offered and not consumed.
    pub carried: Vec<u8>,
    /// Most bytes carried between two reads while the connection was open.
    pub most_carried: usize,
    /// The session asked to close after its replies.
    pub closed: bool,
}

impl<S: Session> Conn<S> {
    /// A connection around `session`, with `Config::default()`'s shared
    /// state.
    pub fn new(session: S) -> Conn<S> {
        Conn {
            session,
            shared: Shared::new(&Config::default()),
            out: Output::new(),
            effects: Vec::new(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
            now: SystemTime::UNIX_EPOCH,
            carried: Vec::new(),
            most_carried: 0,
            closed: false,
        }
    }

    /// One read's worth of bytes; returns what the session consumed.
    pub fn feed(&mut self, chunk: &[u8]) -> usize {
        if self.closed {
            return 0;
        }
        self.carried.extend_from_slice(chunk);
        let mut cx = Cx::new(
            &mut self.out,
            &mut self.shared,
            &mut self.effects,
            self.peer,
            1,
            self.now,
        );
        let used = self.session.on_input(&self.carried, &mut cx);
        self.closed = cx.close_requested();
        assert!(used <= self.carried.len(), "consumed more than offered");
        self.carried.drain(..used);
        if self.closed {
            // The loop reads no more and drops what it carried.
            self.carried.clear();
        }
        self.most_carried = self.most_carried.max(self.carried.len());
        used
    }

    /// The peer shut its write side.
    pub fn eof(&mut self) {
        if self.closed {
            return;
        }
        let mut cx = Cx::new(
            &mut self.out,
            &mut self.shared,
            &mut self.effects,
            self.peer,
            1,
            self.now,
        );
        self.session.on_eof(&mut cx);
    }

    /// Every reply queued so far.
    pub fn take(&mut self) -> Vec<u8> {
        self.out.take_all()
    }
}

/// Lines of `bytes`, each without its LF; panics unless `bytes` is empty or
/// ends in LF (replies are whole lines).
pub fn reply_lines(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let body = bytes
        .strip_suffix(b"\n")
        .unwrap_or_else(|| panic!("reply stream not ended by LF: {:?}", show(bytes)));
    body.split(|&b| b == b'\n').collect()
}

/// Bytes shown for an assertion message (lossy, cut to 200 bytes).
pub fn show(bytes: &[u8]) -> String {
    let cut = bytes.get(..200).unwrap_or(bytes);
    String::from_utf8_lossy(cut).into_owned()
}
