//! cmd over real sockets (SPEC 1.2): the onepoll binary on an OS-chosen
//! port, and the `onepoll-client cmd` subcommand.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
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
    String::from_utf8(got).expect("replies are text")
}

/// `s` with every ASCII digit replaced by `9`.
fn shape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect()
}

#[test]
fn every_verb_of_the_table_is_answered_and_bye_closes() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    send(
        &mut s,
        b"HELO client.example\r\nREQTIME\nREQDATE\nECHO hello  world \nECHO\nREQIP\n",
    );
    let replies = read_lines(&mut s, 6);
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(lines[0], "Hello client.example, pleased to meet you.");
    assert_eq!(shape(lines[1]), "99:99:99");
    assert_eq!(shape(lines[2]), "9999-99-99");
    assert_eq!(lines[3], "hello  world ");
    assert_eq!(lines[4], "");
    assert_eq!(lines[5], "127.0.0.1");
    send(&mut s, b"BYE\nECHO never answered\n");
    assert_eq!(
        String::from_utf8(read_to_end(&mut s)).unwrap(),
        "See ya later\n"
    );
}

#[test]
fn verbs_are_case_insensitive() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    send(&mut s, b"hElO x\necho y\nReqIp\n");
    assert_eq!(
        read_lines(&mut s, 3),
        "Hello x, pleased to meet you.\ny\n127.0.0.1\n"
    );
}

#[test]
fn helo_comes_first_and_errors_keep_the_connection() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    send(
        &mut s,
        b"REQTIME\nFROB\n\nHELO\nHELO me\nFROB\nREQIP now\nECHO still open\n",
    );
    assert_eq!(
        read_lines(&mut s, 8),
        "ERR say HELO first\n\
         ERR say HELO first\n\
         ERR say HELO first\n\
         ERR HELO needs a host\n\
         Hello me, pleased to meet you.\n\
         ERR unknown command\n\
         ERR REQIP takes no argument\n\
         still open\n"
    );
}

#[test]
fn bye_before_helo_is_allowed() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    send(&mut s, b"bye\r\n");
    assert_eq!(
        String::from_utf8(read_to_end(&mut s)).unwrap(),
        "See ya later\n"
    );
}

#[test]
fn the_server_sends_nothing_on_connect() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty());
}

#[test]
fn a_thousand_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    let mut input = b"HELO p\n".to_vec();
    let mut expected = "Hello p, pleased to meet you.\n".to_string();
    for i in 0..1000 {
        input.extend_from_slice(format!("ECHO request {i}\r\n").as_bytes());
        expected.push_str(&format!("request {i}\n"));
    }
    input.extend_from_slice(b"BYE\n");
    expected.push_str("See ya later\n");
    send(&mut s, &input);
    assert_eq!(String::from_utf8(read_to_end(&mut s)).unwrap(), expected);
}

#[test]
fn requests_sent_byte_by_byte_are_answered_the_same() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    s.set_nodelay(true).unwrap();
    for &b in b"HELO slow\r\nECHO a b c\n".iter() {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(
        read_lines(&mut s, 2),
        "Hello slow, pleased to meet you.\na b c\n"
    );
}

#[test]
fn an_over_long_line_is_answered_once_and_its_rest_discarded() {
    let server = Server::start(&["--max-line", "100", "cmd=0"]);
    let mut s = server.connect("cmd");
    send(&mut s, b"HELO x\nECHO ");
    let piece = vec![b'z'; 64 * 1024];
    for _ in 0..32 {
        send(&mut s, &piece);
    }
    send(&mut s, b"\nECHO after\n");
    assert_eq!(
        read_lines(&mut s, 3),
        "Hello x, pleased to meet you.\nERR line too long\nafter\n"
    );
}

#[test]
fn a_half_closed_client_gets_every_reply() {
    let server = Server::start(&["cmd=0"]);
    let mut s = server.connect("cmd");
    send(&mut s, b"HELO h\nECHO one\nECHO two\n");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8(read_to_end(&mut s)).unwrap(),
        "Hello h, pleased to meet you.\none\ntwo\n"
    );
}

#[test]
fn a_connection_over_max_conns_is_told_server_full() {
    let server = Server::start(&["--max-conns", "1", "cmd=0"]);
    let mut first = server.connect("cmd");
    send(&mut first, b"HELO a\n");
    read_lines(&mut first, 1);
    let mut second = server.connect("cmd");
    assert_eq!(
        String::from_utf8(read_to_end(&mut second)).unwrap(),
        "ERR server full\n"
    );
}

#[test]
fn an_idle_connection_is_closed() {
    let server = Server::start(&["--idle-timeout", "1", "cmd=0"]);
    let mut s = server.connect("cmd");
    send(&mut s, b"HELO idle\n");
    assert_eq!(
        String::from_utf8(read_to_end(&mut s)).unwrap(),
        "Hello idle, pleased to meet you.\n"
    );
    server.wait_for_log("(idle timeout)");
}

fn reqip_over(connect_to: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&connect_to, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    send(&mut s, b"HELO v6\nREQIP\n");
    read_lines(&mut s, 2).lines().nth(1).unwrap().to_string()
}

#[test]
fn reqip_shows_ipv6_peers_and_mapped_ipv4_peers_as_ipv4() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let server = Server::start_bound("::", &["cmd=0"]);
    let port = server.addr("cmd").port();
    assert_eq!(
        reqip_over(([0u16, 0, 0, 0, 0, 0, 0, 1], port).into()),
        "::1"
    );
    assert_eq!(reqip_over(([127, 0, 0, 1], port).into()), "127.0.0.1");
}

fn client(server: &Server) -> (Option<i32>, String, String) {
    let port = server.addr("cmd").port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "cmd"])
        .output()
        .expect("run onepoll-client");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_client_runs_every_command_once_and_prints_requests_and_replies() {
    let server = Server::start(&["cmd=0"]);
    let (code, out, err) = client(&server);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    assert!(lines[0].starts_with("C: HELO "));
    assert!(lines[1].starts_with("S: Hello ") && lines[1].ends_with(", pleased to meet you."));
    assert_eq!(lines[2], "C: REQTIME");
    assert_eq!(shape(lines[3]), "S: 99:99:99");
    assert_eq!(lines[4], "C: REQDATE");
    assert_eq!(shape(lines[5]), "S: 9999-99-99");
    assert_eq!(lines[6], "C: ECHO Hello from onepoll-client");
    assert_eq!(lines[7], "S: Hello from onepoll-client");
    assert_eq!(lines[8], "C: REQIP");
    assert_eq!(lines[9], "S: 127.0.0.1");
    assert_eq!(lines[10], "C: BYE");
    assert_eq!(lines[11], "S: See ya later");
}

#[test]
fn the_client_exits_1_when_the_server_answers_err() {
    let server = Server::start(&["--max-conns", "1", "cmd=0"]);
    // A request answered on the held connection proves the server has
    // accepted it before the client connects.
    let mut hold = server.connect("cmd");
    send(&mut hold, b"HELO hold\n");
    let _ = read_lines(&mut hold, 1);
    let (code, out, err) = client(&server);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("S: ERR server full"), "{out}");
}
