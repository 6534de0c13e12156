//! Test helpers: drive a session exactly as the loop does (unconsumed input
//! carried and offered again with the next read; nothing offered after a
//! close request), without a socket.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use super::{Cx, Output, Session, Shared};
use crate::config::Config;

/// One connection's worth of loop state around a session.
pub(crate) struct Harness<S> {
    pub session: S,
    pub shared: Shared,
    pub out: Output,
    pub peer: SocketAddr,
    pub now: SystemTime,
    carried: Vec<u8>,
    /// Deliveries to other connections (tne and cmd ask for none).
    effects: Vec<super::Effect>,
    /// Most bytes ever carried between reads.
    pub most_carried: usize,
    /// The session asked to close after its replies.
    pub closed: bool,
}

impl<S: Session> Harness<S> {
    /// A harness around `session`, shared state from `Config::default()`.
    pub fn new(session: S) -> Harness<S> {
        Harness {
            session,
            shared: Shared::new(&Config::default()),
            out: Output::new(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
            now: SystemTime::UNIX_EPOCH,
            carried: Vec::new(),
            effects: Vec::new(),
            most_carried: 0,
            closed: false,
        }
    }

    /// One read's worth of bytes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.closed {
            return;
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
        self.most_carried = self.most_carried.max(self.carried.len());
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

/// `stream` cut at `cuts` (indices into 0..=len, any order).
pub(crate) fn split_at<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&stream[start..p]);
        start = p;
    }
    chunks.push(&stream[start..]);
    chunks
}
