//! tne over real sockets (SPEC 1.1): the onepoll binary on 127.0.0.1 with
//! an OS-chosen port, TCP and UDP, and the `onepoll-client tne` subcommand.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::Command;

use common::{read_to_end, send, Server, PATIENCE};

/// Reads until `lines` LFs have arrived (bounded by the read timeout).
fn read_lines(stream: &mut TcpStream, lines: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    while got.iter().filter(|&&b| b == b'\n').count() < lines {
        let n = stream.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "closed early after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("replies are ASCII")
}

fn udp_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

fn udp_exchange(socket: &UdpSocket, server: &Server, datagram: &[u8]) -> String {
    socket.send_to(datagram, server.find("tne", "udp")).unwrap();
    let mut buf = [0u8; 65_536];
    let (n, from) = socket.recv_from(&mut buf).expect("a reply datagram");
    assert_eq!(from, server.find("tne", "udp"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn tcp_and_udp_listen_on_the_same_port_number() {
    let server = Server::start(&["tne=0"]);
    assert_eq!(
        server.find("tne", "tcp").port(),
        server.find("tne", "udp").port()
    );
    server.wait_for_log("listening tne udp 127.0.0.1:");
}

#[test]
fn every_tcp_case_gets_its_reply_and_the_connection_stays_open() {
    let server = Server::start(&["tne=0"]);
    let mut s = server.connect("tne");
    send(
        &mut s,
        b"TNE20003:hello world\r\nhello\n\nTNE20003:\nTNE20003:caf\xc3\xa9\nTNE20003:A:B\n",
    );
    assert_eq!(
        read_lines(&mut s, 6),
        "TNE20003:A:hello world\n\
         TNE20003:E:missing TNE20003 header\n\
         TNE20003:E:empty line\n\
         TNE20003:E:empty message\n\
         TNE20003:E:byte outside 0x01-0x7F\n\
         TNE20003:A:A:B\n"
    );
    send(&mut s, b"TNE20003:still here\n");
    assert_eq!(read_lines(&mut s, 1), "TNE20003:A:still here\n");
}

#[test]
fn a_thousand_pipelined_messages_in_one_write_are_answered_in_order() {
    let server = Server::start(&["tne=0"]);
    let mut s = server.connect("tne");
    let mut input = Vec::new();
    let mut expected = String::new();
    for i in 0..1000 {
        input.extend_from_slice(format!("TNE20003:message {i}\n").as_bytes());
        expected.push_str(&format!("TNE20003:A:message {i}\n"));
    }
    send(&mut s, &input);
    assert_eq!(read_lines(&mut s, 1000), expected);
}

#[test]
fn messages_sent_byte_by_byte_are_answered_the_same() {
    let server = Server::start(&["tne=0"]);
    let mut s = server.connect("tne");
    s.set_nodelay(true).unwrap();
    for &b in b"TNE20003:slow\r\nbad\n".iter() {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(
        read_lines(&mut s, 2),
        "TNE20003:A:slow\nTNE20003:E:missing TNE20003 header\n"
    );
}

#[test]
fn an_over_long_line_is_answered_once_and_its_rest_discarded() {
    let server = Server::start(&["--max-line", "64", "tne=0"]);
    let mut s = server.connect("tne");
    // 4 MiB without LF, sent in pieces, then the rest of the line and a
    // good message: one error, then the good reply.
    let piece = vec![b'x'; 64 * 1024];
    send(&mut s, b"TNE20003:");
    for _ in 0..64 {
        send(&mut s, &piece);
    }
    send(&mut s, b"end of the long line\r\nTNE20003:after\n");
    assert_eq!(
        read_lines(&mut s, 2),
        "TNE20003:E:line too long\nTNE20003:A:after\n"
    );
    let limit = "TNE20003:".to_string() + &"y".repeat(64 - 9);
    send(&mut s, format!("{limit}\r\n{limit}z\n").as_bytes());
    assert_eq!(
        read_lines(&mut s, 2),
        format!("TNE20003:A:{}\nTNE20003:E:line too long\n", "y".repeat(55))
    );
}

#[test]
fn a_half_closed_client_gets_every_reply_then_the_close() {
    let server = Server::start(&["tne=0"]);
    let mut s = server.connect("tne");
    send(&mut s, b"TNE20003:one\nTNE20003:two\nTNE20003:three");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8(read_to_end(&mut s)).unwrap(),
        "TNE20003:A:one\nTNE20003:A:two\nTNE20003:E:message not ended by LF\n"
    );
}

#[test]
fn a_connection_over_max_conns_is_told_server_full() {
    let server = Server::start(&["--max-conns", "1", "tne=0"]);
    let mut first = server.connect("tne");
    send(&mut first, b"TNE20003:in\n");
    assert_eq!(read_lines(&mut first, 1), "TNE20003:A:in\n");
    let mut second = server.connect("tne");
    assert_eq!(
        String::from_utf8(read_to_end(&mut second)).unwrap(),
        "TNE20003:E:server full\n"
    );
    send(&mut first, b"TNE20003:still served\n");
    assert_eq!(read_lines(&mut first, 1), "TNE20003:A:still served\n");
}

#[test]
fn an_idle_connection_is_closed() {
    let server = Server::start(&["--idle-timeout", "1", "tne=0"]);
    let mut s = server.connect("tne");
    assert!(read_to_end(&mut s).is_empty());
    server.wait_for_log("(idle timeout)");
}

#[test]
fn each_datagram_gets_one_reply_datagram_without_lf() {
    let server = Server::start(&["tne=0"]);
    let socket = udp_socket();
    let cases: [(&[u8], &str); 6] = [
        (b"TNE20003:over udp", "TNE20003:A:over udp"),
        (b"TNE20003:typed in nc -u\n", "TNE20003:A:typed in nc -u"),
        (b"TNE20003:", "TNE20003:E:empty message"),
        (b"nope, not this one", "TNE20003:E:missing TNE20003 header"),
        (
            b"TNE20003:\x80 and more",
            "TNE20003:E:byte outside 0x01-0x7F",
        ),
        (b"", "TNE20003:E:"),
    ];
    for (datagram, reply) in cases {
        assert_eq!(udp_exchange(&socket, &server, datagram), reply);
    }
}

#[test]
fn a_reply_datagram_is_never_longer_than_three_times_the_datagram() {
    // The source of a datagram can be forged: a 1-byte datagram got a
    // 34-byte error reply (34x) before the reason was cut to fit.
    let server = Server::start(&["tne=0"]);
    let socket = udp_socket();
    assert_eq!(udp_exchange(&socket, &server, b"x"), "TNE20003:E:");
    for len in 0..40 {
        let datagram = vec![b'?'; len];
        let reply = udp_exchange(&socket, &server, &datagram);
        assert!(
            reply.len() <= (3 * len).max(11),
            "{len} bytes answered by {} bytes: {reply:?}",
            reply.len()
        );
        assert!("TNE20003:E:missing TNE20003 header".starts_with(&reply));
    }
    // An ack is never cut.
    assert_eq!(
        udp_exchange(&socket, &server, b"TNE20003:k"),
        "TNE20003:A:k"
    );
    // Cut replies are counted: 1 byte, then lengths 0 to 11 (12 and up
    // leave room for the whole reason, 34 bytes).
    let mut server = server;
    server.signal(2);
    server.wait_exit();
    server.wait_for_log("error replies cut to 3x their datagram");
    assert!(
        server.log().contains(": 13 error replies cut"),
        "{}",
        server.log()
    );
}

#[test]
fn an_over_long_datagram_is_refused() {
    let server = Server::start(&["--max-line", "32", "tne=0"]);
    let socket = udp_socket();
    let mut long = b"TNE20003:".to_vec();
    long.resize(33, b'x');
    assert_eq!(
        udp_exchange(&socket, &server, &long),
        "TNE20003:E:line too long"
    );
    long.pop();
    assert!(udp_exchange(&socket, &server, &long).starts_with("TNE20003:A:"));
}

#[test]
fn a_burst_of_datagrams_is_drained_and_every_one_answered() {
    let server = Server::start(&["tne=0"]);
    let socket = udp_socket();
    let to = server.find("tne", "udp");
    // Sent before any reply is read: a server that did not read to
    // WouldBlock on each edge would leave some unanswered. 100 small
    // datagrams fit the default receive buffers (~200 KiB, ~1 KiB of
    // accounting per datagram) on both sides.
    let count = 100;
    for i in 0..count {
        socket
            .send_to(format!("TNE20003:{i}").as_bytes(), to)
            .unwrap();
    }
    let mut seen = vec![false; count];
    let mut buf = [0u8; 1024];
    for _ in 0..count {
        let (n, _) = socket.recv_from(&mut buf).expect("every datagram answered");
        let reply = std::str::from_utf8(&buf[..n]).unwrap();
        let i: usize = reply.strip_prefix("TNE20003:A:").unwrap().parse().unwrap();
        seen[i] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn udp_and_tcp_are_served_together_by_one_loop() {
    let server = Server::start(&["tne=0"]);
    let mut tcp = server.connect("tne");
    let socket = udp_socket();
    send(&mut tcp, b"TNE20003:tcp");
    assert_eq!(
        udp_exchange(&socket, &server, b"TNE20003:udp"),
        "TNE20003:A:udp"
    );
    send(&mut tcp, b"\n");
    assert_eq!(read_lines(&mut tcp, 1), "TNE20003:A:tcp\n");
}

fn client(server: &Server, args: &[&str]) -> (Option<i32>, String, String) {
    let port = server.find("tne", "tcp").port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "tne"])
        .args(args)
        .output()
        .expect("run onepoll-client");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_client_prints_each_reply_over_tcp_and_udp() {
    let server = Server::start(&["tne=0"]);
    for transport in [&[][..], &["--udp"][..]] {
        let args: Vec<&str> = transport
            .iter()
            .copied()
            .chain(["hello", "world"])
            .collect();
        let (code, out, err) = client(&server, &args);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, "TNE20003:A:hello\nTNE20003:A:world\n");
    }
}

#[test]
fn the_client_exits_1_when_a_message_is_refused() {
    let server = Server::start(&["tne=0"]);
    let (code, out, err) = client(&server, &["ok", ""]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "TNE20003:A:ok\nTNE20003:E:empty message\n");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn the_client_exits_1_when_no_server_listens() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "tne", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
