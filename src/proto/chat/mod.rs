//! # chat — a line-based chat room with broadcast
//!
//! *The onepoll chat protocol, version 1. Default TCP port 6000.*
//!
//! ## 1. Overview
//!
//! Every client connected to the port is in one room. What a client types
//! (a line of UTF-8 text) is relayed to every other client; lines starting
//! with `/` are commands. The server greets each client with a nick of its
//! own, tells the room who joins, leaves and renames, and never tells one
//! client another's address.
//!
//! ## 2. Framing
//!
//! Both directions are lines of UTF-8 text ended by LF (0x0A). From the
//! client, one CR (0x0D) immediately before the LF is dropped, so `telnet`
//! and `nc -C` work. The server sends LF only.
//!
//! - A line longer than `--max-line` bytes (default 8192; CR and LF not
//!   counted) is answered `ERR line too long` once, and its rest up to the
//!   next LF is discarded without being stored.
//! - A line with a control character other than TAB, or with invalid
//!   UTF-8, is answered `ERR invalid text` and not relayed. This applies to
//!   commands too: a `/msg` text or a `/quit` reason with one is refused
//!   (and the client stays). For chat, control characters are the bytes
//!   0x00–0x1F and 0x7F, the C1 controls U+0080–U+009F (NEL, CSI), U+2028
//!   and U+2029 (line and paragraph separators) and the bidirectional
//!   controls U+061C, U+200E, U+200F, U+202A–U+202E and U+2066–U+2069: each
//!   lets a sender make a line look like another line, or like another
//!   sender's, on some terminal ([`text`]).
//! - An empty line is ignored.
//!
//! ## 3. Nicks
//!
//! A nick is 1 to 32 bytes, each one of `A-Z a-z 0-9 _ - .`. Nicks are
//! unique ignoring (ASCII) case: `Bob` and `bob` cannot both be in the
//! room, but a member may change the case of its own nick. On connect a
//! client is named `guest<N>`, N a decimal number that is never given twice
//! while the server runs (a number whose nick someone already took is
//! skipped).
//!
//! ## 4. Client to server
//!
//! ```text
//! client-line = "/nick" SP nick                 ; rename
//!             / "/who" [SP *char]               ; list the room
//!             / "/msg" SP nick SP 1*char        ; private message
//!             / "/quit" [SP *char]              ; leave, with a reason
//!             / "/help" [SP *char]              ; list the commands
//!             / "//" *char                      ; a message whose text is "/" *char
//!             / text                            ; a message to the room
//! text        = 1*char                          ; not starting with "/"
//! nick        = 1*32( ALPHA / DIGIT / "_" / "-" / "." )
//! char        = TAB / any Unicode scalar value that is not a control character
//! ```
//!
//! Command names are lowercase and matched exactly; an argument follows
//! exactly one SP. Any other line starting with `/` (`/NICK`, `/me`, `/`
//! alone) is answered `ERR unknown command`.
//!
//! | line | reply to the sender | to the others |
//! |------|---------------------|---------------|
//! | `/nick NAME` | `OK nick NAME` | `NICK OLD NAME` (nothing if NAME is exactly the current nick) |
//! | `/who` | `WHO n1 n2 …`: every nick, the sender's too, sorted ignoring case | |
//! | `/msg NICK TEXT` | `OK` (NICK matched ignoring case; may be the sender) | NICK alone: `PRIV FROM TEXT` |
//! | `/quit [REASON]` | `BYE`, then the server closes | `LEAVE NICK REASON`, or `LEAVE NICK` |
//! | `/help` | `OK commands: /nick /who /msg /quit /help` | |
//! | `//TEXT` | | `MSG NICK /TEXT` |
//! | `TEXT` | nothing | `MSG NICK TEXT` |
//!
//! Errors, each one line `ERR <reason>`, the connection staying open:
//! `ERR invalid nick` (NAME breaks the rules of section 3), `ERR nick in use`
//! (another member holds NAME ignoring case), `ERR no such nick`,
//! `ERR empty message` (`/msg NICK` without text; this reason is onepoll's
//! addition to the contract's table), `ERR unknown command`,
//! `ERR invalid text`, `ERR line too long`. Checks run in this order:
//! framing, text, command, then the command's own checks (a `/nick` name's
//! rules before its uniqueness; a `/msg` receiver before its text).
//!
//! ## 5. Server to client
//!
//! ```text
//! server-line = "WELCOME" SP nick               ; first line, the client's own nick
//!             / "JOIN" SP nick                  ; a client connected
//!             / "LEAVE" SP nick [SP reason]     ; a client went
//!             / "NICK" SP old-nick SP nick      ; a client renamed itself
//!             / "MSG" SP nick SP text           ; a message to the room
//!             / "PRIV" SP nick SP 1*char        ; a private message to you
//!             / "WHO" *(SP nick)                ; reply to /who
//!             / "OK" [SP "nick" SP nick]        ; reply to /msg, /nick
//!             / "OK commands: /nick /who /msg /quit /help"
//!             / "BYE" [SP reason]               ; the server closes next
//!             / "ERR" SP reason
//! ```
//!
//! The reasons the server gives itself, in `LEAVE` and `BYE`:
//!
//! | event | to the client that goes | to the others |
//! |-------|-------------------------|---------------|
//! | `/quit R` | `BYE` | `LEAVE NICK R` (`LEAVE NICK` without R) |
//! | the connection drops (EOF, reset) | — | `LEAVE NICK connection lost` |
//! | `--idle-timeout` passes | `BYE idle timeout` | `LEAVE NICK idle timeout` |
//! | slow consumer (section 7) | `BYE sendq exceeded` (if it can still be sent) | `LEAVE NICK sendq exceeded` |
//! | server shutdown | `BYE server shutting down` | nothing: everyone is told `BYE` |
//!
//! A departure is announced exactly once, whatever happens after it.
//!
//! ## 6. Ordering
//!
//! - `WELCOME` is the first line a client receives; every other member
//!   receives `JOIN` for it before any line the newcomer sends.
//! - Each client receives lines in the order the server accepted them:
//!   if the server reads A's line before B's, every client that gets both
//!   gets A's first. A client's own replies are in the order of its lines.
//! - A message reaches the members present when the server reads it: a
//!   client that joins later does not get it; one that left does not.
//!
//! ## 7. Slow consumers and limits
//!
//! The server keeps each client's unsent output. A client whose unsent
//! output passes `--max-sendq` bytes (default 1 MiB) is a slow consumer: it
//! is disconnected at once, and the others get `LEAVE NICK sendq exceeded`.
//! The limit bounds memory, so each queued line counts its bytes plus its
//! slot in the queue (tens of bytes): a queue of short lines passes it with
//! fewer bytes than a queue of long ones.
//! No client ever waits for another: a message is queued for every receiver
//! when it is read, and the sender is never held up. A message is stored
//! once, however many receivers queue it. A client's replies to its own
//! lines count too: one that sends `/who` after `/who` and never reads is
//! dropped the same way, at the line whose reply passes the limit (the lines
//! after it are not acted on).
//!
//! Limits: a line, `--max-line` bytes; a nick, 32 bytes; a client's unsent
//! output, `--max-sendq` bytes; the room, `--max-conns` connections (the
//! next one is told `ERR server full` and closed).
//!
//! ## 8. Example
//!
//! Two clients; `A:` and `B:` are what they type, `a:` and `b:` what they
//! receive.
//!
//! ```text
//! (A connects)           a: WELCOME guest1
//! (B connects)           b: WELCOME guest2
//!                        a: JOIN guest2
//! A: /nick ann           a: OK nick ann
//!                        b: NICK guest1 ann
//! B: hello               a: MSG guest2 hello
//! B: /nick ANN           b: ERR nick in use
//! B: /nick bo b          b: ERR invalid nick
//! A: /who                a: WHO ann guest2
//! A: /msg GUEST2 psst    b: PRIV ann psst
//!                        a: OK
//! A: //who               b: MSG ann /who
//! B: /quit bye all       b: BYE
//!                        a: LEAVE guest2 bye all
//! (server closes B)
//! ```
//!
//! ## 9. Implementation
//!
//! [`ChatSession`] is one client's state machine; the room ([`Room`]) is in
//! [`Shared`], lent on each call. Lines are split by the framer shared with
//! tne and cmd ([`crate::proto::framing`]), so section 2 holds for all three. Replies to the sender go to `cx.out`;
//! lines for others are built once into an `Rc<[u8]>` and handed to the
//! loop as effects ([`Cx::broadcast`], [`Cx::send_to`]), which the loop
//! routes ([`crate::proto::effects`]). The loop reports drops, idle timeouts
//! and slow consumers through [`Session::on_close`] with a
//! [`CloseReason`], and the session announces them.

mod command;
mod room;
pub mod text;

#[cfg(test)]
mod tests;

use std::rc::Rc;

pub use command::{ChatError, Command};
pub use room::{Nick, Room, MAX_NICK};
pub use text::{check_text, is_control};

use super::framing::{Frame, LineFramer};
use super::output::SEGMENT_COST;
use super::{CloseReason, Cx, Declaration, Declared, Flow, LoopSlots, Pacing, Session, Transport};
use crate::config::Protocol;

/// What the others are told when a member's connection drops, however it
/// dropped (end of stream, reset, error): `LEAVE NICK connection lost`.
pub const CONNECTION_LOST: &str = "connection lost";

/// The reply to `/help`.
pub const HELP_REPLY: &[u8] = b"OK commands: /nick /who /msg /quit /help\n";

/// State shared by every chat connection.
#[derive(Debug)]
pub struct Shared {
    /// Who is in the room.
    pub room: Room,
    /// `--max-line`: longest line, CR and LF not counted.
    pub max_line: usize,
    /// `--max-sendq`: unsent output that makes a slow consumer. The loop
    /// enforces it (see [`crate::proto::effects`]); the session stops
    /// acting on a client's lines once its own replies pass it (section 7).
    pub max_sendq: usize,
    /// Where a line for others is assembled before it is copied, once, into
    /// its shared allocation (kept to avoid a second allocation).
    scratch: Vec<u8>,
}

impl Shared {
    /// An empty room whose lines are at most `max_line` bytes and whose
    /// clients may have up to `max_sendq` bytes of unsent output.
    pub fn new(max_line: usize, max_sendq: usize) -> Shared {
        Shared {
            room: Room::new(),
            max_line,
            max_sendq,
            scratch: Vec::new(),
        }
    }

    /// Connection `id` is gone: if the room still holds it (its session
    /// failed before leaving), removes it and returns the `LEAVE NICK
    /// connection lost` line for the others, so that no nick outlives its
    /// connection. `None` when it had left, or nobody is left to tell.
    pub fn forget(&mut self, id: u64) -> Option<Rc<[u8]>> {
        let nick = self.room.leave(id)?;
        log::warn!("chat: {nick} (#{id}) was still in the room after its close; removed");
        if self.room.is_empty() {
            return None;
        }
        Some(self.line(&[b"LEAVE ", nick.as_bytes(), b" ", CONNECTION_LOST.as_bytes()]))
    }

    /// `parts` concatenated, then LF, as one shared allocation.
    fn line(&mut self, parts: &[&[u8]]) -> Rc<[u8]> {
        self.scratch.clear();
        for part in parts {
            self.scratch.extend_from_slice(part);
        }
        self.scratch.push(b'\n');
        Rc::from(&self.scratch[..])
    }
}

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not yet welcomed.
    Fresh,
    /// In the room.
    Joined,
    /// Gone from the room (quit, dropped, shutting down); reads no more.
    Left,
}

/// [`ChatSession`]'s line allowance when there is no limit.
const NO_LINE_LIMIT: u32 = u32::MAX;

/// The chat state machine of one connection.
#[derive(Debug)]
pub struct ChatSession {
    state: State,
    lines: LineFramer,
    /// Flood control: complete lines `on_input` may still consume, or
    /// [`NO_LINE_LIMIT`] for no limit (a sentinel, not an `Option`: 4
    /// bytes, not 8, in every chat session). The loop sets it from the
    /// client's token bucket (`server::pacing`); lines past it are left
    /// unconsumed, so the loop carries them and reads the client no faster.
    lines_left: u32,
    /// The loop's bookkeeping for a broadcast, paced connection, kept here
    /// rather than in every connection so that only chat connections pay
    /// for it (an idle connection's size counts).
    slots: LoopSlots,
}

impl ChatSession {
    /// A session not yet in the room (it joins in `on_open`), for lines of
    /// at most `max_line` bytes.
    pub fn new(max_line: usize) -> ChatSession {
        ChatSession {
            state: State::Fresh,
            lines: LineFramer::new(max_line),
            lines_left: NO_LINE_LIMIT,
            slots: LoopSlots::default(),
        }
    }

    /// Lets `on_input` consume at most `lines` more complete lines (`None`:
    /// no limit), for flood control. A line too long counts as one.
    pub fn set_line_allowance(&mut self, lines: Option<u32>) {
        self.lines_left = lines.map_or(NO_LINE_LIMIT, |n| n.min(NO_LINE_LIMIT - 1));
    }

    /// Lines `on_input` may still consume (`None`: no limit).
    pub fn line_allowance(&self) -> Option<u32> {
        (self.lines_left != NO_LINE_LIMIT).then_some(self.lines_left)
    }

    /// One line consumed: one less allowed.
    #[inline(always)]
    fn take_line(&mut self) {
        if self.lines_left != NO_LINE_LIMIT {
            self.lines_left = self.lines_left.saturating_sub(1);
        }
    }

    /// Joins the room: `WELCOME` to this client, `JOIN` to the others.
    fn join(&mut self, cx: &mut Cx<'_>) {
        let nick = cx.shared.chat.room.join(cx.conn_id);
        self.state = State::Joined;
        put_line(cx, &[b"WELCOME ", nick.as_bytes()]);
        if cx.shared.chat.room.len() > 1 {
            let msg = cx.shared.chat.line(&[b"JOIN ", nick.as_bytes()]);
            cx.broadcast(msg, cx.conn_id);
        }
        log::debug!("chat {} joined as {nick}", cx.peer);
    }

    /// Leaves the room; the others get `LEAVE NICK[ REASON]` unless
    /// `reason` is `Silent`. Does nothing if already gone.
    fn leave(&mut self, cx: &mut Cx<'_>, reason: Leave<'_>) {
        if self.state != State::Joined {
            self.state = State::Left;
            return;
        }
        self.state = State::Left;
        let Some(nick) = cx.shared.chat.room.leave(cx.conn_id) else {
            return;
        };
        log::debug!("chat {} ({nick}) left: {reason:?}", cx.peer);
        if cx.shared.chat.room.is_empty() {
            return;
        }
        let msg = match reason {
            Leave::Silent => return,
            Leave::Plain => cx.shared.chat.line(&[b"LEAVE ", nick.as_bytes()]),
            Leave::Because(why) => {
                cx.shared
                    .chat
                    .line(&[b"LEAVE ", nick.as_bytes(), b" ", why.as_bytes()])
            }
        };
        cx.broadcast(msg, cx.conn_id);
    }

    /// Acts on one complete line (CR and LF removed).
    fn on_line(&mut self, line: &[u8], cx: &mut Cx<'_>) {
        if line.is_empty() {
            return;
        }
        cx.shared.counts.request(Protocol::Chat);
        let result = check_text(line)
            .and_then(Command::parse)
            .and_then(|command| self.run(command, cx));
        if let Err(error) = result {
            put_line(cx, &[b"ERR ", error.reason().as_bytes()]);
        }
    }

    /// Runs one command for the member `cx.conn_id`.
    fn run(&mut self, command: Command<'_>, cx: &mut Cx<'_>) -> Result<(), ChatError> {
        let me = cx.conn_id;
        let nick = cx.shared.chat.room.nick(me).ok_or(ChatError::NotInRoom)?;
        match command {
            Command::Say(text) => {
                if cx.shared.chat.room.len() > 1 {
                    let msg =
                        cx.shared
                            .chat
                            .line(&[b"MSG ", nick.as_bytes(), b" ", text.as_bytes()]);
                    cx.broadcast(msg, me);
                }
            }
            Command::Nick(name) => {
                let new = Nick::parse(name.as_bytes())?;
                let old = cx.shared.chat.room.rename(me, new)?;
                put_line(cx, &[b"OK nick ", new.as_bytes()]);
                if old != new && cx.shared.chat.room.len() > 1 {
                    let msg =
                        cx.shared
                            .chat
                            .line(&[b"NICK ", old.as_bytes(), b" ", new.as_bytes()]);
                    cx.broadcast(msg, me);
                }
                log::debug!("chat {} renamed {old} to {new}", cx.peer);
            }
            Command::Who => {
                cx.out.put(b"WHO");
                for member in cx.shared.chat.room.nicks_sorted() {
                    cx.out.put(b" ");
                    cx.out.put(member.as_bytes());
                }
                cx.out.put(b"\n");
            }
            Command::Msg { to, text } => {
                let to = cx
                    .shared
                    .chat
                    .room
                    .find(to.as_bytes())
                    .ok_or(ChatError::NoSuchNick)?;
                if text.is_empty() {
                    return Err(ChatError::EmptyMessage);
                }
                let msg = cx
                    .shared
                    .chat
                    .line(&[b"PRIV ", nick.as_bytes(), b" ", text.as_bytes()]);
                cx.send_to(to, msg);
                cx.out.put(b"OK\n");
            }
            Command::Quit(reason) => {
                cx.out.put(b"BYE\n");
                let reason = reason.map_or(Leave::Plain, Leave::Because);
                self.leave(cx, reason);
                cx.close_after_flush();
            }
            Command::Help => cx.out.put(HELP_REPLY),
        }
        Ok(())
    }
}

/// How a departure is announced to the others.
#[derive(Clone, Copy, Debug)]
enum Leave<'a> {
    /// `LEAVE NICK`.
    Plain,
    /// `LEAVE NICK REASON`.
    Because(&'a str),
    /// Nothing (the server is shutting down: everyone gets `BYE`).
    Silent,
}

/// Queues `parts` then LF on this connection's output.
fn put_line(cx: &mut Cx<'_>, parts: &[&[u8]]) {
    for part in parts {
        cx.out.put(part);
    }
    cx.out.put(b"\n");
}

/// The most a chat connection is read per wake-up: one read's lines,
/// relayed, stay within half of `--max-sendq` for each receiver. The worst
/// case is a 2-byte line ("a" LF) becoming `MSG <32-byte nick> a` LF, 39
/// bytes, plus its slot in the receiver's queue.
pub fn read_allowance(max_sendq: usize) -> usize {
    (max_sendq / (39 + SEGMENT_COST)).max(512)
}

impl Declared for ChatSession {
    const DECLARATION: Declaration = Declaration {
        name: "chat",
        default_port: 6000,
        served_by_default: true,
        transport: Transport::Tcp,
        server_full: b"ERR server full\n",
        too_many_from_address: b"ERR too many connections from your address\n",
        flow: Flow::Broadcast { read_allowance },
        pacing: Pacing::Lines,
    };

    fn open(shared: &mut super::Shared) -> ChatSession {
        ChatSession::new(shared.chat.max_line)
    }
}

impl Session for ChatSession {
    fn display_name(&self, shared: &super::Shared, conn_id: u64) -> Option<String> {
        let nick = shared.chat.room.nick(conn_id);
        Some(nick.as_ref().map_or("", |n| n.as_str()).to_string())
    }

    fn line_allowance(&self) -> Option<u32> {
        ChatSession::line_allowance(self)
    }

    fn set_line_allowance(&mut self, lines: Option<u32>) {
        ChatSession::set_line_allowance(self, lines);
    }

    fn loop_slots(&mut self) -> Option<&mut LoopSlots> {
        Some(&mut self.slots)
    }

    fn on_open(&mut self, cx: &mut Cx<'_>) {
        if self.state == State::Fresh {
            self.join(cx);
        }
    }

    /// Consumes every complete line (up to the flood-control allowance, see
    /// [`ChatSession::set_line_allowance`]); leaves at most `--max-line` + 1
    /// bytes of an incomplete one. After `/quit`, consumes and ignores the
    /// rest.
    fn on_input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        if self.state == State::Fresh {
            self.join(cx);
        }
        let mut at = 0;
        while self.state == State::Joined {
            if self.lines_left == 0 {
                // Flood control: the rest waits, unconsumed.
                return at;
            }
            let (frame, used) = self.lines.decode(input.get(at..).unwrap_or_default());
            at += used;
            match frame {
                Frame::Line(line) => {
                    self.take_line();
                    self.on_line(line, cx)
                }
                Frame::TooLong => {
                    self.take_line();
                    put_line(cx, &[b"ERR ", ChatError::LineTooLong.reason().as_bytes()])
                }
                Frame::NeedMore => return at,
            }
            if cx.out.footprint() > cx.shared.chat.max_sendq {
                // A client that asks (`/who`, say) and never reads: a slow
                // consumer of its own replies. The loop finds the same count
                // when this call returns, before it writes anything, and
                // ends the connection (`on_close` with `SendqExceeded`).
                // Checked per line, so one read cannot pile up more than
                // one reply past the limit; the rest of it is not acted on.
                return input.len();
            }
        }
        input.len()
    }

    /// The client shut its write side: it can say no more, so it leaves
    /// (`LEAVE NICK connection lost`); replies already queued still go out.
    fn on_eof(&mut self, cx: &mut Cx<'_>) {
        self.leave(cx, Leave::Because(CONNECTION_LOST));
    }

    /// Announces the departure if it was not already (see the table of
    /// section 5), and says `BYE REASON` when the server ends the connection.
    fn on_close(&mut self, cx: &mut Cx<'_>, reason: CloseReason) {
        if self.state != State::Joined {
            self.state = State::Left;
            return;
        }
        match reason {
            CloseReason::Shutdown => self.on_shutdown(cx),
            CloseReason::IdleTimeout
            | CloseReason::SendqExceeded
            | CloseReason::MemoryLimit
            | CloseReason::Limit(_) => {
                put_line(cx, &[b"BYE ", reason.as_str().as_bytes()]);
                self.leave(cx, Leave::Because(reason.as_str()));
            }
            CloseReason::Finished
            | CloseReason::PeerClosed
            | CloseReason::Reset
            | CloseReason::Error => {
                self.leave(cx, Leave::Because(CONNECTION_LOST));
            }
        }
    }

    /// `BYE server shutting down`, and a silent exit from the room: every
    /// member is told `BYE`, so `LEAVE` lines would only cost N² deliveries.
    fn on_shutdown(&mut self, cx: &mut Cx<'_>) {
        if self.state == State::Left {
            return;
        }
        put_line(cx, &[b"BYE ", CloseReason::Shutdown.as_str().as_bytes()]);
        self.leave(cx, Leave::Silent);
        cx.close_after_flush();
    }
}
