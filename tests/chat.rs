//! chat over real sockets: the `onepoll` binary on 127.0.0.1 and several
//! clients. Every wait is bounded by the streams' read timeouts; no test
//! depends on how fast anything runs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::{Server, PATIENCE};

/// One chat client: a line reader and a writer over one socket.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects and reads the `WELCOME` line; returns the client and its nick.
    fn join(server: &Server) -> (Client, String) {
        let stream = server.connect("chat");
        let writer = stream.try_clone().expect("clone");
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
        };
        let welcome = client.line();
        let nick = welcome
            .strip_prefix("WELCOME ")
            .unwrap_or_else(|| panic!("expected WELCOME, got {welcome:?}"))
            .to_string();
        (client, nick)
    }

    /// Connects without reading anything.
    fn raw(server: &Server) -> TcpStream {
        server.connect("chat")
    }

    fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// The next line, without its LF ("" at EOF is an error).
    fn line(&mut self) -> String {
        self.try_line()
            .expect("the server closed the connection early")
    }

    /// The next line, or `None` at EOF.
    fn try_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read_line");
        if n == 0 {
            return None;
        }
        assert!(line.ends_with('\n'), "a line without LF: {line:?}");
        line.pop();
        Some(line)
    }

    /// Reads lines until `want`, returning those before it.
    fn until(&mut self, want: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let line = self.line();
            if line == want {
                return before;
            }
            before.push(line);
        }
    }

    /// Reads to EOF; returns every line left.
    fn rest(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.try_line()).collect()
    }
}

/// `n` clients, in nick order `guest1..`, each having read every `JOIN`.
fn room(server: &Server, n: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..n {
        let (client, nick) = Client::join(server);
        for earlier in &mut clients {
            assert_eq!(earlier.line(), format!("JOIN {nick}"));
        }
        assert_eq!(nick, format!("guest{}", i + 1));
        clients.push(client);
    }
    clients
}

#[test]
fn a_line_is_relayed_to_every_other_client_and_not_to_the_sender() {
    let server = Server::start(&["chat=0"]);
    let mut c = room(&server, 3);
    c[0].send("hello, room \u{2603}\r\n");
    assert_eq!(c[1].line(), "MSG guest1 hello, room \u{2603}");
    assert_eq!(c[2].line(), "MSG guest1 hello, room \u{2603}");
    // Replies come in order: had the sender got its own line, it would
    // come before the reply to /who.
    c[0].send("/who\n");
    assert_eq!(c[0].line(), "WHO guest1 guest2 guest3");
    // The address is the server's to log, never sent to the others (the
    // lines above are exact).
    server.wait_for_log("open chat #1 from 127.0.0.1:");
}

#[test]
fn two_hundred_receivers_get_every_line_in_order() {
    const RECEIVERS: usize = 200;
    const LINES: usize = 300;
    let server = Server::start(&["chat=0", "--chat-rate", "0"]);
    let mut receivers: Vec<Client> = (0..RECEIVERS).map(|_| Client::join(&server).0).collect();
    let (mut sender, nick) = Client::join(&server);
    for i in 0..LINES {
        sender.send(&format!("line {i} of {LINES}\n"));
    }
    for (r, receiver) in receivers.iter_mut().enumerate() {
        // JOINs of the receivers after this one, then the sender's JOIN.
        let joins = receiver.until(&format!("JOIN {nick}"));
        assert_eq!(joins.len(), RECEIVERS - 1 - r, "receiver {r}");
        for i in 0..LINES {
            assert_eq!(
                receiver.line(),
                format!("MSG {nick} line {i} of {LINES}"),
                "receiver {r}"
            );
        }
    }
    sender.send("/quit\n");
    assert_eq!(sender.line(), "BYE");
    for receiver in &mut receivers {
        assert_eq!(receiver.line(), format!("LEAVE {nick}"));
    }
}

#[test]
fn quit_and_abrupt_disconnects_are_announced_exactly_once() {
    let server = Server::start(&["chat=0"]);
    let mut c = room(&server, 4);
    c[1].send("/quit gone fishing\n");
    assert_eq!(c[1].line(), "BYE");
    assert_eq!(c[1].try_line(), None, "closed after BYE");
    assert_eq!(c[0].line(), "LEAVE guest2 gone fishing");
    // guest3 half-closes: it can say nothing more, so it has left.
    c[2].writer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c[0].line(), "LEAVE guest3 connection lost");
    assert_eq!(c[2].rest(), ["LEAVE guest2 gone fishing"]);
    // guest4 vanishes with unread input: its close is a reset.
    let gone = c.remove(3);
    drop(gone);
    assert_eq!(c[0].line(), "LEAVE guest4 connection lost");
    c[0].send("/who\n");
    assert_eq!(c[0].line(), "WHO guest1", "nothing announced twice");
    // The slot is not haunted: the numbers go on, the nicks are free.
    let (mut late, nick) = Client::join(&server);
    assert_eq!(nick, "guest5");
    assert_eq!(c[0].line(), "JOIN guest5");
    late.send("/nick guest2\n/quit\n");
    assert_eq!(late.rest(), ["OK nick guest2", "BYE"]);
    assert_eq!(c[0].line(), "NICK guest5 guest2");
    assert_eq!(c[0].line(), "LEAVE guest2");
}

#[test]
fn nick_rules_hold_end_to_end() {
    let server = Server::start(&["chat=0"]);
    let mut c = room(&server, 3);
    c[0].send("/nick Ann.B-c_9\n");
    assert_eq!(c[0].line(), "OK nick Ann.B-c_9");
    assert_eq!(c[1].line(), "NICK guest1 Ann.B-c_9");
    assert_eq!(c[2].line(), "NICK guest1 Ann.B-c_9");
    let max = "x".repeat(32);
    let over = "x".repeat(33);
    c[1].send(&format!(
        "/nick ann.b-C_9\n/nick a b\n/nick \u{e9}\n/nick\n/nick {over}\n/nick {max}\n"
    ));
    for want in [
        "ERR nick in use",
        "ERR invalid nick",
        "ERR invalid nick",
        "ERR invalid nick",
        "ERR invalid nick",
    ] {
        assert_eq!(c[1].line(), want);
    }
    assert_eq!(c[1].line(), format!("OK nick {max}"));
    assert_eq!(c[0].line(), format!("NICK guest2 {max}"));
    c[0].send("/nick ANN.b-c_9\n/who\n");
    assert_eq!(
        c[0].line(),
        "OK nick ANN.b-c_9",
        "one's own case may change"
    );
    assert_eq!(c[0].line(), format!("WHO ANN.b-c_9 guest3 {max}"));
    c[2].send("/msg ann.B-C_9 psst\n/msg nobody x\n//nick not a command\n");
    assert_eq!(
        c[2].until("OK"),
        [
            format!("NICK guest2 {max}"),
            "NICK Ann.B-c_9 ANN.b-c_9".into()
        ]
    );
    assert_eq!(c[2].line(), "ERR no such nick");
    assert_eq!(c[0].line(), "PRIV guest3 psst");
    assert_eq!(c[0].line(), "MSG guest3 /nick not a command");
    assert_eq!(
        c[1].until("MSG guest3 /nick not a command"),
        ["NICK Ann.B-c_9 ANN.b-c_9"]
    );
}

/// A tiny deterministic generator (xorshift), so a failing split can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn a_line_forged_with_nel_or_bidi_controls_is_refused_and_not_relayed() {
    // Issue 16: clients that split lines on NEL showed the second half as
    // a forged server line.
    let server = Server::start(&["chat=0"]);
    let mut c = room(&server, 2);
    c[0].send("Admin. hello\u{85}MSG admin please send me your password\n");
    assert_eq!(c[0].line(), "ERR invalid text");
    for forged in [
        "/msg guest2 hi\u{2028}PRIV admin x\n",
        "look \u{202e}txt.exe\n",
        "\u{2066}isolate\u{2069}\n",
        "csi \u{9b}31m\n",
    ] {
        c[0].send(forged);
        assert_eq!(c[0].line(), "ERR invalid text", "{forged:?}");
    }
    // Nothing was relayed: the next line the receiver gets is this one.
    c[0].send("plain\n");
    assert_eq!(c[1].line(), "MSG guest1 plain");
}

#[test]
fn a_quit_whose_reason_forges_a_leave_is_refused_and_the_client_stays() {
    let server = Server::start(&["chat=0"]);
    let mut c = room(&server, 2);
    c[0].send("/quit bye\u{85}LEAVE x\n");
    assert_eq!(c[0].line(), "ERR invalid text");
    // Still in the room and served.
    c[0].send("/who\n");
    assert_eq!(c[0].line(), "WHO guest1 guest2");
    c[0].send("/quit bye\n");
    assert_eq!(c[0].line(), "BYE");
    assert_eq!(c[1].line(), "LEAVE guest1 bye", "no LEAVE before this one");
}

#[test]
fn any_split_of_the_input_gives_the_same_lines() {
    let script: &[u8] = "hello\r\n\u{2603} snow \u{1f600}\n\n/nick bob\n/who\n\
        bell\x07\n/msg guest2 hi\n//slash\n/nope\n"
        .as_bytes();
    let mut input = script.to_vec();
    input.extend_from_slice(&[b'y'; 100]);
    input.extend_from_slice(b"\nbad \xff utf8\nlast\n");
    let sender_wants = [
        "OK nick bob",
        "WHO bob guest2",
        "ERR invalid text",
        "OK",
        "ERR unknown command",
        "ERR line too long",
        "ERR invalid text",
    ];
    let receiver_wants = [
        "MSG guest1 hello",
        "MSG guest1 \u{2603} snow \u{1f600}",
        "NICK guest1 bob",
        "PRIV bob hi",
        "MSG bob /slash",
        "MSG bob last",
    ];
    for seed in 1..=8u64 {
        let server = Server::start(&["chat=0", "--chat-rate", "0", "--max-line", "40"]);
        let mut c = room(&server, 2);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        c[0].writer.set_nodelay(true).unwrap();
        let mut at = 0;
        while at < input.len() {
            let n = 1 + rng.below(7);
            let end = (at + n).min(input.len());
            c[0].send_bytes(&input[at..end]);
            at = end;
        }
        c[0].send("/quit\n");
        let mut want: Vec<String> = sender_wants.iter().map(|s| s.to_string()).collect();
        want.push("BYE".into());
        assert_eq!(c[0].rest(), want, "seed {seed}");
        let mut want: Vec<String> = receiver_wants.iter().map(|s| s.to_string()).collect();
        want.push("LEAVE bob".into());
        assert_eq!(
            c[1].until("LEAVE bob"),
            &want[..want.len() - 1],
            "seed {seed}"
        );
        c[1].send("/quit\n");
        assert_eq!(c[1].rest(), ["BYE"]);
    }
}

/// Sends `batch` lines of `size` bytes numbered from `*next`, then `/who`,
/// and returns every line the sender got up to and including the `WHO`
/// reply (the round trip paces the sender).
fn send_batch(sender: &mut Client, next: &mut usize, batch: usize, size: usize) -> Vec<String> {
    let mut wire = Vec::with_capacity(batch * (size + 8) + 5);
    for _ in 0..batch {
        let head = format!("{:08} ", *next);
        wire.extend_from_slice(head.as_bytes());
        wire.resize(wire.len() + size - head.len(), b'.');
        wire.push(b'\n');
        *next += 1;
    }
    wire.extend_from_slice(b"/who\n");
    sender.send_bytes(&wire);
    let mut got = Vec::new();
    loop {
        let line = sender.line();
        let done = line.starts_with("WHO ");
        got.push(line);
        if done {
            return got;
        }
    }
}

/// A reader thread: reads `MSG <from> <n> ...` lines in order until `MSG
/// <from> end`, checking that no number is missing; reports the other lines.
fn spawn_reader(mut client: Client, from: String) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut expect = 0usize;
        let mut other = Vec::new();
        let prefix = format!("MSG {from} ");
        loop {
            let line = client.line();
            let Some(text) = line.strip_prefix(&prefix) else {
                other.push(line);
                continue;
            };
            if text == "end" {
                return other;
            }
            let n: usize = text[..8].parse().expect("numbered line");
            assert_eq!(n, expect, "a line lost or out of order");
            expect += 1;
        }
    })
}

#[test]
fn a_receiver_that_never_reads_is_dropped_and_nobody_else_waits() {
    let server = Server::start(&["chat=0", "--chat-rate", "0", "--max-sendq", "65536"]);
    let mut c = room(&server, 6);
    let mut sender = c.remove(0);
    let sleeper = c.remove(0); // guest2: never reads
    let readers: Vec<_> = c
        .into_iter()
        .map(|r| spawn_reader(r, "guest1".into()))
        .collect();
    let mut next = 0;
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        seen.extend(send_batch(&mut sender, &mut next, 64, 1000));
        if seen.iter().any(|l| l.starts_with("LEAVE guest2")) {
            break;
        }
    }
    assert!(
        seen.contains(&"LEAVE guest2 sendq exceeded".to_string()),
        "never dropped after {next} lines"
    );
    // The sender kept its pace: every /who was answered, the last without
    // guest2.
    assert_eq!(
        seen.last().unwrap(),
        "WHO guest1 guest3 guest4 guest5 guest6"
    );
    for _ in 0..4 {
        send_batch(&mut sender, &mut next, 64, 1000);
    }
    sender.send("end\n");
    for reader in readers {
        let other = reader.join().expect("reader");
        assert_eq!(other, ["LEAVE guest2 sendq exceeded"], "{next} lines");
    }
    // The sleeper's connection was closed, its queue dropped: it can read
    // to the end, and it has less than was sent.
    let mut sleeper = sleeper;
    let mut got = Vec::new();
    sleeper
        .reader
        .read_to_end(&mut got)
        .expect("closed by the server");
    assert!(
        got.len() < next * 1000,
        "{} bytes of {next} lines",
        got.len()
    );
    server.wait_for_log("passed --max-sendq 65536; disconnecting");
}

#[test]
fn a_burst_from_one_sender_does_not_drop_receivers_that_read() {
    const LINES: usize = 100_000;
    let server = Server::start(&["chat=0", "--chat-rate", "0"]);
    let mut c = room(&server, 11);
    let sender = c.remove(0);
    let readers: Vec<_> = c
        .into_iter()
        .map(|r| spawn_reader(r, "guest1".into()))
        .collect();
    // 8 MB pasted at once, not paced: the server reads it at the pace it
    // flushes the room, so readers are not dropped for the sender's burst.
    let mut wire = Vec::with_capacity(LINES * 81 + 4);
    for i in 0..LINES {
        let head = format!("{i:08} ");
        wire.extend_from_slice(head.as_bytes());
        wire.resize(wire.len() + 80 - head.len(), b'.');
        wire.push(b'\n');
    }
    wire.extend_from_slice(b"end\n");
    let mut writer = sender.writer;
    let pusher = thread::spawn(move || writer.write_all(&wire).expect("burst"));
    for reader in readers {
        assert_eq!(reader.join().expect("reader"), Vec::<String>::new());
    }
    pusher.join().unwrap();
}

/// A reader thread for a room with `senders` senders (`guest1..`), each
/// sending numbered lines and then `end`: checks that every sender's lines
/// come once each, in order, and all of them before its `end`; returns
/// the other lines.
fn spawn_room_reader(
    mut client: Client,
    senders: usize,
    lines: usize,
) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut next = vec![0; senders];
        let mut ended = 0;
        let mut other = Vec::new();
        while ended < senders {
            let line = client.line();
            let parsed = line.strip_prefix("MSG guest").and_then(|rest| {
                let (nick, text) = rest.split_once(' ')?;
                Some((nick.parse::<usize>().ok()?.checked_sub(1)?, text))
            });
            match parsed {
                Some((s, "end")) if s < senders => {
                    assert_eq!(next[s], lines, "guest{} ended early", s + 1);
                    ended += 1;
                }
                Some((s, text)) if s < senders => {
                    assert_eq!(text, format!("{:08}", next[s]), "guest{}", s + 1);
                    next[s] += 1;
                }
                _ => other.push(line),
            }
        }
        other
    })
}

#[test]
fn lines_that_arrive_while_a_large_room_is_flushed_all_arrive_in_order() {
    // More receivers than one slice of the loop's flush: the loop polls
    // between slices and reads the senders whose lines arrived meanwhile.
    // Each sender writes its lines one by one, so many land while the room
    // is being flushed, its `end` line among them; a poll that lost such an
    // edge would leave the line unread and the readers waiting.
    const SENDERS: usize = 3;
    const RECEIVERS: usize = 300;
    const LINES: usize = 1000;
    let server = Server::start(&["chat=0", "--chat-rate", "0"]);
    let mut c = room(&server, SENDERS + RECEIVERS);
    let senders: Vec<Client> = c.drain(..SENDERS).collect();
    let readers: Vec<_> = c
        .into_iter()
        .map(|r| spawn_room_reader(r, SENDERS, LINES))
        .collect();
    let pushers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            thread::spawn(move || {
                let mut writer = sender.writer;
                writer.set_nodelay(true).expect("nodelay");
                for i in 0..LINES {
                    writer
                        .write_all(format!("{i:08}\n").as_bytes())
                        .expect("line");
                }
                writer.write_all(b"end\n").expect("end");
                // Kept open until the readers are done: a sender's LEAVE
                // is not part of what they expect.
                (writer, sender.reader)
            })
        })
        .collect();
    for (r, reader) in readers.into_iter().enumerate() {
        assert_eq!(
            reader.join().expect("reader"),
            Vec::<String>::new(),
            "receiver {r}"
        );
    }
    for pusher in pushers {
        drop(pusher.join().expect("pusher"));
    }
}

#[test]
fn a_chat_sender_is_read_once_per_wake_up_however_its_input_arrives() {
    // A chat sender's read allowance is per wake-up, not per event: its
    // input arrives a chunk at a time, so it is reported again while the
    // room (more than one flush slice) is being written, and it may be
    // both reported and left with unread input in the same wake-up. The
    // loop's smallest read is 512 bytes, here 256 lines "a", relayed as one
    // message of 256 x 13 bytes to each receiver: `--max-sendq 6144` holds
    // one such read, and not two before a receiver's flush. Every
    // receiver's socket can hold all that is sent, so a drop can only come
    // from the server reading a sender twice between two flushes.
    const RECEIVERS: usize = 100;
    const CHUNKS: usize = 24;
    const LINES_PER_CHUNK: usize = 256;
    let server = Server::start(&["chat=0", "--chat-rate", "0", "--max-sendq", "6144"]);
    let mut c = room(&server, 1 + RECEIVERS);
    let sender = c.remove(0);
    let readers: Vec<_> = c
        .into_iter()
        .map(|mut client| {
            thread::spawn(move || {
                let mut lines = 0;
                loop {
                    match client.line().as_str() {
                        "MSG guest1 a" => lines += 1,
                        "MSG guest1 end" => return lines,
                        other => panic!("unexpected {other:?} after {lines} lines"),
                    }
                }
            })
        })
        .collect();
    let mut writer = sender.writer;
    writer.set_nodelay(true).expect("nodelay");
    let chunk = b"a\n".repeat(LINES_PER_CHUNK);
    for _ in 0..CHUNKS {
        writer.write_all(&chunk).expect("chunk");
        thread::sleep(std::time::Duration::from_micros(100));
    }
    writer.write_all(b"end\n").expect("end");
    for (r, reader) in readers.into_iter().enumerate() {
        assert_eq!(
            reader.join().expect("reader"),
            CHUNKS * LINES_PER_CHUNK,
            "receiver {r}"
        );
    }
    drop((writer, sender.reader));
}

#[test]
fn server_memory_stays_bounded_with_receivers_that_never_read() {
    const SLEEPERS: usize = 8;
    let server = Server::start(&["chat=0", "--chat-rate", "0", "--max-sendq", "1048576"]);
    let mut c = room(&server, SLEEPERS + 2);
    let mut sender = c.remove(0);
    let reader = spawn_reader(c.remove(0), "guest1".into());
    let sleepers = c; // guest3.. never read
    let mut next = 0;
    send_batch(&mut sender, &mut next, 16, 1000);
    let before = server.rss_kib();
    let mut seen = Vec::new();
    // 64 MB through the room: without the limit, each sleeper would hold
    // what its socket buffers cannot, tens of MB each.
    while next < 64_000 {
        seen.extend(send_batch(&mut sender, &mut next, 500, 1000));
    }
    let after = server.rss_kib();
    sender.send("end\n");
    let other = reader.join().expect("reader");
    let dropped = other
        .iter()
        .filter(|l| l.ends_with(" sendq exceeded"))
        .count();
    assert_eq!(dropped, SLEEPERS, "{other:?}");
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} KiB -> {after} KiB after {next} lines");
    // Each sleeper costs at most --max-sendq plus one batch of lines before
    // it is found over the limit and dropped.
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB ({before} -> {after})"
    );
    drop(sleepers);
}

#[test]
fn a_client_that_asks_and_never_reads_is_dropped() {
    let server = Server::start(&["chat=0", "--chat-rate", "0", "--max-sendq", "65536"]);
    let mut c = room(&server, 2);
    // 2,000,000 /who requests (36 MB of replies) it never reads.
    let wire = b"/who\n".repeat(2_000_000);
    let mut asker = c.remove(0);
    let writer = asker.writer.try_clone().unwrap();
    let pusher = thread::spawn(move || {
        let mut writer = writer;
        // The server stops reading it once it is dropped: ignore the error.
        let _ = writer.write_all(&wire);
    });
    assert_eq!(c[0].line(), "LEAVE guest1 sendq exceeded");
    pusher.join().unwrap();
    // Its connection is gone (closed, or reset as its input was unread).
    let mut got = Vec::new();
    let _ = asker.reader.read_to_end(&mut got);
    assert!(
        got.len() < 2_000_000 * 18,
        "dropped before all were answered"
    );
    c[0].send("/who\n");
    assert_eq!(c[0].line(), "WHO guest2");
    server.wait_for_log("passed --max-sendq 65536; disconnecting");
}

#[test]
fn sigint_tells_every_client_bye_and_the_server_exits_0() {
    let mut server = Server::start(&["chat=0"]);
    let mut c = room(&server, 5);
    c[0].send("last words\n");
    for client in &mut c[1..] {
        assert_eq!(client.line(), "MSG guest1 last words");
    }
    server.signal(2);
    for client in &mut c {
        assert_eq!(client.rest(), ["BYE server shutting down"]);
    }
    drop(c);
    assert_eq!(server.wait_exit().code(), Some(0));
    assert_eq!(server.stdout(), "");
}

#[test]
fn an_idle_client_is_told_bye_idle_timeout() {
    let server = Server::start(&["chat=0", "--idle-timeout", "1"]);
    let (mut idle, _) = Client::join(&server);
    assert_eq!(idle.rest(), ["BYE idle timeout"]);
}

#[test]
fn a_netcat_style_session_with_crlf_lines() {
    // A netcat-style session: raw bytes in, raw lines out, CRLF accepted.
    let server = Server::start(&["chat=0"]);
    let mut raw = Client::raw(&server);
    raw.write_all(b"/help\r\n/quit\r\n").unwrap();
    let mut got = String::new();
    raw.read_to_string(&mut got).unwrap();
    assert_eq!(
        got,
        "WELCOME guest1\nOK commands: /nick /who /msg /quit /help\nBYE\n"
    );
}

/// Runs `onepoll-client -h 127.0.0.1 -p PORT chat ARGS` with piped stdio.
fn client_process(port: u16, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "chat"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onepoll-client")
}

/// Collects a child's stdout lines on a channel (bounded waits on receive).
fn stdout_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a child to exit.
fn wait_child(child: &mut std::process::Child) -> Option<i32> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(std::time::Instant::now() < deadline, "client did not exit");
        thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn the_client_relays_a_pipe_both_ways_and_quits_at_its_end() {
    let server = Server::start(&["chat=0", "--chat-rate", "0"]);
    let port = server.addr("chat").port();
    let (mut other, _) = Client::join(&server);
    let mut child = client_process(port, &["--nick", "ann"]);
    let lines = stdout_lines(&mut child);
    let next = || {
        lines
            .recv_timeout(PATIENCE)
            .expect("a line from the client")
    };
    assert_eq!(next(), "WELCOME guest2");
    assert_eq!(next(), "OK nick ann");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello from the pipe\n/who\n").unwrap();
    assert_eq!(next(), "WHO ann guest1");
    // Lines from the room are printed while stdin stays open.
    assert_eq!(other.line(), "JOIN guest2");
    assert_eq!(other.line(), "NICK guest2 ann");
    assert_eq!(other.line(), "MSG ann hello from the pipe");
    other.send("hi ann\n");
    assert_eq!(next(), "MSG guest1 hi ann");
    // End of stdin, mid-line: the line is finished, then /quit.
    stdin.write_all(b"bye then").unwrap();
    drop(stdin);
    assert_eq!(next(), "BYE");
    assert_eq!(wait_child(&mut child), Some(0));
    assert_eq!(other.line(), "MSG ann bye then");
    assert_eq!(other.line(), "LEAVE ann");
}

#[test]
fn the_client_reads_a_file_as_stdin() {
    let server = Server::start(&["chat=0", "--chat-rate", "0"]);
    let port = server.addr("chat").port();
    let dir = std::env::temp_dir().join(format!("onepoll-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("input.txt");
    std::fs::write(&file, "/help\n/nick zed\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "chat"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("run onepoll-client");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "WELCOME guest1\nOK commands: /nick /who /msg /quit /help\nOK nick zed\nBYE\n"
    );
}

#[test]
fn the_client_exits_1_when_the_server_cannot_be_reached() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "chat"])
        .stdin(Stdio::null())
        .output()
        .expect("run onepoll-client");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

/// The load generator fills a room larger than one of its opening waves
/// (256 connections opened before their greetings are read, so that the
/// server announces a wave's arrivals in one write per member), and the
/// run's messages reach every receiver of both waves: a sender keeps 4
/// messages in flight, so more than 8 deliveries per receiver means that
/// messages completed, which takes all 300 receivers having them.
#[test]
fn the_bench_fills_a_room_in_waves_and_every_receiver_gets_the_messages() {
    let server = Server::start(&["--chat-rate", "0", "chat=0"]);
    let port = server.addr("chat").port().to_string();
    let csv = std::env::temp_dir().join(format!("chat-waves-{}.csv", std::process::id()));
    let _ = std::fs::remove_file(&csv);
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-bench"))
        .args(["chat", "-p", &port, "--receivers", "300", "-P", "4"])
        .args(["-d", "1", "-q", "--csv"])
        .arg(&csv)
        .output()
        .expect("run onepoll-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 errors, 0 disconnects"), "{stdout}");
    let text = std::fs::read_to_string(&csv).expect("the CSV row");
    let _ = std::fs::remove_file(&csv);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let row: Vec<&str> = lines.next().expect("row").split(',').collect();
    let field = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
    assert_eq!(field("conns"), "300", "{text}");
    let ops: u64 = field("ops").parse().expect("ops");
    assert!(
        ops > 300 * 8,
        "messages did not complete: {ops} deliveries\n{text}"
    );
}
