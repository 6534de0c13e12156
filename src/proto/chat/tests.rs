//! The whole room simulated without sockets: several sessions, one shared
//! room, and a router that follows the loop's contract
//! ([`crate::proto::effects`]): route after every call, slow consumers
//! found at the push and closed with `SendqExceeded`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::SystemTime;

use super::*;
use crate::config::Protocol;
use crate::proto::effects::{self, Deliver, Effect};
use crate::proto::output::SEGMENT_COST;
use crate::proto::transform;
use crate::proto::{Output, Shared as AllShared};

struct Client {
    session: ChatSession,
    out: Output,
    /// Input offered but not consumed, as the loop carries it.
    carry: Vec<u8>,
    /// The session asked to close (after /quit or shutdown).
    closing: bool,
    /// on_close was called: the connection is gone.
    closed: bool,
    /// Marked by the router as a slow consumer.
    slow: bool,
    /// Every line received, for tests that never "read" the socket.
    delivered_ptrs: Vec<*const u8>,
}

/// A room of clients driven by hand.
struct Sim {
    shared: AllShared,
    clients: BTreeMap<u64, Client>,
    effects: Vec<Effect>,
    next_id: u64,
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
        client.delivered_ptrs.push(msg.as_ptr());
        if client.out.footprint() > self.max_sendq {
            client.slow = true;
            self.victims.push(to);
        }
    }
}

impl Sim {
    fn new(max_line: usize) -> Sim {
        Sim {
            shared: {
                let mut shared = AllShared::new(&crate::config::Config::default());
                shared.transform = transform::Shared::new(0, crate::proto::rng::Rng::from_seed(1));
                shared.chat = Shared::new(max_line, usize::MAX);
                shared
            },
            clients: BTreeMap::new(),
            effects: Vec::new(),
            next_id: 100,
        }
    }

    /// Calls into client `id`'s session, then routes its effects.
    fn call<R>(&mut self, id: u64, f: impl FnOnce(&mut ChatSession, &mut Cx<'_>) -> R) -> R {
        let client = self.clients.get_mut(&id).expect("no such client");
        assert!(!client.closed, "call into a closed session");
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, id as u16));
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
        }
        self.route();
        result
    }

    fn route(&mut self) {
        loop {
            let mut sink = Sink {
                clients: &mut self.clients,
                max_sendq: self.shared.chat.max_sendq,
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

    fn connect(&mut self) -> u64 {
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
                delivered_ptrs: Vec::new(),
            },
        );
        self.call(id, |s, cx| s.on_open(cx));
        id
    }

    /// Feeds `bytes` as one read, with the loop's carry of unconsumed input.
    fn send(&mut self, id: u64, bytes: &[u8]) {
        let client = self.clients.get_mut(&id).expect("no such client");
        if client.closing || client.closed {
            return;
        }
        let mut input = std::mem::take(&mut client.carry);
        input.extend_from_slice(bytes);
        let consumed = self.call(id, |s, cx| s.on_input(&input, cx));
        assert!(consumed <= input.len());
        let client = self.clients.get_mut(&id).expect("client");
        if client.out.footprint() > self.shared.chat.max_sendq && !client.slow {
            // The loop's check of a client's own replies after each read.
            client.slow = true;
            self.close(id, CloseReason::SendqExceeded);
            return;
        }
        input.drain(..consumed);
        let max_line = self.shared.chat.max_line;
        assert!(input.len() <= max_line + 1, "carried input is bounded");
        self.clients.get_mut(&id).expect("client").carry = input;
    }

    fn eof(&mut self, id: u64) {
        self.call(id, |s, cx| s.on_eof(cx));
    }

    fn close(&mut self, id: u64, reason: CloseReason) {
        self.call(id, |s, cx| s.on_close(cx, reason));
        self.clients.get_mut(&id).expect("client").closed = true;
    }

    fn shutdown(&mut self) {
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        for id in ids {
            if !self.clients[&id].closed {
                self.call(id, |s, cx| s.on_shutdown(cx));
            }
        }
        for id in self.clients.keys().copied().collect::<Vec<_>>() {
            if !self.clients[&id].closed {
                self.close(id, CloseReason::Shutdown);
            }
        }
    }

    /// Everything client `id` has been sent since the last read.
    fn read(&mut self, id: u64) -> String {
        let bytes = self.clients.get_mut(&id).expect("client").out.take_all();
        String::from_utf8(bytes).expect("server lines are UTF-8")
    }

    fn read_all(&mut self) -> Vec<String> {
        let ids: Vec<u64> = self.clients.keys().copied().collect();
        ids.into_iter().map(|id| self.read(id)).collect()
    }
}

/// A room with `n` clients connected and every greeting read.
fn room(n: usize) -> (Sim, Vec<u64>) {
    let mut sim = Sim::new(64);
    let ids: Vec<u64> = (0..n).map(|_| sim.connect()).collect();
    sim.read_all();
    (sim, ids)
}

#[test]
fn a_client_is_welcomed_as_guest_n_and_the_others_get_join() {
    let mut sim = Sim::new(64);
    let a = sim.connect();
    assert_eq!(sim.read(a), "WELCOME guest1\n");
    let b = sim.connect();
    assert_eq!(sim.read(b), "WELCOME guest2\n");
    assert_eq!(sim.read(a), "JOIN guest2\n");
}

#[test]
fn a_line_is_relayed_to_every_other_client_and_not_the_sender() {
    let (mut sim, ids) = room(3);
    sim.send(ids[0], b"hello \tworld \xe2\x98\x83\r\n");
    assert_eq!(sim.read(ids[0]), "");
    assert_eq!(sim.read(ids[1]), "MSG guest1 hello \tworld ☃\n");
    assert_eq!(sim.read(ids[2]), "MSG guest1 hello \tworld ☃\n");
}

#[test]
fn a_broadcast_is_one_allocation_shared_by_every_receiver() {
    let (mut sim, ids) = room(50);
    sim.send(ids[0], b"hi\n");
    let ptrs: Vec<*const u8> = ids[1..]
        .iter()
        .map(|id| *sim.clients[id].delivered_ptrs.last().expect("delivered"))
        .collect();
    assert!(ptrs.iter().all(|p| *p == ptrs[0]), "one Rc for all");
    assert_eq!(sim.read(ids[49]), "MSG guest1 hi\n");
}

#[test]
fn a_client_alone_sends_to_nobody() {
    let (mut sim, ids) = room(1);
    sim.send(ids[0], b"anyone?\n");
    assert_eq!(sim.read(ids[0]), "");
    assert!(sim.effects.is_empty());
}

#[test]
fn nick_change_replies_ok_and_tells_the_others() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"/nick Ann.B-c_9\n");
    assert_eq!(sim.read(ids[0]), "OK nick Ann.B-c_9\n");
    assert_eq!(sim.read(ids[1]), "NICK guest1 Ann.B-c_9\n");
    sim.send(ids[0], b"hi\n");
    assert_eq!(sim.read(ids[1]), "MSG Ann.B-c_9 hi\n");
}

#[test]
fn nick_must_follow_the_rules_and_be_unique_ignoring_case() {
    let (mut sim, ids) = room(2);
    let long = format!("/nick {}\n", "x".repeat(33));
    for bad in [
        "/nick\n",
        "/nick \n",
        "/nick a b\n",
        "/nick  ann\n",
        "/nick ann!\n",
        "/nick \u{e9}\n",
        long.as_str(),
    ] {
        sim.send(ids[0], bad.as_bytes());
        assert_eq!(sim.read(ids[0]), "ERR invalid nick\n", "{bad:?}");
    }
    sim.send(ids[0], format!("/nick {}\n", "x".repeat(32)).as_bytes());
    assert_eq!(sim.read(ids[0]), format!("OK nick {}\n", "x".repeat(32)));
    sim.read_all();
    sim.send(ids[1], b"/nick XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\n");
    assert_eq!(sim.read(ids[1]), "ERR nick in use\n");
    sim.send(ids[1], b"/nick GUEST1\n");
    assert_eq!(sim.read(ids[1]), "OK nick GUEST1\n", "guest1 is free now");
    assert_eq!(sim.read(ids[0]), "NICK guest2 GUEST1\n");
    sim.send(ids[0], b"/nick guest1\n");
    assert_eq!(sim.read(ids[0]), "ERR nick in use\n");
    sim.read_all();
}

#[test]
fn changing_only_the_case_of_ones_own_nick_is_allowed() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"/nick GuEsT1\n");
    assert_eq!(sim.read(ids[0]), "OK nick GuEsT1\n");
    assert_eq!(sim.read(ids[1]), "NICK guest1 GuEsT1\n");
    sim.send(ids[0], b"/nick GuEsT1\n");
    assert_eq!(sim.read(ids[0]), "OK nick GuEsT1\n");
    assert_eq!(sim.read(ids[1]), "", "no change, no NICK");
}

#[test]
fn guest_numbers_are_never_reused() {
    let (mut sim, ids) = room(2);
    sim.close(ids[1], CloseReason::PeerClosed);
    let c = sim.connect();
    assert_eq!(sim.read(c), "WELCOME guest3\n");
}

#[test]
fn who_lists_every_nick_sorted_ignoring_case() {
    let (mut sim, ids) = room(4);
    for (id, name) in ids.iter().zip(["zed", "Bob", "alice", "_x"]) {
        sim.send(*id, format!("/nick {name}\n").as_bytes());
    }
    sim.read_all();
    sim.send(ids[0], b"/who\n");
    assert_eq!(sim.read(ids[0]), "WHO _x alice Bob zed\n");
    assert_eq!(sim.read(ids[1]), "", "only the asker gets WHO");
}

#[test]
fn msg_reaches_the_named_client_alone() {
    let (mut sim, ids) = room(3);
    sim.send(ids[1], b"/nick Bob\n");
    sim.read_all();
    sim.send(ids[0], b"/msg bOB  psst\tmore\n");
    assert_eq!(sim.read(ids[0]), "OK\n");
    assert_eq!(sim.read(ids[1]), "PRIV guest1  psst\tmore\n");
    assert_eq!(sim.read(ids[2]), "");
}

#[test]
fn msg_errors_and_msg_to_oneself() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"/msg nobody hi\n/msg\n/msg guest2\n/msg guest2 \n");
    assert_eq!(
        sim.read(ids[0]),
        "ERR no such nick\nERR no such nick\nERR empty message\nERR empty message\n"
    );
    sim.send(ids[0], b"/msg guest1 note to self\n/who\n");
    assert_eq!(
        sim.read(ids[0]),
        "PRIV guest1 note to self\nOK\nWHO guest1 guest2\n",
        "a message to oneself keeps its place among the replies"
    );
    assert_eq!(sim.read(ids[1]), "");
}

#[test]
fn quit_says_bye_closes_and_is_announced_once() {
    let (mut sim, ids) = room(3);
    sim.send(ids[0], b"/quit gone fishing\nignored after quit\n");
    assert_eq!(sim.read(ids[0]), "BYE\n");
    assert!(sim.clients[&ids[0]].closing);
    assert_eq!(sim.read(ids[1]), "LEAVE guest1 gone fishing\n");
    sim.close(ids[0], CloseReason::Finished);
    sim.send(ids[1], b"/quit\n");
    assert_eq!(
        sim.read(ids[2]),
        "LEAVE guest1 gone fishing\nLEAVE guest2\n"
    );
    sim.close(ids[1], CloseReason::PeerClosed);
    assert_eq!(sim.read(ids[2]), "", "nothing announced twice");
    sim.send(ids[2], b"/who\n");
    assert_eq!(sim.read(ids[2]), "WHO guest3\n");
}

#[test]
fn a_dropped_connection_is_announced_once_as_connection_lost() {
    let (mut sim, ids) = room(2);
    sim.eof(ids[0]);
    assert_eq!(sim.read(ids[1]), "LEAVE guest1 connection lost\n");
    sim.close(ids[0], CloseReason::PeerClosed);
    assert_eq!(sim.read(ids[1]), "");
    sim.close(ids[1], CloseReason::PeerClosed);
    assert!(sim.shared.chat.room.is_empty());
}

#[test]
fn idle_timeout_says_bye_and_leave_with_the_reason() {
    let (mut sim, ids) = room(2);
    sim.close(ids[0], CloseReason::IdleTimeout);
    assert_eq!(sim.read(ids[0]), "BYE idle timeout\n");
    assert_eq!(sim.read(ids[1]), "LEAVE guest1 idle timeout\n");
}

#[test]
fn help_and_unknown_commands() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"/help\n/me waves\n/\n/NICK x\n");
    assert_eq!(
        sim.read(ids[0]),
        "OK commands: /nick /who /msg /quit /help\nERR unknown command\n\
         ERR unknown command\nERR unknown command\n"
    );
    assert_eq!(sim.read(ids[1]), "");
}

#[test]
fn double_slash_escapes_a_message_starting_with_slash() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"//nick not a command\n//\n");
    assert_eq!(sim.read(ids[0]), "");
    assert_eq!(
        sim.read(ids[1]),
        "MSG guest1 /nick not a command\nMSG guest1 /\n"
    );
}

#[test]
fn invalid_text_is_refused_and_not_relayed() {
    let (mut sim, ids) = room(2);
    sim.send(
        ids[0],
        b"bell\x07\n\xff\xfe\n/nick a\x00b\nesc \x1b[1m\ndel\x7f\nx\rx\n",
    );
    assert_eq!(sim.read(ids[0]), "ERR invalid text\n".repeat(6));
    assert_eq!(sim.read(ids[1]), "");
}

#[test]
fn empty_lines_are_ignored() {
    let (mut sim, ids) = room(2);
    sim.send(ids[0], b"\n\r\n\n");
    assert_eq!(sim.read_all(), ["", ""]);
}

#[test]
fn an_over_long_line_is_refused_once_and_its_rest_discarded() {
    let (mut sim, ids) = room(2);
    let max = sim.shared.chat.max_line;
    let exact = "x".repeat(max);
    sim.send(ids[0], format!("{exact}\r\n").as_bytes());
    assert_eq!(sim.read(ids[1]), format!("MSG guest1 {exact}\n"));
    sim.send(ids[0], "y".repeat(max + 2).as_bytes());
    assert_eq!(sim.read(ids[0]), "ERR line too long\n");
    sim.send(ids[0], "y".repeat(10 * max).as_bytes());
    sim.send(ids[0], b"yyy\nafter\n");
    assert_eq!(sim.read(ids[0]), "", "reported once");
    assert_eq!(sim.read(ids[1]), "MSG guest1 after\n");
    sim.send(ids[0], format!("{exact}z\n").as_bytes());
    assert_eq!(sim.read(ids[0]), "ERR line too long\n");
}

#[test]
fn every_receiver_gets_lines_in_the_order_the_server_accepted_them() {
    let (mut sim, ids) = room(4);
    sim.send(ids[0], b"a1\na2\n");
    sim.send(ids[1], b"b1\n");
    sim.send(ids[0], b"a3\n");
    sim.send(ids[2], b"/nick C\n");
    sim.send(ids[1], b"/msg guest4 p\n");
    assert_eq!(
        sim.read(ids[3]),
        "MSG guest1 a1\nMSG guest1 a2\nMSG guest2 b1\nMSG guest1 a3\n\
         NICK guest3 C\nPRIV guest2 p\n"
    );
}

#[test]
fn a_client_that_joins_later_does_not_get_earlier_lines() {
    let (mut sim, ids) = room(1);
    sim.send(ids[0], b"early\n");
    let b = sim.connect();
    assert_eq!(sim.read(b), "WELCOME guest2\n");
    sim.send(ids[0], b"late\n");
    assert_eq!(sim.read(b), "MSG guest1 late\n");
}

#[test]
fn a_slow_consumer_is_dropped_and_announced_while_others_keep_receiving() {
    let (mut sim, ids) = room(3);
    // Each 19-byte line is one shared segment in the receiver's queue.
    sim.shared.chat.max_sendq = 5 * (19 + SEGMENT_COST);
    for i in 0..20 {
        sim.send(ids[0], format!("line {i:02}\n").as_bytes());
        // ids[1] reads as it goes; ids[2] never reads.
        let got = sim.read(ids[1]);
        if i < 5 {
            assert_eq!(got, format!("MSG guest1 line {i:02}\n"));
        } else if i == 5 {
            assert_eq!(
                got, "MSG guest1 line 05\nLEAVE guest3 sendq exceeded\n",
                "the 6th line passes the limit"
            );
        } else {
            assert_eq!(got, format!("MSG guest1 line {i:02}\n"));
        }
    }
    assert!(sim.clients[&ids[2]].closed);
    let dropped = sim.read(ids[2]);
    assert!(dropped.ends_with("MSG guest1 line 05\nBYE sendq exceeded\n"));
    assert_eq!(dropped.matches("line").count(), 6, "nothing after the drop");
    sim.send(ids[0], b"/who\n");
    assert_eq!(
        sim.read(ids[0]),
        "LEAVE guest3 sendq exceeded\nWHO guest1 guest2\n",
        "the sender was never held up, and is told too"
    );
}

#[test]
fn slow_consumer_drops_can_cascade_and_each_is_announced_once() {
    let (mut sim, ids) = room(4);
    sim.shared.chat.max_sendq = 20;
    // 28 bytes pass 20 for every receiver at once; the first LEAVE notice
    // (27 bytes) then passes it for the sender, who reads nothing either.
    sim.send(ids[0], b"0123456789012345\n");
    assert!(ids.iter().all(|id| sim.clients[id].closed));
    assert!(sim.shared.chat.room.is_empty());
    assert_eq!(
        sim.read(ids[0]),
        "LEAVE guest2 sendq exceeded\nBYE sendq exceeded\n"
    );
    for id in &ids[1..] {
        assert_eq!(
            sim.read(*id),
            "MSG guest1 0123456789012345\nBYE sendq exceeded\n",
            "no notice reaches a client already dropped"
        );
    }
}

#[test]
fn shutdown_says_bye_to_everyone_and_announces_no_leave() {
    let (mut sim, ids) = room(3);
    sim.shutdown();
    for id in &ids {
        assert_eq!(sim.read(*id), "BYE server shutting down\n");
        assert!(sim.clients[id].closing);
    }
    assert!(sim.shared.chat.room.is_empty());
}

mod splits {
    use super::*;
    use proptest::prelude::*;

    fn arb_line() -> impl Strategy<Value = Vec<u8>> {
        let fixed = prop_oneof![
            Just(b"hello".to_vec()),
            Just(b"/nick bob".to_vec()),
            Just(b"/nick BOB".to_vec()),
            Just(b"/nick bad nick".to_vec()),
            Just(b"/who".to_vec()),
            Just(b"/msg bob hi".to_vec()),
            Just(b"/msg guest1 yo".to_vec()),
            Just(b"/help".to_vec()),
            Just(b"/nope".to_vec()),
            Just(b"//slash".to_vec()),
            Just(b"".to_vec()),
            Just(b"\x01bad".to_vec()),
            Just(b"\xc3".to_vec()),
            Just(b"/quit bye".to_vec()),
            Just(vec![b'L'; 20]),
            Just(vec![b'L'; 16]),
        ];
        (fixed, any::<bool>()).prop_map(|(mut line, crlf)| {
            if crlf {
                line.push(b'\r');
            }
            line.push(b'\n');
            line
        })
    }

    /// Runs a script of (client, line) over 3 clients, each line fed in the
    /// pieces `cut` gives; returns what every client received.
    fn run(script: &[(usize, Vec<u8>)], cut: impl Fn(&[u8]) -> Vec<Vec<u8>>) -> Vec<String> {
        let mut sim = Sim::new(16);
        let ids: Vec<u64> = (0..3).map(|_| sim.connect()).collect();
        for (who, line) in script {
            for piece in cut(line) {
                sim.send(ids[*who], &piece);
            }
        }
        sim.read_all()
    }

    proptest! {
        /// Any split of each client's input gives every client the same
        /// lines as the input fed a line at a time.
        #[test]
        fn any_split_gives_the_same_outputs(
            script in proptest::collection::vec((0usize..3, arb_line()), 1..30),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let whole = run(&script, |line| vec![line.to_vec()]);
            let split = run(&script, |line| {
                let mut points: Vec<usize> =
                    cuts.iter().map(|c| c.index(line.len() + 1)).collect();
                points.sort_unstable();
                let mut pieces = Vec::new();
                let mut start = 0;
                for p in points {
                    pieces.push(line[start..p].to_vec());
                    start = p;
                }
                pieces.push(line[start..].to_vec());
                pieces
            });
            prop_assert_eq!(&split, &whole);
            let bytes = run(&script, |line| line.chunks(1).map(<[u8]>::to_vec).collect());
            prop_assert_eq!(&bytes, &whole);
        }
    }
}

#[test]
fn the_worked_example_of_the_module_doc_holds() {
    let mut sim = Sim::new(8192);
    let a = sim.connect();
    let b = sim.connect();
    sim.send(a, b"/nick ann\n");
    sim.send(b, b"hello\n/nick ANN\n/nick bo b\n");
    sim.send(a, b"/who\n/msg GUEST2 psst\n//who\n");
    sim.send(b, b"/quit bye all\n");
    assert_eq!(
        sim.read(a),
        "WELCOME guest1\nJOIN guest2\nOK nick ann\nMSG guest2 hello\n\
         WHO ann guest2\nOK\nLEAVE guest2 bye all\n"
    );
    assert_eq!(
        sim.read(b),
        "WELCOME guest2\nNICK guest1 ann\nERR nick in use\nERR invalid nick\n\
         PRIV ann psst\nMSG ann /who\nBYE\n"
    );
    assert!(sim.clients[&b].closing);
}

#[test]
fn a_client_that_asks_and_never_reads_is_dropped_at_the_line_that_passes_the_limit() {
    let (mut sim, ids) = room(2);
    // "WHO guest1 guest2\n" is 18 bytes, the replies share one owned
    // segment: the 6th passes the limit, and the 50 lines after it in the
    // same read are not acted on.
    sim.shared.chat.max_sendq = 5 * 18 + SEGMENT_COST;
    let mut input = b"/who\n".repeat(6);
    input.extend_from_slice(&b"hi\n".repeat(50));
    sim.send(ids[0], &input);
    assert!(sim.clients[&ids[0]].closed);
    assert_eq!(
        sim.read(ids[0]),
        format!("{}BYE sendq exceeded\n", "WHO guest1 guest2\n".repeat(6))
    );
    assert_eq!(
        sim.read(ids[1]),
        "LEAVE guest1 sendq exceeded\n",
        "announced once, and no line after the 6th /who acted on"
    );
}

#[test]
fn a_member_left_behind_by_a_failed_session_is_forgotten_and_announced() {
    let (mut sim, ids) = room(2);
    assert_eq!(sim.shared.chat.forget(ids[1] + 100), None, "not a member");
    let leave = sim.shared.chat.forget(ids[0]).expect("still a member");
    assert_eq!(&*leave, b"LEAVE guest1 connection lost\n");
    assert_eq!(sim.shared.chat.forget(ids[0]), None, "only once");
    let mut effects = Vec::new();
    sim.shared.release(Protocol::Chat, ids[1], &mut effects);
    assert!(effects.is_empty(), "the last member has nobody to tell");
    assert!(sim.shared.chat.room.is_empty());
}

#[test]
fn the_line_allowance_leaves_the_lines_past_it_unconsumed() {
    let (mut sim, ids) = room(2);
    let input = b"one\n\nthree\n/who\nfive\n";
    sim.call(ids[0], |s, _| s.set_line_allowance(Some(3)));
    let used = sim.call(ids[0], |s, cx| s.on_input(input, cx));
    // Three lines consumed (the empty one counts), the rest left whole.
    assert_eq!(&input[used..], b"/who\nfive\n");
    assert_eq!(sim.call(ids[0], |s, _| s.line_allowance()), Some(0));
    assert_eq!(sim.read(ids[1]), "MSG guest1 one\nMSG guest1 three\n");
    // Nothing more while the allowance is spent.
    assert_eq!(sim.call(ids[0], |s, cx| s.on_input(b"/who\n", cx)), 0);
    // Tokens back: the rest goes through, in order.
    sim.call(ids[0], |s, _| s.set_line_allowance(Some(5)));
    let rest = &input[used..];
    assert_eq!(sim.call(ids[0], |s, cx| s.on_input(rest, cx)), rest.len());
    assert_eq!(sim.read(ids[0]), "WHO guest1 guest2\n");
    assert_eq!(sim.read(ids[1]), "MSG guest1 five\n");
    assert_eq!(sim.call(ids[0], |s, _| s.line_allowance()), Some(3));
    // No limit: never stops, never counts.
    sim.call(ids[0], |s, _| s.set_line_allowance(None));
    let many = b"x\n".repeat(100);
    assert_eq!(sim.call(ids[0], |s, cx| s.on_input(&many, cx)), many.len());
    assert_eq!(sim.call(ids[0], |s, _| s.line_allowance()), None);
}
