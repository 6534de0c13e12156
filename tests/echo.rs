//! echo (RFC 862), the protocol that proves a new protocol is one file and
//! one registry line: served only when named, every byte sent back.

mod common;

use std::io::Write;

use common::{read_exact, Server};

#[test]
fn echo_is_served_only_when_named_and_returns_every_byte() {
    let server = Server::start(&["echo=0", "cmd=0"]);
    let mut stream = server.connect("echo");
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let writer = {
        let mut w = stream.try_clone().unwrap();
        let payload = payload.clone();
        std::thread::spawn(move || w.write_all(&payload).unwrap())
    };
    assert_eq!(read_exact(&mut stream, payload.len()), payload);
    writer.join().unwrap();
    server.wait_for_log("open echo #");

    let plain = Server::start(&[]);
    assert!(
        plain.listening.iter().all(|(p, _, _)| p != "echo"),
        "echo must not be served unless named: {:?}",
        plain.listening
    );
}
