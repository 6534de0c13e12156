//! `onepoll-client chat [--nick NAME]`: an interactive chat client.
//!
//! Lines typed on stdin go to the server; lines from the server are printed
//! as they come. One mio loop watches both stdin and the socket, so neither
//! direction waits for the other and no thread is needed:
//!
//! - stdin that epoll can watch (a terminal, a pipe) is registered as a
//!   `SourceFd` on descriptor 0, switched to nonblocking for the run (its
//!   flags are restored on exit: the descriptor is shared with the shell);
//! - stdin that epoll refuses (a regular file, `/dev/null`) never blocks
//!   anyway, so it is read directly between polls.
//!
//! End of stdin sends `/quit` (after a newline if the last line had none)
//! and waits, at most [`QUIT_WAIT`], for the server to say `BYE` and close.
//! The server closing the connection ends the run. Reading stdin pauses
//! while more than [`OUTBOX_LIMIT`] bytes wait to be sent, so a large paste
//! into a server that reads slowly does not grow memory.
//!
//! The protocol state — what goes out, which complete lines to print — is
//! [`Relay`], tested without sockets; [`run`] is the I/O around it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{ClientError, ClientOptions};
use crate::config::Protocol;
use crate::proto::chat::Nick;
use crate::sys;

/// The usage of the subcommand.
pub const USAGE: &str = "chat [--nick NAME]
  Interactive: lines typed go to the room, lines from the server are
  printed as they come (/help lists the commands). End of input (Ctrl-D)
  sends /quit. --nick NAME renames you as soon as you are in.";

/// How long to wait, after sending `/quit`, for the server to close.
pub const QUIT_WAIT: Duration = Duration::from_secs(5);

/// Unsent bytes past which stdin is not read until the socket takes some.
pub const OUTBOX_LIMIT: usize = 64 * 1024;

const SOCKET: Token = Token(0);
const STDIN: Token = Token(1);

/// Parses the subcommand's arguments: the nick to take, if any.
pub fn parse_args(args: &[String]) -> Result<Option<Nick>, ClientError> {
    let name = match args {
        [] => return Ok(None),
        [flag, name] if flag == "--nick" => name.as_str(),
        [one] if one.starts_with("--nick=") => &one["--nick=".len()..],
        _ => {
            return Err(ClientError::Usage(format!(
                "unexpected arguments {args:?}\nUsage: onepoll-client {USAGE}"
            )))
        }
    };
    Nick::parse(name.as_bytes()).map(Some).map_err(|_| {
        ClientError::Usage(format!("invalid nick '{name}': 1-32 of A-Z a-z 0-9 _ - ."))
    })
}

/// The client's protocol state, without I/O: bytes to send, and the server's
/// bytes cut into complete lines to print.
#[derive(Debug, Default)]
pub struct Relay {
    /// Bytes for the server, not yet written.
    pub outbox: Vec<u8>,
    /// The start of a server line whose LF has not arrived.
    partial: Vec<u8>,
    /// The last byte taken from stdin was not an LF.
    mid_line: bool,
    /// `/quit` is queued: stdin is done.
    pub quit_sent: bool,
}

impl Relay {
    /// A relay that asks for `nick` first, if given.
    pub fn new(nick: Option<Nick>) -> Relay {
        let mut relay = Relay::default();
        if let Some(nick) = nick {
            relay.outbox.extend_from_slice(b"/nick ");
            relay.outbox.extend_from_slice(nick.as_bytes());
            relay.outbox.push(b'\n');
        }
        relay
    }

    /// Bytes read from stdin: sent as they are (the server splits lines).
    pub fn from_stdin(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.outbox.extend_from_slice(bytes);
            self.mid_line = last != b'\n';
        }
    }

    /// End of stdin: ends an unfinished line, then says `/quit`.
    pub fn stdin_closed(&mut self) {
        if self.quit_sent {
            return;
        }
        if self.mid_line {
            self.outbox.push(b'\n');
            self.mid_line = false;
        }
        self.outbox.extend_from_slice(b"/quit\n");
        self.quit_sent = true;
    }

    /// Bytes from the server: writes every line completed by them to `out`.
    pub fn from_server(&mut self, bytes: &[u8], out: &mut impl Write) -> io::Result<()> {
        let Some(last_lf) = bytes.iter().rposition(|&b| b == b'\n') else {
            self.partial.extend_from_slice(bytes);
            return Ok(());
        };
        let (complete, rest) = bytes.split_at(last_lf + 1);
        if !self.partial.is_empty() {
            out.write_all(&self.partial)?;
            self.partial.clear();
        }
        out.write_all(complete)?;
        self.partial.extend_from_slice(rest);
        out.flush()
    }

    /// The server closed: prints what is left of an unfinished line.
    pub fn server_closed(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.partial.is_empty() {
            out.write_all(&self.partial)?;
            out.write_all(b"\n")?;
            self.partial.clear();
        }
        out.flush()
    }
}

/// Descriptor 0 switched to nonblocking for the run; its flag is put
/// back when this is dropped (the shell shares the open file).
struct NonblockingStdin<'a> {
    fd: BorrowedFd<'a>,
    was_nonblocking: bool,
}

impl<'a> NonblockingStdin<'a> {
    fn set(fd: BorrowedFd<'a>) -> io::Result<NonblockingStdin<'a>> {
        let was_nonblocking = sys::fd::set_nonblocking(fd, true)?;
        Ok(NonblockingStdin {
            fd,
            was_nonblocking,
        })
    }
}

impl Drop for NonblockingStdin<'_> {
    fn drop(&mut self) {
        let _ = sys::fd::set_nonblocking(self.fd, self.was_nonblocking);
    }
}

/// How stdin is read.
enum StdinMode<'a> {
    /// Registered with the poll (terminal, pipe): read on readiness, until
    /// `WouldBlock`.
    Polled(#[allow(dead_code)] NonblockingStdin<'a>),
    /// epoll refused it (regular file, `/dev/null`): reads never block, so
    /// read whenever there is room.
    Direct,
}

/// Runs the subcommand until the server closes the connection.
pub fn run(options: &ClientOptions, args: &[String]) -> Result<(), ClientError> {
    let nick = parse_args(args)?;
    let stream = super::connect(options, Protocol::Chat.default_port())?;
    if options.verbose {
        if let Ok(peer) = stream.peer_addr() {
            eprintln!("connected to {peer}; end of input (Ctrl-D) sends /quit");
        }
    }
    stream.set_nonblocking(true)?;
    let mut socket = mio::net::TcpStream::from_std(stream);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    chat_loop(
        &mut socket,
        io::stdin().as_fd(),
        Relay::new(nick),
        &mut out,
        options.timeout,
    )
}

/// The event loop over the socket and stdin (descriptor `stdin`). The
/// server's first line (its greeting) must come within `timeout`.
fn chat_loop(
    socket: &mut mio::net::TcpStream,
    stdin: BorrowedFd<'_>,
    mut relay: Relay,
    out: &mut impl Write,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(socket, SOCKET, Interest::READABLE | Interest::WRITABLE)?;
    let stdin_raw = stdin.as_raw_fd();
    let mode = match poll
        .registry()
        .register(&mut SourceFd(&stdin_raw), STDIN, Interest::READABLE)
    {
        Ok(()) => StdinMode::Polled(NonblockingStdin::set(stdin)?),
        Err(_) => StdinMode::Direct,
    };
    // Readiness is edge-triggered: remember that stdin may have more while
    // its reading is paused (outbox full), instead of waiting for an edge.
    let mut stdin_ready = true;
    let mut stdin_open = true;
    let mut quit_deadline = None;
    let mut server_gone = false;
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; 16 * 1024];
    // Until the server's first whole line: when it is due, and what came.
    let mut greeting_due = Some(Instant::now() + timeout);
    let mut before_greeting = Vec::new();
    loop {
        while stdin_open && stdin_ready && relay.outbox.len() < OUTBOX_LIMIT {
            match sys::fd::read(stdin, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    relay.stdin_closed();
                    quit_deadline = Some(Instant::now() + QUIT_WAIT);
                }
                Ok(n) => relay.from_stdin(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stdin_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            if matches!(mode, StdinMode::Direct) && !relay.outbox.is_empty() {
                break; // send what a file gave before reading more of it
            }
        }
        match write_out(socket, &mut relay.outbox) {
            Ok(()) => {}
            Err(e) if is_gone(&e) => {
                // The server closed first (`BYE idle timeout`, say): what
                // it sent before is still to be read and printed below.
                relay.outbox.clear();
                stdin_open = false;
                server_gone = true;
            }
            Err(e) => return Err(e.into()),
        }
        loop {
            match socket.read(&mut buf) {
                Ok(0) => {
                    relay.server_closed(out)?;
                    return Ok(());
                }
                Ok(n) => {
                    let got = buf.get(..n).unwrap_or_default();
                    if greeting_due.is_some() {
                        before_greeting.extend_from_slice(got);
                        if got.contains(&b'\n') {
                            greeting_due = None;
                        }
                    }
                    relay.from_server(got, out)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_gone(&e) && (relay.quit_sent || server_gone) => {
                    relay.server_closed(out)?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let direct_has_more =
            matches!(mode, StdinMode::Direct) && stdin_open && relay.outbox.len() < OUTBOX_LIMIT;
        let wait = if direct_has_more {
            Some(Duration::ZERO)
        } else {
            quit_deadline
                .into_iter()
                .chain(greeting_due)
                .min()
                .map(|at| at.saturating_duration_since(Instant::now()))
        };
        match poll.poll(&mut events, wait) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        if events.iter().any(|e| e.token() == STDIN) {
            stdin_ready = true;
        }
        if greeting_due.is_some_and(|at| Instant::now() >= at) {
            return Err(ClientError::timeout_after(&before_greeting));
        }
        if let Some(at) = quit_deadline {
            if Instant::now() >= at {
                relay.server_closed(out)?;
                return Err(ClientError::BadReply(format!(
                    "the server did not close the connection within {QUIT_WAIT:?} of /quit"
                )));
            }
        }
    }
}

/// Whether `e` says the server has closed the connection.
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Writes as much of `outbox` as the socket takes now.
fn write_out(socket: &mut mio::net::TcpStream, outbox: &mut Vec<u8>) -> io::Result<()> {
    let mut sent = 0;
    while sent < outbox.len() {
        match socket.write(outbox.get(sent..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                outbox.drain(..sent);
                return Err(e);
            }
        }
    }
    outbox.drain(..sent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nick_argument_is_checked_against_the_nick_rules() {
        assert_eq!(parse_args(&[]).unwrap(), None);
        let nick = parse_args(&args(&["--nick", "ann.b"])).unwrap().unwrap();
        assert_eq!(nick.as_str(), "ann.b");
        let nick = parse_args(&args(&["--nick=bo"])).unwrap().unwrap();
        assert_eq!(nick.as_str(), "bo");
        for bad in [&["--nick", "a b"][..], &["--nick"], &["--nick", ""], &["x"]] {
            assert!(
                matches!(parse_args(&args(bad)), Err(ClientError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_nick_is_asked_for_before_anything_typed() {
        let mut relay = Relay::new(Nick::parse(b"ann").ok());
        relay.from_stdin(b"hi\n");
        assert_eq!(relay.outbox, b"/nick ann\nhi\n");
    }

    #[test]
    fn end_of_input_finishes_the_line_and_quits_once() {
        let mut relay = Relay::new(None);
        relay.from_stdin(b"a\nunfinished");
        relay.stdin_closed();
        relay.stdin_closed();
        assert_eq!(relay.outbox, b"a\nunfinished\n/quit\n");
        let mut relay = Relay::new(None);
        relay.from_stdin(b"a\n");
        relay.from_stdin(b"");
        relay.stdin_closed();
        assert_eq!(relay.outbox, b"a\n/quit\n");
        assert!(relay.quit_sent);
    }

    #[test]
    fn server_lines_are_printed_whole_whatever_the_split() {
        let wire = b"WELCOME guest1\nJOIN guest2\nMSG guest2 hi there\n";
        for cut in 0..wire.len() {
            let mut relay = Relay::new(None);
            let mut out = Vec::new();
            relay.from_server(&wire[..cut], &mut out).unwrap();
            assert!(out.ends_with(b"\n") || out.is_empty(), "only whole lines");
            relay.from_server(&wire[cut..], &mut out).unwrap();
            assert_eq!(out, wire);
        }
        let mut relay = Relay::new(None);
        let mut out = Vec::new();
        relay.from_server(b"BYE\nno newline", &mut out).unwrap();
        relay.server_closed(&mut out).unwrap();
        assert_eq!(out, b"BYE\nno newline\n");
    }
}
