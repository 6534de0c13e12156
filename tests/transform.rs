//! transform over real sockets: pipelining, splits, half-close, errors in
//! step, streaming memory, and a client that does not read.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use common::{read_exact, read_to_end, send, Server};
use onepoll::proto::rng::Rng;
use onepoll::proto::transform::{encode_header, Action, Table};

fn request(code: u8, data: &[u8]) -> Vec<u8> {
    let mut v = encode_header(code, data.len() as u32).to_vec();
    v.extend_from_slice(data);
    v
}

fn response(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// Reads one response (bounded by the stream's timeout).
fn read_response(stream: &mut TcpStream) -> Vec<u8> {
    let header = read_exact(stream, 4);
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    read_exact(stream, len)
}

fn expected(code: u8, data: &[u8]) -> Vec<u8> {
    match Table::Y2021.action(code) {
        Some(action) => {
            let mut d = data.to_vec();
            action.apply(&mut d, &mut Rng::from_seed(0));
            d
        }
        None => b"error".to_vec(),
    }
}

#[test]
fn ten_thousand_pipelined_requests_in_one_write() {
    let server = Server::start(&["transform=0"]);
    let mut stream = server.connect("transform");
    let codes = [0x01u8, 0x02, 0x04, 0x08, 0x03];
    let mut wire = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..10_000usize {
        let code = codes[i % codes.len()];
        let data = format!("Request number {i} of ten thousand").into_bytes();
        wire.extend(request(code, &data));
        wanted.extend(response(&expected(code, &data)));
    }
    // Write from a thread while this one reads: neither side may wait for
    // the other.
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&wire).unwrap());
    let got = read_exact(&mut stream, wanted.len());
    sender.join().unwrap();
    assert!(got == wanted, "replies differ from the expected stream");
}

#[test]
fn half_close_still_gets_every_reply() {
    let server = Server::start(&["transform=0"]);
    let mut stream = server.connect("transform");
    let mut wire = request(0x01, b"first");
    wire.extend(request(0x08, b"second"));
    wire.extend(request(0x10, b""));
    send(&mut stream, &wire);
    stream.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut stream);
    let mut wanted = response(b"FIRST");
    wanted.extend(response(b"dnoces"));
    wanted.extend(response(b""));
    assert_eq!(got, wanted, "every reply, then the server closes");
}

#[test]
fn invalid_action_is_answered_error_and_the_stream_stays_in_step() {
    let server = Server::start(&["transform=0"]);
    let mut stream = server.connect("transform");
    let mut wire = request(0x03, b"discard me, all of me");
    wire.extend(request(0x00, b""));
    wire.extend(request(0x1f, &[0xff; 1000]));
    wire.extend(request(0x04, b"still in step"));
    send(&mut stream, &wire);
    assert_eq!(read_response(&mut stream), b"error");
    assert_eq!(read_response(&mut stream), b"error");
    assert_eq!(read_response(&mut stream), b"error");
    assert_eq!(read_response(&mut stream), b"Still In Step");
}

#[test]
fn random_splits_and_pauses_give_the_same_replies() {
    let server = Server::start(&["transform=0"]);
    let mut rng = Rng::from_seed(0x5eed);
    let mut wire = Vec::new();
    let mut wanted = Vec::new();
    for i in 0..300u64 {
        let code = [0x01u8, 0x02, 0x04, 0x08, 0x06][(i % 5) as usize];
        let len = rng.below(300) as usize;
        let data: Vec<u8> = (0..len).map(|_| b'A' + rng.below(58) as u8).collect();
        wire.extend(request(code, &data));
        wanted.extend(response(&expected(code, &data)));
    }
    let mut stream = server.connect("transform");
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut at = 0;
        let mut rng = Rng::from_seed(7);
        while at < wire.len() {
            let n = (1 + rng.below(40) as usize).min(wire.len() - at);
            writer.write_all(&wire[at..at + n]).unwrap();
            at += n;
            if rng.below(8) == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let got = read_exact(&mut stream, wanted.len());
    sender.join().unwrap();
    assert!(got == wanted, "replies differ under random splits");
}

#[test]
fn streamed_64_mib_uppercase_keeps_server_memory_flat() {
    const LEN: usize = 64 << 20;
    let server = Server::start(&["transform=0"]);
    let rss_before = server.rss_kib();
    let mut stream = server.connect("transform");
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&encode_header(0x01, LEN as u32)).unwrap();
        let mut block = vec![0u8; 64 * 1024];
        for i in 0..LEN / block.len() {
            for (j, b) in block.iter_mut().enumerate() {
                *b = b"abcdefghijklmnopqrstuvwxyz0123456789 "[(i * 7 + j) % 37];
            }
            writer.write_all(&block).unwrap();
        }
    });
    let header = read_exact(&mut stream, 4);
    assert_eq!(
        header,
        (LEN as u32).to_be_bytes(),
        "the header goes out first"
    );
    let (mut got, mut want) = (DefaultHasher::new(), DefaultHasher::new());
    let mut block = vec![0u8; 64 * 1024];
    let mut peak_kib = 0;
    for i in 0..LEN / block.len() {
        stream.read_exact(&mut block).unwrap();
        got.write(&block);
        let expected: Vec<u8> = (0..block.len())
            .map(|j| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "[(i * 7 + j) % 37])
            .collect();
        want.write(&expected);
        if i % 64 == 0 {
            peak_kib = peak_kib.max(server.rss_kib());
        }
    }
    sender.join().unwrap();
    assert_eq!(got.finish(), want.finish(), "streamed data differs");
    let growth = peak_kib.saturating_sub(rss_before);
    assert!(
        growth < 16 * 1024,
        "server RSS grew {growth} KiB while streaming 64 MiB: not flat"
    );
}

#[test]
fn a_client_that_does_not_read_is_held_back_then_gets_everything() {
    let server = Server::start(&["transform=0"]);
    let rss_before = server.rss_kib();
    let mut stream = server.connect("transform");
    // 32 MiB of replies asked for, none read yet.
    let data = vec![b'q'; 1 << 20];
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for _ in 0..32 {
            writer.write_all(&request(0x01, &data)).unwrap();
        }
    });
    thread::sleep(Duration::from_millis(800));
    let growth = server.rss_kib().saturating_sub(rss_before);
    assert!(
        growth < 8 * 1024,
        "server buffered {growth} KiB for a client that does not read"
    );
    for _ in 0..32 {
        let reply = read_response(&mut stream);
        assert!(reply.len() == 1 << 20 && reply.iter().all(|&b| b == b'Q'));
    }
    sender.join().unwrap();
}

/// The loop lends its reply buffer to one connection at a time: replies the
/// kernel could not take must stay with their connection, never reach the
/// next one served, and arrive whole once their client reads.
#[test]
fn unsent_replies_stay_with_their_connection_while_others_are_served() {
    let server = Server::start(&["transform=0"]);
    let mut slow = server.connect("transform");
    // 8 MiB of replies, each request its own letter, none read yet.
    let letters = b"abcdefgh";
    let mut writer = slow.try_clone().unwrap();
    let sender = thread::spawn(move || {
        for &letter in letters {
            writer
                .write_all(&request(0x01, &vec![letter; 1 << 20]))
                .unwrap();
        }
    });
    thread::sleep(Duration::from_millis(300));
    let mut quick = server.connect("transform");
    for i in 0..200 {
        let data = format!("quick request {i}").into_bytes();
        send(&mut quick, &request(0x02, &data));
        assert_eq!(read_response(&mut quick), data.to_ascii_lowercase());
    }
    for &letter in letters {
        let reply = read_response(&mut slow);
        let upper = letter.to_ascii_uppercase();
        assert!(
            reply.len() == 1 << 20 && reply.iter().all(|&b| b == upper),
            "the reply to the {} request came back wrong",
            letter as char
        );
    }
    sender.join().unwrap();
}

#[test]
fn reverse_and_shuffle_are_refused_past_max_buffer_and_the_budget_comes_back() {
    let server = Server::start(&["--max-buffer", "1000", "transform=0"]);
    let mut stream = server.connect("transform");
    send(&mut stream, &request(0x08, &[b'x'; 1001]));
    assert_eq!(read_response(&mut stream), b"error");
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        send(&mut stream, &request(0x08, &data));
        let mut reversed = data.clone();
        reversed.reverse();
        assert_eq!(read_response(&mut stream), reversed);
        send(&mut stream, &request(0x10, &data));
        let shuffled = read_response(&mut stream);
        assert!(Action::Shuffle.is_valid_response(&data, &shuffled));
    }
}

#[test]
fn the_client_sends_pipelined_and_prints_in_order() {
    let server = Server::start(&["transform=0"]);
    let port = server.addr("transform").port().to_string();
    let dir = std::env::temp_dir().join(format!("onepoll-tc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("requests.txt");
    std::fs::write(
        &file,
        "upper hello\nreverse abc\ntitle-case hELLO wORLD\nlower MiXeD\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "transform", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "HELLO\ncba\nHello World\nmixed\n"
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "transform", "0x03", "x"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "an error reply is exit 1");
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "error\n");
}
