//! # echo — the smallest correct mio server
//!
//! What it teaches: the four rules every readiness-based server keeps, and
//! nothing else.
//! 1. Accept until `WouldBlock`: one readable event on the listener may stand
//!    for many waiting connections.
//! 2. Read until `WouldBlock` (or until you choose to stop, and then remember
//!    to come back): mio is edge-triggered, so a byte left unread in the
//!    socket raises no new event.
//! 3. Bound the buffer: a client that sends without reading must not grow
//!    the server. Past `MAX_PENDING` bytes we stop reading it; TCP then
//!    pushes back on the sender.
//! 4. Keep partial writes: `write` may take fewer bytes than offered. The
//!    rest stays queued, and WRITABLE interest is asked for only while bytes
//!    are left (see `writable.rs` for what happens otherwise).
//!
//! Run:  cargo run --example echo -- 9000      (or PORT=9000; 0 = any port)
//! Try:  nc 127.0.0.1 9000                      type lines, they come back
//!       head -c 50000000 /dev/zero | nc -N 127.0.0.1 9000 | wc -c
//!                                              50000000: nothing lost,
//!                                              though most writes were short
//!       printf 'half-closed\n' | nc -N 127.0.0.1 9000
//!                                              the reply still arrives
//!
//! Questions learners ask (mio issues #1076, #1337, #1611), answered here:
//! - Must I read until WouldBlock? With mio, yes — or keep a note that the
//!   socket may still hold bytes, because no new event will say so (#1076).
//!   On Linux a short read (fewer bytes than the buffer had room for) also
//!   means the socket is empty (#1611); onepoll relies on that, this example
//!   keeps the portable rule.
//! - Why not register WRITABLE always? See `writable.rs`.
//! - What if two messages arrive in one read? Echo has no messages; see
//!   `select_chat.rs`, which splits lines.
#![deny(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token. Connections use their slab key, which never gets
/// this large.
const LISTENER: Token = Token(usize::MAX);
/// Most bytes read but not yet echoed, per connection.
const MAX_PENDING: usize = 64 * 1024;

/// The operation would block: the socket has nothing more for us now.
fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A signal interrupted the call: just try again.
fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// One client.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet written back (at most `MAX_PENDING`).
    pending: Vec<u8>,
    /// The peer shut its write side (a 0-byte read).
    read_closed: bool,
    /// Whether WRITABLE is in the registered interest.
    wants_writable: bool,
}

/// Where the port comes from: the first argument, else `PORT`, else 9000.
fn listen_addr() -> SocketAddr {
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9000);
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn main() -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut listener = TcpListener::bind(listen_addr())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    let mut conns: Slab<Conn> = Slab::new();
    let mut scratch = vec![0u8; MAX_PENDING];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns);
                continue;
            }
            let key = event.token().0;
            // An event is a hint, not a promise: we just try, and a spurious
            // event costs one WouldBlock. Closed flags are hints too: the
            // read returning 0 or an error is what we trust.
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let done = match pump(conn, &mut scratch) {
                Ok(done) => done,
                Err(e) => {
                    println!("#{key}: {e}");
                    true
                }
            };
            if done || set_interest(conn, &poll, key).is_err() {
                // Dropping the stream closes it (and deregisters it).
                conns.remove(key);
            }
        }
    }
}

/// Rule 1: accept until WouldBlock.
fn accept_all(listener: &TcpListener, poll: &Poll, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _peer)) => {
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        pending: Vec::new(),
                        read_closed: false,
                        wants_writable: false,
                    });
                }
            }
            Err(e) if would_block(&e) => return,
            Err(e) if interrupted(&e) => continue,
            // Out of descriptors (EMFILE) or the like: give up for this
            // event. The real server handles it properly (docs/EXAMPLES.md).
            Err(e) => {
                println!("accept: {e}");
                return;
            }
        }
    }
}

/// Rules 2, 3 and 4: write what is pending, read while there is room, until
/// the socket says WouldBlock either way. Returns true when the connection
/// is finished (the peer half-closed and everything was echoed).
fn pump(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<bool> {
    loop {
        // Write first: it makes room for the next read.
        let mut write_blocked = false;
        while !conn.pending.is_empty() && !write_blocked {
            match conn.stream.write(&conn.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                // A partial write: keep the rest, in order.
                Ok(n) => drop(conn.pending.drain(..n)),
                Err(e) if would_block(&e) => write_blocked = true,
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let room = MAX_PENDING - conn.pending.len();
        if conn.read_closed || room == 0 {
            // Buffer full: stop reading without WouldBlock. No READABLE
            // edge will remind us, but the WRITABLE event that comes when
            // the peer reads brings us back here, and we read on.
            return Ok(conn.read_closed && conn.pending.is_empty());
        }
        match conn.stream.read(&mut scratch[..room]) {
            // 0 bytes: the peer shut its write side. Echo what is left, then
            // close (a half-closed client still gets its replies).
            Ok(0) => conn.read_closed = true,
            Ok(n) => conn.pending.extend_from_slice(&scratch[..n]),
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// WRITABLE only while bytes are left; a reregister only when that changes.
fn set_interest(conn: &mut Conn, poll: &Poll, key: usize) -> io::Result<()> {
    let wants_writable = !conn.pending.is_empty();
    if wants_writable != conn.wants_writable {
        let interest = if wants_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut conn.stream, Token(key), interest)?;
        conn.wants_writable = wants_writable;
    }
    Ok(())
}
