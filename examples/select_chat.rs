//! # select_chat — the select() chat server of the original assignment, in mio
//!
//! What it teaches: Beej's `selectserver.c` (one room; each line a client
//! sends goes to every other client) in a readiness loop, with the three
//! things the select() version leaves out:
//! 1. Lines split across reads: a read returns whatever bytes arrived. An
//!    incomplete line is carried to the next read (at most `MAX_LINE` bytes
//!    of it: an over-long line is cut).
//! 2. Several lines in one read: every complete line is handled.
//! 3. A slow reader must not stall the room (a blocking `send()` to a full
//!    socket, as in the select() version, stops everyone). What a socket
//!    does not take at once waits in that client's own queue; a client
//!    whose queue passes `MAX_QUEUE` is dropped.
//!
//! Run:  cargo run --example select_chat -- 9001   (or PORT=9001; 0 = any)
//! Try:  nc 127.0.0.1 9001   in three terminals, and type.
//!       yes | nc 127.0.0.1 9001   floods the room, while
//!       nc 127.0.0.1 9001 | sleep 1000   never reads: this example's
//!       stdout shows the sleeper dropped, and the room goes on.
//!
//! Questions learners ask (mio issues #1076, #1337, #1611):
//! - Must I read until WouldBlock? Yes: see `read_input`.
//! - Why only WRITABLE while bytes are left? See `writable.rs`.
//! - What if two lines arrive in one read? `read_input` splits them all.
#![deny(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);
/// Longest line, LF not counted.
const MAX_LINE: usize = 1024;
/// Most unsent bytes a client may have before it is dropped as too slow.
const MAX_QUEUE: usize = 64 * 1024;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

struct Client {
    stream: TcpStream,
    /// The start of a line whose LF has not arrived yet.
    carry: Vec<u8>,
    /// Bytes for this client not yet written.
    queue: Vec<u8>,
    wants_writable: bool,
    /// Why this client must go, once this wake-up's events are handled.
    doomed: Option<&'static str>,
}

fn listen_addr() -> SocketAddr {
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .and_then(|p| p.parse().ok())
        .unwrap_or(9001);
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn main() -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let mut listener = TcpListener::bind(listen_addr())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    let mut room: Slab<Client> = Slab::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut room);
                continue;
            }
            let key = event.token().0;
            let lines = match room.get_mut(key) {
                Some(client) if client.doomed.is_none() => read_input(client, &mut buf),
                _ => continue,
            };
            for line in lines {
                let msg = [format!("#{key}: ").as_bytes(), &line, b"\n"].concat();
                broadcast(&mut room, key, &msg);
            }
        }
        // Flush every queue once per wake-up, and close the doomed only now:
        // closing in the middle of the events could let a new client reuse
        // the slab key while an event for the old one is still in hand.
        // A goodbye may doom another slow client: repeat until none is left.
        loop {
            for (key, client) in room.iter_mut() {
                if client.doomed.is_none() && flush(client, &poll, key).is_err() {
                    client.doomed = Some("connection lost");
                }
            }
            let doomed: Vec<(usize, &str)> = room
                .iter()
                .filter_map(|(key, client)| client.doomed.map(|why| (key, why)))
                .collect();
            if doomed.is_empty() {
                break;
            }
            for (key, why) in doomed {
                room.remove(key);
                println!("* #{key} {why}");
                broadcast(&mut room, key, format!("* #{key} {why}\n").as_bytes());
            }
        }
    }
}

fn accept_all(listener: &TcpListener, poll: &Poll, room: &mut Slab<Client>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let entry = room.vacant_entry();
                let key = entry.key();
                if poll
                    .registry()
                    .register(&mut stream, Token(key), Interest::READABLE)
                    .is_err()
                {
                    continue;
                }
                entry.insert(Client {
                    stream,
                    carry: Vec::new(),
                    queue: Vec::new(),
                    wants_writable: false,
                    doomed: None,
                });
                broadcast(room, key, format!("* #{key} joined\n").as_bytes());
            }
            Err(e) if would_block(&e) => return,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return println!("accept: {e}"),
        }
    }
}

/// Reads until WouldBlock; returns every complete line, in order. A peer
/// that closed, or whose socket failed, is marked doomed.
fn read_input(client: &mut Client, buf: &mut [u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    loop {
        let n = match client.stream.read(buf) {
            Ok(n) if n > 0 => n,
            Err(e) if would_block(&e) => return lines,
            Err(e) if interrupted(&e) => continue,
            // 0 bytes: the peer closed. An error: it is gone anyway.
            end => {
                client.doomed = Some(if end.is_ok() {
                    "left"
                } else {
                    "connection lost"
                });
                return lines;
            }
        };
        // Several lines may sit in one read; the last may be incomplete.
        for &byte in &buf[..n] {
            if byte != b'\n' {
                // Past MAX_LINE the line is cut: its rest is dropped.
                if client.carry.len() < MAX_LINE {
                    client.carry.push(byte);
                }
                continue;
            }
            let mut line = std::mem::take(&mut client.carry);
            if line.last() == Some(&b'\r') {
                line.pop(); // nc -C and telnet end lines in CR LF
            }
            lines.push(line);
        }
    }
}

/// Sends `msg` to every client but `from`: straight into the socket when
/// nothing waits before it, else (or for what the socket did not take) into
/// the client's queue. A client whose queue would pass `MAX_QUEUE` is
/// doomed instead: the others never wait for it.
fn broadcast(room: &mut Slab<Client>, from: usize, msg: &[u8]) {
    for (key, client) in room.iter_mut() {
        if key == from || client.doomed.is_some() {
            continue;
        }
        let mut rest = msg;
        if client.queue.is_empty() {
            match client.stream.write(msg) {
                Ok(n) => rest = &msg[n..],
                Err(e) if would_block(&e) || interrupted(&e) => {}
                Err(_) => client.doomed = Some("connection lost"),
            }
        }
        if client.queue.len() + rest.len() > MAX_QUEUE {
            client.doomed = Some("too slow, dropped");
            client.queue = Vec::new();
        } else if client.doomed.is_none() {
            client.queue.extend_from_slice(rest);
        }
    }
}

/// Writes until the queue is empty or the socket is full, keeps the rest,
/// and asks for WRITABLE while bytes are left, and only then.
fn flush(client: &mut Client, poll: &Poll, key: usize) -> io::Result<()> {
    while !client.queue.is_empty() {
        match client.stream.write(&client.queue) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => drop(client.queue.drain(..n)),
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let wants_writable = !client.queue.is_empty();
    if wants_writable != client.wants_writable {
        let interest = if wants_writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.registry()
            .reregister(&mut client.stream, Token(key), interest)?;
        client.wants_writable = wants_writable;
    }
    Ok(())
}
