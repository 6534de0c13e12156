//! What the server's log says about a connection, over real sockets: the
//! reason on each `close` line (a clean close, a reset, the protocol's
//! own end, a limit), and the `--trace` of one transform request, pinned
//! by a golden file (`tests/golden/trace-transform.txt`).

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use common::{read_exact, read_to_end, send, Server, TempDir};

/// One transform request: uppercase (action 1) of `hello`.
const UPPERCASE_HELLO: &[u8] = b"\x08\x00\x00\x05hello";

/// Drops `stream` with a reset instead of a FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(stream);
}

/// The `close` line the server logged for connection `#id`.
fn close_line(server: &Server, protocol: &str, id: u64) -> String {
    let needle = format!("close {protocol} #{id} from");
    server.wait_for_log(&needle);
    let log = server.log();
    log.lines()
        .find(|l| l.contains(&needle))
        .map(str::to_string)
        .unwrap_or_default()
}

#[test]
fn a_clean_close_and_a_reset_are_told_apart() {
    let server = Server::start(&["transform=0"]);
    // #1 answers a request, then closes cleanly (FIN).
    let mut clean = server.connect("transform");
    send(&mut clean, UPPERCASE_HELLO);
    assert_eq!(read_exact(&mut clean, 9), b"\x00\x00\x00\x05HELLO");
    drop(clean);
    let line = close_line(&server, "transform", 1);
    assert!(line.ends_with("(closed by peer)"), "{line}");
    // #2 answers a request, then resets (SO_LINGER 0).
    let mut rude = server.connect("transform");
    send(&mut rude, UPPERCASE_HELLO);
    assert_eq!(read_exact(&mut rude, 9), b"\x00\x00\x00\x05HELLO");
    reset(rude);
    let line = close_line(&server, "transform", 2);
    assert!(line.ends_with("(reset by peer)"), "{line}");
    // #3 resets in the middle of a request.
    let mut cut = server.connect("transform");
    send(&mut cut, &UPPERCASE_HELLO[..6]);
    reset(cut);
    let line = close_line(&server, "transform", 3);
    assert!(line.ends_with("(reset by peer)"), "{line}");
    assert!(!server.log().contains("connection lost"));
    // Without --trace (or -vv), the loop traces nothing.
    assert!(!server.log().contains("[onepoll::trace]"));
}

#[test]
fn the_protocols_own_end_is_done_and_a_limit_is_named() {
    let dir = TempDir::new("log-limit");
    let server = Server::start(&["cmd=0", "upload=0", "-d", dir.str(), "--max-files", "1"]);
    let mut cmd = server.connect("cmd");
    send(&mut cmd, b"BYE\n");
    let mut reply = String::new();
    cmd.read_to_string(&mut reply).expect("read");
    assert!(reply.contains("See ya later"), "{reply}");
    drop(cmd);
    let line = close_line(&server, "cmd", 1);
    assert!(line.ends_with("(done)"), "{line}");

    let mut upload = server.connect("upload");
    send(&mut upload, b"\0\0\0\x01a\n\0\0\0\x01b\n");
    assert_eq!(read_to_end(&mut upload), b"AE");
    drop(upload);
    let line = close_line(&server, "upload", 2);
    assert!(line.ends_with("(over --max-files)"), "{line}");
}

/// Masks what changes from run to run in a trace line: ports, times, ids.
fn mask(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(after) = rest.strip_prefix("127.0.0.1:") {
            out.push_str("127.0.0.1:PORT");
            rest = &after[digits(after)..];
        } else if let Some(after) = rest.strip_prefix('#') {
            out.push_str("#N");
            rest = &after[digits(after)..];
        } else if let Some(after) = rest.strip_prefix(" in ") {
            let n = digits(after);
            if n > 0 && after[n..].starts_with(" µs") {
                out.push_str(" in T");
                rest = &after[n..];
            } else {
                out.push_str(" in ");
                rest = after;
            }
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The trace lines of the log, without their timestamps, masked.
fn trace_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("[onepoll::trace] "))
        .map(|(_, text)| mask(text))
        .collect()
}

/// The trace of one transform request over a real socket, from accept to
/// close, matches `tests/golden/trace-transform.txt` (rewrite it with
/// `ONEPOLL_BLESS=1 cargo test --test log`).
#[test]
fn the_trace_of_one_transform_request_is_pinned() {
    let server = Server::start(&["--trace", "transform=0"]);
    let mut client = server.connect("transform");
    send(&mut client, UPPERCASE_HELLO);
    assert_eq!(read_exact(&mut client, 9), b"\x00\x00\x00\x05HELLO");
    drop(client);
    // Wait for the wake-up that closed the connection to end.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    let trace = loop {
        let lines = trace_lines(&server.log());
        let closed = lines
            .iter()
            .position(|l| l.contains("close (closed by peer)"));
        if let Some(at) = closed {
            if lines[at..].iter().any(|l| l.starts_with("wake-up: ")) {
                break lines;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no traced close:\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let got = trace.join("\n") + "\n";
    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/trace-transform.txt"
    );
    if std::env::var_os("ONEPOLL_BLESS").is_some() {
        std::fs::write(golden, &got).expect("write the golden file");
    }
    let want = std::fs::read_to_string(golden).expect("read the golden file");
    assert_eq!(
        got,
        want,
        "the trace changed; the log was:\n{}",
        server.log()
    );
}

/// `-vv` shows the trace too (with everything else).
#[test]
fn very_verbose_implies_the_trace() {
    let server = Server::start(&["-vv", "transform=0"]);
    let mut client = server.connect("transform");
    send(&mut client, UPPERCASE_HELLO);
    assert_eq!(read_exact(&mut client, 9), b"\x00\x00\x00\x05HELLO");
    server.wait_for_log("[readable]: read 9 B (short read), core consumed 9 B");
}

/// A reply larger than the socket takes, to a client that does not read
/// yet: the trace shows the short write, WRITABLE added to the interest,
/// and the writable event after which the rest goes out.
#[test]
fn the_trace_shows_a_full_socket_and_the_writable_event() {
    let server = Server::start(&["--trace", "transform=0"]);
    let mut client = server.connect("transform");
    let len: u32 = 16 << 20;
    let mut request = ((1u32 << 27) | len).to_be_bytes().to_vec();
    request.resize(4 + len as usize, b'a');
    // The server writes while it reads: send from a thread, as the
    // client reads nothing until the socket is full.
    let mut writer = client.try_clone().expect("clone");
    let sender = std::thread::spawn(move || send(&mut writer, &request));
    server.wait_for_log("interest now READABLE|WRITABLE");
    let log = server.log();
    assert!(
        log.contains("(short write)") || log.contains("write WouldBlock"),
        "{log}"
    );
    let reply = read_exact(&mut client, 4 + len as usize);
    assert!(reply[4..].iter().all(|&b| b == b'A'));
    sender.join().expect("sender");
    // Some event since reported the socket writable (with other readiness
    // perhaps: `[readable writable]`).
    let writable = |l: &String| {
        l.split_once(" [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .is_some_and(|(ready, _)| ready.split(' ').any(|r| r == "writable"))
    };
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !trace_lines(&server.log()).iter().any(writable) {
        assert!(std::time::Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
