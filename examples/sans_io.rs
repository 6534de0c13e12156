//! # sans_io — the crate's real transform core, driven by the simplest loop
//!
//! What it teaches: what the sans-IO split buys. `onepoll::proto::transform`
//! is the very state machine the server runs for every transform
//! connection. It never touches a socket or a clock: it is handed bytes
//! (`Session::on_input`) and appends replies to an `Output` queue. So:
//! 1. It can be tested without sockets: `check_without_sockets` below feeds
//!    it a request stream whole, then one byte at a time, and gets the same
//!    replies. The crate's unit tests do this for every split (proptest).
//! 2. Any loop can drive it. Here: blocking std sockets, one client at a
//!    time, no mio at all — about 20 lines in `serve`. The real server
//!    drives the same core from one mio loop for thousands of clients, and
//!    adds what such a loop needs (docs/EXAMPLES.md).
//!
//! The wire format (docs/PROTOCOLS.md, "transform"): a request is a 4-byte
//! big-endian header, ACTION in its top 5 bits (0x01 uppercase, 0x02
//! lowercase, 0x04 title-case, 0x08 reverse, 0x10 shuffle) and LENGTH in
//! the low 27, then LENGTH bytes; the reply is a 4-byte LENGTH, then data.
//!
//! Run:  cargo run --example sans_io -- 9003      (or PORT=9003; 0 = any)
//! Try:  printf '\x08\x00\x00\x05hello' | nc -N 127.0.0.1 9003 | xxd
//!       00000000: 0000 0005 4845 4c4c 4f      ....HELLO
//!       printf '\x40\x00\x00\x03abc\x08\x00\x00\x02hi' | nc -N 127.0.0.1 9003 | xxd
//!       two requests in one read: "cba" then "HI", in order
//!
//! Questions learners ask (mio issues #1076, #1337, #1611):
//! - What if two requests arrive in one read, or one arrives in pieces? The
//!   core does not care: `on_input` answers every complete request in the
//!   bytes and keeps the state of an incomplete one. The contract says it
//!   returns how many bytes it consumed; the driver carries the rest to the
//!   next call (transform always consumes everything, but the loop below
//!   keeps the general rule).
//! - Read until WouldBlock, WRITABLE spinning: questions for a readiness
//!   loop, which this blocking loop is not. See echo.rs and writable.rs.
#![deny(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, SystemTime};

use onepoll::config::Config;
use onepoll::proto::transform::{encode_header, TransformSession};
use onepoll::proto::{Cx, Output, Session, Shared};

/// One connection's sans-IO state: the core, its reply queue, and input the
/// core has not consumed.
struct Driver {
    session: TransformSession,
    out: Output,
    carry: Vec<u8>,
    peer: SocketAddr,
}

impl Driver {
    fn new(peer: SocketAddr) -> Driver {
        Driver {
            session: TransformSession::new(),
            out: Output::new(),
            carry: Vec::new(),
            peer,
        }
    }

    /// Hands `bytes` to the core; returns the replies it queued. `shared`
    /// is what all connections share (for transform: the `--max-buffer`
    /// budget of reverse and shuffle, and the shuffle's generator).
    fn feed(&mut self, shared: &mut Shared, bytes: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(bytes);
        // Deliveries to other connections (chat's broadcast): transform
        // makes none, so this driver has nowhere to route them.
        let mut effects = Vec::new();
        let mut cx = Cx::new(
            &mut self.out,
            shared,
            &mut effects,
            self.peer,
            1,
            SystemTime::now(),
        );
        let consumed = self.session.on_input(&self.carry, &mut cx);
        self.carry.drain(..consumed.min(self.carry.len()));
        self.out.take_all()
    }
}

/// Point 1: the core checked without a socket.
fn check_without_sockets(shared: &mut Shared) -> io::Result<()> {
    let mut stream = Vec::new();
    for (action, text) in [(0x01, &b"hello"[..]), (0x08, b"abc"), (0x03, b"x")] {
        stream.extend_from_slice(&encode_header(action, text.len() as u32));
        stream.extend_from_slice(text);
    }
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let whole = Driver::new(peer).feed(shared, &stream);
    let mut bytewise = Driver::new(peer);
    let mut pieces = Vec::new();
    for byte in &stream {
        pieces.extend(bytewise.feed(shared, &[*byte]));
    }
    let expected: &[u8] = b"\0\0\0\x05HELLO\0\0\0\x03cba\0\0\0\x05error";
    if whole != expected || pieces != expected {
        return Err(io::Error::other("the core's replies depend on the split"));
    }
    println!("core check: the same replies whole and byte by byte");
    Ok(())
}

/// Point 2: the simplest loop that can drive the core.
fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &mut Shared) -> io::Result<()> {
    let mut driver = Driver::new(peer);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()), // the client is done: so are we
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Whatever the split of the stream into reads, the same replies.
        let replies = driver.feed(shared, &buf[..n]);
        // Blocking: write_all waits for the client to read. A readiness loop
        // cannot wait, and must queue instead (writable.rs).
        stream.write_all(&replies)?;
    }
}

fn main() -> io::Result<()> {
    let mut shared = Shared::new(&Config::default());
    check_without_sockets(&mut shared)?;
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9003);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    println!("listening on {}", listener.local_addr()?);
    // One client at a time: the point is the core, not concurrency.
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, say: pause rather than spin.
                println!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        if let Err(e) = serve(stream, peer, &mut shared) {
            println!("{peer}: {e}");
        }
    }
    Ok(())
}
