//! Test helpers: drive a session exactly as the loop does (unconsumed input
//! carried and offered again with the next read; nothing offered after a
//! close request), without a socket.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use super::{Cx, Effect, Output, Session, Shared};
use crate::config::Config;

/// One connection's worth of loop state around a session.
pub(crate) struct Harness<S> {
    pub session: S,
    pub shared: Shared,
    pub out: Output,
    /// Deliveries the session asked for (chat only).
    pub effects: Vec<Effect>,
    pub peer: SocketAddr,
    pub now: SystemTime,
    carried: Vec<u8>,
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
            effects: Vec::new(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 40000)),
            now: SystemTime::UNIX_EPOCH,
            carried: Vec::new(),
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

/// Serves one TCP connection on 127.0.0.1 with the session `make` builds,
/// in a thread, the way the loop would (blocking, for client tests): read,
/// feed, write the replies, close after a close request or end of stream.
/// Returns the address to connect to.
pub(crate) fn serve_one_tcp<S: Session>(
    make: impl FnOnce() -> S + Send + 'static,
) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut h = Harness::new(make());
        h.peer = peer;
        h.now = SystemTime::now();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            if n == 0 {
                h.eof();
            } else {
                h.feed(&buf[..n]);
            }
            let replies = h.take();
            if stream.write_all(&replies).is_err() || n == 0 || h.closed {
                return;
            }
        }
    });
    addr
}

/// Answers one tne datagram on 127.0.0.1 in a thread; returns the address.
pub(crate) fn serve_one_udp() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 65_536];
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = Vec::new();
            let _cut = super::tne::answer_datagram(&buf[..n], false, 8192, &mut reply);
            let _ = socket.send_to(&reply, from);
        }
    });
    addr
}
