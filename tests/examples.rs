//! The teaching examples (`examples/`), each run as its own process on
//! 127.0.0.1 with an OS-chosen port, checked over real sockets for what its
//! opening comment promises. Every wait is bounded.
//!
//! `cargo test` builds the examples into `target/<profile>/examples/`; a
//! narrower run (`cargo test --test examples`) does not, so the first test
//! to start one runs `cargo build --examples` (quick when up to date).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running example; killed when dropped.
struct Example {
    child: Child,
    addr: SocketAddr,
    /// The example's stdout, line by line.
    lines: Receiver<String>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example binary `name`, brought up to date first: `cargo test`
/// builds the examples, but a narrower run (`cargo test --test examples`)
/// does not, and would run stale binaries.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/examples-<hash> -> target/<profile>/
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
        cargo.args(["build", "--quiet", "--examples"]);
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
    });
    profile_dir.join("examples").join(name)
}

/// Starts example `name` on port 0 with `args`; waits for its
/// `listening on ADDR` line.
fn start(name: &str, args: &[&str]) -> Example {
    let mut child = Command::new(binary(name))
        .arg("0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut example = Example {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        lines,
    };
    let line = example.wait_line(|l| l.starts_with("listening on "));
    example.addr = line["listening on ".len()..].parse().expect("address");
    example
}

impl Example {
    /// The next stdout line that satisfies `want` (earlier ones are skipped).
    fn wait_line(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("example's stdout");
            if want(&line) {
                return line;
            }
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// Reads one LF-ended line, byte by byte (no read-ahead lost).
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        stream.read_exact(&mut byte).expect("read a line");
        line.push(byte[0]);
    }
    line.pop();
    String::from_utf8(line).unwrap()
}

#[test]
fn echo_returns_every_byte_though_most_writes_are_short() {
    let echo = start("echo", &[]);
    let mut stream = echo.connect();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let writing = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("echo until the close");
    writing.join().unwrap();
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
}

#[test]
fn echo_stops_reading_a_client_that_does_not_read_and_serves_others() {
    let echo = start("echo", &[]);
    let hog = echo.connect();
    hog.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let (mut written, limit) = (0usize, 64 << 20);
    let mut hog_ref = &hog;
    let deadline = Instant::now() + PATIENCE;
    // Write until TCP pushes back: the server stopped reading us.
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        match hog_ref.write(&chunk) {
            Ok(n) => {
                written += n;
                quiet_since = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("write: {e}"),
        }
        assert!(written < limit, "the server read {written} bytes unread");
        assert!(Instant::now() < deadline, "never pushed back");
    }
    let mut other = echo.connect();
    other.write_all(b"still served\n").unwrap();
    assert_eq!(read_line(&mut other), "still served");
}

#[test]
fn echo_answers_a_half_closed_client_then_closes() {
    let echo = start("echo", &[]);
    let mut stream = echo.connect();
    // The client shuts its write side while most of its echo is still on
    // the way back (it reads slowly): all of it must arrive, then the close.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let writing = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let (mut back, mut chunk) = (Vec::new(), [0u8; 4096]);
    loop {
        let n = stream.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        back.extend_from_slice(&chunk[..n]);
        thread::sleep(Duration::from_millis(1));
    }
    writing.join().unwrap();
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
}

#[test]
fn select_chat_relays_lines_split_across_reads_and_several_in_one_read() {
    let chat = start("select_chat", &[]);
    let mut a = chat.connect();
    let mut b = chat.connect();
    assert_eq!(read_line(&mut a), "* #1 joined");
    a.write_all(b"hel").unwrap();
    thread::sleep(Duration::from_millis(100));
    a.write_all(b"lo\r\none\ntwo\n").unwrap();
    for want in ["#0: hello", "#0: one", "#0: two"] {
        assert_eq!(read_line(&mut b), want);
    }
    b.write_all(b"hi a\n").unwrap();
    assert_eq!(
        read_line(&mut a),
        "#1: hi a",
        "the sender hears others, not itself"
    );
    drop(b);
    assert_eq!(read_line(&mut a), "* #1 left");
}

#[test]
fn select_chat_drops_a_reader_that_never_reads_and_the_room_goes_on() {
    let chat = start("select_chat", &[]);
    let mut sender = chat.connect();
    let fast = chat.connect();
    let mut slow = chat.connect();
    // The fast reader counts the sender's lines, in order.
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&heard);
    let reading = thread::spawn(move || {
        let mut lines = BufReader::new(fast).lines();
        loop {
            let line = lines.next().expect("line").expect("read");
            let Some(text) = line.strip_prefix("#0: ") else {
                continue;
            };
            if text == "END" {
                return;
            }
            let n: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(n, counter.load(Ordering::Relaxed), "lines out of order");
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    // Send until the slow one is dropped, never more than 1 MiB ahead of
    // the fast reader, so that only the one that never reads falls behind.
    let pad = "p".repeat(1000);
    let (mut sent, mut dropped) = (0usize, false);
    let deadline = Instant::now() + PATIENCE * 3;
    while !dropped {
        let mut batch = String::new();
        for _ in 0..64 {
            batch.push_str(&format!("{sent} {pad}\n"));
            sent += 1;
        }
        sender.write_all(batch.as_bytes()).unwrap();
        while heard.load(Ordering::Relaxed) + 1024 < sent {
            assert!(Instant::now() < deadline, "the fast reader stalled");
            thread::sleep(Duration::from_millis(1));
        }
        assert!(sent < 200_000, "the slow reader was never dropped");
        while let Ok(line) = chat.lines.try_recv() {
            dropped |= line == "* #2 too slow, dropped";
        }
    }
    sender.write_all(b"END\n").unwrap();
    reading
        .join()
        .expect("the fast reader heard every line in order");
    assert_eq!(heard.load(Ordering::Relaxed), sent);
    // The slow one gets what was in flight, then the close.
    slow.read_to_end(&mut Vec::new()).expect("closed, not hung");
}

/// The next `wake-ups in the last second: N` figure.
fn wakeups(example: &Example) -> u64 {
    let line = example.wait_line(|l| l.starts_with("wake-ups in the last second: "));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn writable_answers_pipelined_requests_in_order_and_huge_ones_whole() {
    let server = start("writable", &[]);
    let mut stream = server.connect();
    stream.write_all(b"5\n3\n").unwrap();
    let mut two = [0u8; 8];
    stream.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"abcdeabc");
    let n = 50_000_000usize;
    stream.write_all(format!("{n}\n").as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.len(), n);
    let pattern = b"abcdefghijklmnopqrstuvwxyz\n";
    assert!(reply
        .iter()
        .zip(pattern.iter().cycle())
        .all(|(a, b)| a == b));
}

/// A client that made one request and read its reply, so that the
/// example's event handler ran (and set the interest) at least once.
fn answered_then_idle(server: &Example) -> TcpStream {
    let mut stream = server.connect();
    stream.write_all(b"3\n").unwrap();
    let mut reply = [0u8; 3];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"abc");
    stream
}

#[test]
fn writable_interest_only_while_bytes_are_left_does_not_spin() {
    let server = start("writable", &[]);
    let mut idle = answered_then_idle(&server);
    wakeups(&server); // the second of the request
    let calm = (0..2).map(|_| wakeups(&server)).max().unwrap();
    assert!(calm <= 2, "{calm} wake-ups a second with nothing to do");
    idle.write_all(b"1\n").unwrap();
    let mut reply = [0u8; 1];
    idle.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"a", "the idle client is still served");
}

#[test]
fn always_writable_spins_and_the_counter_shows_it() {
    let server = start("writable", &["--always-writable"]);
    let mut idle = answered_then_idle(&server);
    let spin = (0..3).map(|_| wakeups(&server)).max().unwrap();
    assert!(spin >= 1000, "only {spin} wake-ups a second");
    idle.write_all(b"2\n").unwrap();
    let mut reply = [0u8; 2];
    idle.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ab", "served all the same");
}

/// A transform request: ACTION in the top 5 bits, LENGTH in the low 27.
fn transform(action: u8, data: &[u8]) -> Vec<u8> {
    let mut v = ((u32::from(action) << 27) | data.len() as u32)
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(data);
    v
}

#[test]
fn sans_io_checks_its_core_then_serves_it_under_any_split() {
    let server = start("sans_io", &[]);
    let mut requests = transform(0x01, b"hello");
    requests.extend(transform(0x08, b"abc"));
    requests.extend(transform(0x03, b"x"));
    requests.extend(transform(0x04, b"hELLO wORLD"));
    let expected: &[u8] = b"\0\0\0\x05HELLO\0\0\0\x03cba\0\0\0\x05error\0\0\0\x0bHello World";
    // Whole, in one write.
    let mut stream = server.connect();
    stream.write_all(&requests).unwrap();
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, expected);
    drop(stream);
    // One byte per write: the same replies.
    let mut stream = server.connect();
    stream.set_nodelay(true).unwrap();
    for byte in &requests {
        stream.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, expected);
}
