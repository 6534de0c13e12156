//! Target `chat`: a simulated room of several sessions, with deliveries
//! routed through the effects queue as the loop's contract says (route
//! after every call; a receiver over `--max-sendq` marked at the push and
//! closed with `SendqExceeded`).
//!
//! Input: `[max_line][sendq][clients][ops...]`; `sendq % 4` picks a
//! `--max-sendq` of unlimited, 64, 256 or 4096 bytes; `1 + clients % 4`
//! clients connect first. Each op is one byte, `op % 8`:
//! 0-3 a read from client `who` (next byte) of `len` (next byte) bytes,
//! 4 a new client (at most 8), 5 client `who`'s socket takes its output,
//! 6 end of stream from `who`, 7 the loop closes `who` for the reason
//! `next byte % 4` (finished, connection lost, idle timeout, sendq).
//! After the ops every client still in the room asks `/who`, then the
//! server shuts down.
//!
//! Invariants:
//! - every line a client receives is one of section 5's forms (nicks,
//!   text without control characters, the known reasons, `WHO` sorted and
//!   unique ignoring case), as UTF-8 and whole lines;
//! - `WELCOME` first, nothing after `BYE`;
//! - each client's view of the room stays consistent: no `JOIN` of a nick
//!   present, no `LEAVE`, `NICK` or message from a nick that left (so no
//!   departure announced twice), and `WHO` lists every nick the client
//!   was told is present and none it was told left;
//! - the room holds exactly the clients that have not left;
//! - at most `max_line + 1` bytes carried per client;
//! - with an unlimited sendq, every client receives the same bytes when
//!   each read is fed byte by byte, and when consecutive reads from one
//!   client are merged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::SystemTime;

use onepoll::config::Config;
use onepoll::proto::chat::{self, ChatSession};
use onepoll::proto::effects::{self, Deliver, Effect};
use onepoll::proto::{CloseReason, Cx, Output, Session, Shared};

use super::harness::show;
use super::input::{self, Input};

/// Most clients a run connects.
const MAX_CLIENTS: usize = 8;

/// One step of the script the fuzz input decodes to.
#[derive(Clone, Debug)]
enum Op<'a> {
    Send(usize, &'a [u8]),
    Connect,
    Read(usize),
    Eof(usize),
    Close(usize, CloseReason),
}

/// How reads are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    AsIs,
    ByteByByte,
    Merged,
}

struct Client {
    session: ChatSession,
    out: Output,
    carry: Vec<u8>,
    /// The session asked to close (after `/quit` or at shutdown).
    closing: bool,
    /// `on_close` was called.
    closed: bool,
    /// Marked by the router as a slow consumer.
    slow: bool,
    /// Still a member of the room, as far as the loop knows.
    in_room: bool,
    /// Every byte its socket took.
    received: Vec<u8>,
}

struct Sim {
    shared: Shared,
    clients: BTreeMap<u64, Client>,
    effects: Vec<Effect>,
    next_id: u64,
    max_sendq: usize,
}

struct Sink<'a> {
    clients: &'a mut BTreeMap<u64, Client>,
    max_sendq: usize,
    victims: Vec<u64>,
}

impl Deliver for Sink<'_> {
    fn deliver(&mut self, to: u64, msg: &Rc<[u8]>) {
        let Some(client) = self.clients.get_mut(&to) else {
            return;
        };
        if client.closed || client.slow {
            return;
        }
        client.out.put_shared(Rc::clone(msg));
        if client.out.len() > self.max_sendq {
            client.slow = true;
            self.victims.push(to);
        }
    }
}

impl Sim {
    fn new(max_line: usize, max_sendq: usize) -> Sim {
        let mut shared = Shared::new(&Config::default());
        shared.chat = chat::Shared::new(max_line, max_sendq);
        Sim {
            shared,
            clients: BTreeMap::new(),
            effects: Vec::new(),
            next_id: 1,
            max_sendq,
        }
    }

    /// Calls into client `id`'s session if it is open, then routes.
    fn call<R>(
        &mut self,
        id: u64,
        f: impl FnOnce(&mut ChatSession, &mut Cx<'_>) -> R,
    ) -> Option<R> {
        let client = self.clients.get_mut(&id).filter(|c| !c.closed)?;
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1000 + id as u16));
        let mut cx = Cx::new(
            &mut client.out,
            &mut self.shared,
            &mut self.effects,
            peer,
            id,
            SystemTime::UNIX_EPOCH,
        );
        let result = f(&mut client.session, &mut cx);
        if cx.close_requested() {
            client.closing = true;
            client.in_room = false;
        }
        self.route();
        Some(result)
    }

    fn route(&mut self) {
        loop {
            let mut sink = Sink {
                clients: &mut self.clients,
                max_sendq: self.max_sendq,
                victims: Vec::new(),
            };
            effects::route(&mut self.effects, &self.shared, &mut sink);
            let victims = sink.victims;
            if victims.is_empty() {
                return;
            }
            for id in victims {
                self.close(id, CloseReason::SendqExceeded);
            }
        }
    }

    fn connect(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(
            id,
            Client {
                session: ChatSession::new(self.shared.chat.max_line),
                out: Output::new(),
                carry: Vec::new(),
                closing: false,
                closed: false,
                slow: false,
                in_room: true,
                received: Vec::new(),
            },
        );
        self.call(id, |s, cx| s.on_open(cx));
    }

    /// One read of `bytes` from client `id`, with the loop's carry.
    fn send(&mut self, id: u64, bytes: &[u8]) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.closing || client.closed {
            return;
        }
        let mut input = std::mem::take(&mut client.carry);
        input.extend_from_slice(bytes);
        let Some(used) = self.call(id, |s, cx| s.on_input(&input, cx)) else {
            return;
        };
        assert!(used <= input.len(), "consumed more than offered");
        input.drain(..used);
        let max_line = self.shared.chat.max_line;
        if let Some(client) = self.clients.get_mut(&id) {
            if !client.closing && !client.closed {
                assert!(
                    input.len() <= max_line + 1,
                    "carried {} bytes, max_line {max_line}",
                    input.len()
                );
                client.carry = input;
            }
        }
    }

    fn close(&mut self, id: u64, reason: CloseReason) {
        if self.call(id, |s, cx| s.on_close(cx, reason)).is_some() {
            if let Some(client) = self.clients.get_mut(&id) {
                client.closed = true;
                client.in_room = false;
            }
        }
    }

    fn eof(&mut self, id: u64) {
        let open = self
            .clients
            .get(&id)
            .is_some_and(|c| !c.closing && !c.closed);
        if open {
            self.call(id, |s, cx| s.on_eof(cx));
            if let Some(client) = self.clients.get_mut(&id) {
                client.in_room = false;
            }
            self.close(id, CloseReason::PeerClosed);
        }
    }

    fn read(&mut self, id: u64) {
        if let Some(client) = self.clients.get_mut(&id) {
            let bytes = client.out.take_all();
            client.received.extend(bytes);
        }
    }

    /// The loop closes every client that asked to, after its replies.
    fn close_finished(&mut self) {
        let finished: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.closing && !c.closed)
            .map(|(&id, _)| id)
            .collect();
        for id in finished {
            self.close(id, CloseReason::Finished);
        }
    }

    fn shutdown(&mut self) {
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        for &id in &ids {
            self.call(id, |s, cx| s.on_shutdown(cx));
        }
        for &id in &ids {
            self.close(id, CloseReason::Shutdown);
        }
    }

    /// The room holds exactly the clients that have not left.
    fn check_room(&self) {
        let room = &self.shared.chat.room;
        let members = self.clients.values().filter(|c| c.in_room).count();
        assert_eq!(room.len(), members, "room size");
        for (&id, client) in &self.clients {
            assert_eq!(
                room.nick(id).is_some(),
                client.in_room,
                "membership of {id}"
            );
        }
    }

    fn id_of(&self, who: usize) -> Option<u64> {
        self.clients
            .keys()
            .nth(who % self.clients.len().max(1))
            .copied()
    }
}

/// Decodes the ops of a fuzz input.
fn decode(mut input: Input<'_>) -> (usize, usize, usize, Vec<Op<'_>>) {
    let max_line = input::max_line(input.byte());
    let max_sendq = [usize::MAX, 64, 256, 4096][usize::from(input.byte() % 4)];
    let clients = 1 + usize::from(input.byte() % 4);
    let mut ops = Vec::new();
    let mut rest = input.rest();
    while let Some((&op, after)) = rest.split_first() {
        let mut input = Input::new(after);
        ops.push(match op % 8 {
            0..=3 => {
                let who = usize::from(input.byte());
                let len = usize::from(input.byte());
                Op::Send(who, input.take(len))
            }
            4 => Op::Connect,
            5 => Op::Read(usize::from(input.byte())),
            6 => Op::Eof(usize::from(input.byte())),
            _ => {
                let who = usize::from(input.byte());
                let reason = [
                    CloseReason::Finished,
                    CloseReason::PeerClosed,
                    CloseReason::IdleTimeout,
                    CloseReason::SendqExceeded,
                ][usize::from(input.byte() % 4)];
                Op::Close(who, reason)
            }
        });
        rest = input.rest();
    }
    (max_line, max_sendq, clients, ops)
}

/// Runs the script; returns every client's received bytes.
fn run(
    max_line: usize,
    max_sendq: usize,
    clients: usize,
    ops: &[Op<'_>],
    mode: Mode,
) -> Vec<Vec<u8>> {
    let mut sim = Sim::new(max_line, max_sendq);
    for _ in 0..clients {
        sim.connect();
    }
    let mut i = 0;
    while let Some(op) = ops.get(i) {
        i += 1;
        match *op {
            Op::Send(who, bytes) => {
                let Some(id) = sim.id_of(who) else { continue };
                match mode {
                    Mode::AsIs => sim.send(id, bytes),
                    Mode::ByteByByte => {
                        for b in bytes.chunks(1) {
                            sim.send(id, b);
                        }
                    }
                    Mode::Merged => {
                        let mut merged = bytes.to_vec();
                        while let Some(Op::Send(next, more)) = ops.get(i) {
                            if sim.id_of(*next) != Some(id) {
                                break;
                            }
                            merged.extend_from_slice(more);
                            i += 1;
                        }
                        sim.send(id, &merged);
                    }
                }
            }
            Op::Connect => {
                if sim.clients.len() < MAX_CLIENTS {
                    sim.connect();
                }
            }
            Op::Read(who) => {
                if let Some(id) = sim.id_of(who) {
                    sim.read(id);
                }
            }
            Op::Eof(who) => {
                if let Some(id) = sim.id_of(who) {
                    sim.eof(id);
                }
            }
            Op::Close(who, reason) => {
                if let Some(id) = sim.id_of(who) {
                    sim.close(id, reason);
                }
            }
        }
        sim.close_finished();
        sim.check_room();
    }
    let ids: Vec<u64> = sim.clients.keys().copied().collect();
    for &id in &ids {
        if sim.clients.get(&id).is_some_and(|c| c.in_room) {
            sim.send(id, b"/who\n");
            sim.close_finished();
            sim.check_room();
        }
    }
    sim.shutdown();
    sim.check_room();
    assert!(sim.shared.chat.room.is_empty(), "shutdown empties the room");
    for &id in &ids {
        sim.read(id);
    }
    sim.clients.into_values().map(|c| c.received).collect()
}

/// A line from the server, parsed by section 5's grammar.
#[derive(Debug)]
enum Line<'a> {
    Welcome(&'a str),
    Join(&'a str),
    Leave(&'a str),
    Nick(&'a str, &'a str),
    Said(&'a str),
    Who(Vec<&'a str>),
    OkNick(&'a str),
    Bye,
    Other,
}

/// A nick: 1 to 32 of `A-Z a-z 0-9 _ - .`.
pub fn is_nick(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Text: 1 or more characters, TAB or not a control character. For chat
/// SPEC.md 1.3 counts as control characters the bytes 0x00-0x1F and 0x7F,
/// the C1 controls U+0080-U+009F (NEL among them), U+2028, U+2029 and the
/// bidi controls U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069.
pub fn is_text(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            let c = u32::from(c);
            c == 0x09
                || !(c < 0x20
                    || (0x7f..=0x9f).contains(&c)
                    || matches!(c, 0x061c | 0x200e | 0x200f | 0x2028 | 0x2029)
                    || (0x202a..=0x202e).contains(&c)
                    || (0x2066..=0x2069).contains(&c))
        })
}

const ERR_REASONS: [&str; 7] = [
    "nick in use",
    "invalid nick",
    "no such nick",
    "empty message",
    "unknown command",
    "invalid text",
    "line too long",
];

const BYE_REASONS: [&str; 3] = ["idle timeout", "sendq exceeded", "server shutting down"];

/// `line` (without LF) parsed as a server line, or why it is not one.
fn parse_line(line: &str, max_line: usize) -> Result<Line<'_>, String> {
    let (word, rest) = match line.split_once(' ') {
        Some((w, r)) => (w, Some(r)),
        None => (line, None),
    };
    let nick = |s: &'_ str| {
        if is_nick(s) {
            Ok(())
        } else {
            Err(format!("bad nick {s:?}"))
        }
    };
    let text = |s: &'_ str| {
        if is_text(s) {
            Ok(())
        } else {
            Err(format!("bad text {s:?}"))
        }
    };
    let parsed = match (word, rest) {
        ("WELCOME", Some(n)) => nick(n).map(|()| Line::Welcome(n))?,
        ("JOIN", Some(n)) => nick(n).map(|()| Line::Join(n))?,
        ("LEAVE", Some(r)) => {
            let (n, reason) = r
                .split_once(' ')
                .map_or((r, None), |(n, why)| (n, Some(why)));
            nick(n)?;
            if let Some(why) = reason {
                text(why)?;
            }
            Line::Leave(n)
        }
        ("NICK", Some(r)) => {
            let (old, new) = r.split_once(' ').ok_or("NICK without a new nick")?;
            nick(old)?;
            nick(new)?;
            Line::Nick(old, new)
        }
        ("MSG" | "PRIV", Some(r)) => {
            let (n, t) = r.split_once(' ').ok_or("message without text")?;
            nick(n)?;
            text(t)?;
            if t.len() > max_line {
                return Err(format!("text longer than a line can carry: {t:?}"));
            }
            Line::Said(n)
        }
        ("WHO", _) => {
            let nicks: Vec<&str> = rest.map_or(Vec::new(), |r| r.split(' ').collect());
            for n in &nicks {
                nick(n)?;
            }
            let folded: Vec<String> = nicks.iter().map(|n| n.to_ascii_lowercase()).collect();
            if !folded.windows(2).all(|w| w[0] < w[1]) {
                return Err("WHO not sorted and unique ignoring case".into());
            }
            Line::Who(nicks)
        }
        ("OK", None) => Line::Other,
        ("OK", Some("commands: /nick /who /msg /quit /help")) => Line::Other,
        ("OK", Some(r)) => {
            let n = r.strip_prefix("nick ").ok_or("unknown OK reply")?;
            nick(n)?;
            Line::OkNick(n)
        }
        ("BYE", None) => Line::Bye,
        ("BYE", Some(why)) if BYE_REASONS.contains(&why) => Line::Bye,
        ("ERR", Some(why)) if ERR_REASONS.contains(&why) => Line::Other,
        _ => return Err("not a server line".into()),
    };
    Ok(parsed)
}

/// What one client has been told about the room (nicks folded).
#[derive(Default)]
struct View {
    own: Option<String>,
    present: BTreeSet<String>,
    gone: BTreeSet<String>,
}

impl View {
    fn arrive(&mut self, nick: &str) {
        self.gone.remove(nick);
        self.present.insert(nick.to_string());
    }

    fn depart(&mut self, nick: &str) {
        self.present.remove(nick);
        self.gone.insert(nick.to_string());
    }

    fn not_gone(&self, nick: &str, what: &str) {
        assert!(!self.gone.contains(nick), "{what} from {nick}, who left");
    }

    fn apply(&mut self, line: &Line<'_>) {
        let fold = |n: &str| n.to_ascii_lowercase();
        match line {
            Line::Welcome(n) => {
                let n = fold(n);
                self.arrive(&n);
                self.own = Some(n);
            }
            Line::Join(n) => {
                let n = fold(n);
                assert!(!self.present.contains(&n), "JOIN {n}, already present");
                self.arrive(&n);
            }
            Line::Leave(n) => {
                let n = fold(n);
                assert_ne!(Some(&n), self.own.as_ref(), "told of its own LEAVE");
                self.not_gone(&n, "LEAVE (announced twice)");
                self.depart(&n);
            }
            Line::Nick(old, new) => {
                let (old, new) = (fold(old), fold(new));
                self.not_gone(&old, "NICK");
                assert!(
                    old == new || !self.present.contains(&new),
                    "NICK to {new}, held by another"
                );
                self.depart(&old);
                self.arrive(&new);
            }
            Line::Said(n) => self.not_gone(&fold(n), "a message"),
            Line::OkNick(n) => {
                let n = fold(n);
                let own = self.own.clone().unwrap_or_default();
                assert!(
                    n == own || !self.present.contains(&n),
                    "renamed to {n}, held by another"
                );
                self.depart(&own);
                self.arrive(&n);
                self.own = Some(n);
            }
            Line::Who(nicks) => {
                let listed: BTreeSet<String> = nicks.iter().map(|n| fold(n)).collect();
                for n in &listed {
                    self.not_gone(n, "WHO entry");
                }
                for n in &self.present {
                    assert!(listed.contains(n), "WHO misses {n}, never told it left");
                }
                for n in &listed {
                    self.gone.remove(n);
                }
                self.present = listed;
            }
            Line::Bye | Line::Other => {}
        }
    }
}

/// Checks what one client received, whole.
fn check_stream(received: &[u8], max_line: usize) {
    let text = std::str::from_utf8(received)
        .unwrap_or_else(|_| panic!("server sent invalid UTF-8: {:?}", show(received)));
    let body = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("not whole lines: {:?}", show(received)));
    let mut view = View::default();
    let mut said_bye = false;
    for (i, line) in body.split('\n').enumerate() {
        assert!(!said_bye, "a line after BYE: {line:?}");
        let parsed = parse_line(line, max_line)
            .unwrap_or_else(|why| panic!("malformed server line {line:?}: {why}"));
        assert_eq!(
            i == 0,
            matches!(parsed, Line::Welcome(_)),
            "WELCOME first and only first: {line:?}"
        );
        said_bye = matches!(parsed, Line::Bye);
        view.apply(&parsed);
    }
}

/// Checks one fuzz input (panics on a broken invariant).
pub fn check(data: &[u8]) {
    let (max_line, max_sendq, clients, ops) = decode(Input::new(data));
    let as_is = run(max_line, max_sendq, clients, &ops, Mode::AsIs);
    for received in &as_is {
        check_stream(received, max_line);
    }
    if max_sendq == usize::MAX {
        for mode in [Mode::ByteByByte, Mode::Merged] {
            let other = run(max_line, max_sendq, clients, &ops, mode);
            assert_eq!(other, as_is, "{mode:?} reads changed what clients received");
        }
    } else {
        for mode in [Mode::ByteByByte, Mode::Merged] {
            for received in run(max_line, max_sendq, clients, &ops, mode) {
                check_stream(&received, max_line);
            }
        }
    }
}
