//! The upload protocol end to end: the real `onepoll` binary (and
//! `onepoll-client`) on 127.0.0.1, saving into a fresh temporary directory
//! per test. Every wait is bounded; nothing is timed.
//!
//! The tests run as root here, where file permissions do not stop writes,
//! so a directory that cannot be written is made in ways that stop root
//! too: the upload directory removed while the server runs (creating the
//! temporary in the directory it opened fails with ENOENT), `<k>.txt` being a
//! directory (the rename fails with EISDIR), and, where mounting is
//! permitted, a read-only tmpfs (EROFS) and a full one (ENOSPC).

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{read_exact, read_to_end, send, Server, TempDir, PATIENCE};

// ----------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------

/// Every name under `dir`, recursively, relative, sorted; directories end
/// in `/`.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// How many names under `dir` are upload temporaries.
fn temporaries(dir: &Path) -> usize {
    listing(dir).iter().filter(|n| n.ends_with(".tmp")).count()
}

/// Whether any name under `dir` is an upload temporary.
fn has_temporary(dir: &Path) -> bool {
    temporaries(dir) > 0
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A file on the wire: the line count, then `body`, whose LFs it counts.
fn file(body: &[u8]) -> Vec<u8> {
    let lines = body.iter().filter(|&&b| b == b'\n').count() as u32;
    [&lines.to_be_bytes()[..], body].concat()
}

/// The end message: a zero line count.
const END: [u8; 4] = [0; 4];

/// Starts the server serving only upload into `dir`, with `extra` options.
fn upload_server(dir: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["-d", dir.str()];
    args.extend_from_slice(extra);
    args.push("upload=0");
    Server::start(&args)
}

/// Reads one status byte.
fn status(stream: &mut TcpStream) -> u8 {
    read_exact(stream, 1)[0]
}

/// Reads `stream` to its end and asserts that the server sent `want`
/// (statuses) before closing it.
fn expect_end(server: &Server, stream: &mut TcpStream, want: &[u8]) {
    let got = read_to_end(stream);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(want),
        "replies before the close; server log:\n{}",
        server.log()
    );
}

/// Asserts that the server has closed `stream` (after its last status).
fn assert_closed(stream: &mut TcpStream) {
    assert_eq!(read_to_end(stream), b"", "nothing after the status");
}

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

/// The ids of the first `n` upload connections the server logged opening,
/// in order (waits, bounded, for the log to catch up).
fn opened_ids(server: &Server, n: usize) -> Vec<u64> {
    eventually("the log shows every connection", || {
        server.log().matches("open upload #").count() >= n
    });
    server
        .log()
        .lines()
        .filter_map(|l| l.split("open upload #").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .take(n)
        .collect()
}

// ----------------------------------------------------------------------
// Saving
// ----------------------------------------------------------------------

#[test]
fn two_files_then_the_end_message_are_saved_byte_exact_and_answered_a_a_q() {
    let dir = TempDir::new("two");
    let server = upload_server(&dir, &[]);
    let binary: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
    let first = [&b"hello\n"[..], &binary, b"\n", b"dos line\r\n", b"\n"].concat();
    let second = b"\x00\xff\xfe\n".to_vec();
    let mut c = server.connect("upload");
    send(&mut c, &file(&first));
    assert_eq!(status(&mut c), b'A');
    send(&mut c, &[file(&second), END.to_vec()].concat());
    expect_end(&server, &mut c, b"AQ");
    assert_eq!(listing(dir.path()), ["1.txt", "2.txt"]);
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), first);
    assert_eq!(fs::read(dir.join("2.txt")).unwrap(), second);
}

#[test]
fn files_sent_one_byte_per_write_are_saved_the_same() {
    let dir = TempDir::new("bytes");
    let server = upload_server(&dir, &[]);
    let stream = [file(b"a\r\nbc\n"), file(b"\n"), END.to_vec()].concat();
    let mut c = server.connect("upload");
    c.set_nodelay(true).unwrap();
    for byte in &stream {
        send(&mut c, &[*byte]);
    }
    expect_end(&server, &mut c, b"AAQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"a\r\nbc\n");
    assert_eq!(fs::read(dir.join("2.txt")).unwrap(), b"\n");
}

#[test]
fn a_later_connection_overwrites_the_files_of_an_earlier_one() {
    let dir = TempDir::new("overwrite");
    let server = upload_server(&dir, &[]);
    for body in [&b"first\n"[..], b"second\n"] {
        let mut c = server.connect("upload");
        send(&mut c, &[file(body), END.to_vec()].concat());
        expect_end(&server, &mut c, b"AQ");
    }
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"second\n");
    assert_eq!(listing(dir.path()), ["1.txt"]);
}

#[test]
fn with_upload_fsync_files_are_saved_the_same() {
    let dir = TempDir::new("fsync");
    let server = upload_server(&dir, &["--upload-fsync"]);
    let mut c = server.connect("upload");
    send(&mut c, &[file(b"durable\n"), END.to_vec()].concat());
    expect_end(&server, &mut c, b"AQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"durable\n");
    assert_eq!(listing(dir.path()), ["1.txt"]);
}

#[test]
fn zero_lines_first_is_answered_q_and_saves_nothing() {
    let dir = TempDir::new("zero");
    let server = upload_server(&dir, &[]);
    let mut c = server.connect("upload");
    send(&mut c, &END);
    expect_end(&server, &mut c, b"Q");
    assert!(listing(dir.path()).is_empty());
}

// ----------------------------------------------------------------------
// Half-close, drops, timeouts, shutdown
// ----------------------------------------------------------------------

#[test]
fn a_client_that_half_closes_after_the_final_count_still_gets_a_and_q() {
    let dir = TempDir::new("halfclose");
    let server = upload_server(&dir, &[]);
    let mut c = server.connect("upload");
    send(&mut c, &[file(b"x\ny\n"), END.to_vec()].concat());
    c.shutdown(Shutdown::Write).unwrap();
    expect_end(&server, &mut c, b"AQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"x\ny\n");

    // Without the end message: the file's A, then the server closes.
    let mut c = server.connect("upload");
    send(&mut c, &file(b"z\n"));
    c.shutdown(Shutdown::Write).unwrap();
    expect_end(&server, &mut c, b"A");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"z\n");
}

/// Starts a file on a new connection to `server` whose `1.txt` holds
/// `old`, and waits until its temporary is on disk.
fn begin_file(server: &Server, dir: &TempDir) -> TcpStream {
    let mut c = server.connect("upload");
    send(&mut c, &[&3u32.to_be_bytes()[..], b"one\ntw"].concat());
    eventually("the temporary appears", || has_temporary(dir.path()));
    c
}

#[test]
fn a_drop_mid_file_leaves_no_temporary_and_no_change() {
    let dir = TempDir::new("drop");
    fs::write(dir.join("1.txt"), b"old\n").unwrap();
    let server = upload_server(&dir, &[]);

    // A FIN mid-file.
    let c = begin_file(&server, &dir);
    drop(c);
    server.wait_for_log("input ended");
    eventually("the temporary goes", || !has_temporary(dir.path()));
    assert_eq!(listing(dir.path()), ["1.txt"]);
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"old\n");

    // A reset mid-file.
    let c = begin_file(&server, &dir);
    reset(c);
    eventually("the temporary goes after a reset", || {
        !has_temporary(dir.path())
    });
    assert_eq!(listing(dir.path()), ["1.txt"]);
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"old\n");

    // A half-close mid-file: no status, the close, and no trace.
    let mut c = begin_file(&server, &dir);
    c.shutdown(Shutdown::Write).unwrap();
    expect_end(&server, &mut c, b"");
    eventually("the temporary goes after a half-close", || {
        !has_temporary(dir.path())
    });
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"old\n");

    // The server still saves.
    let mut c = server.connect("upload");
    send(&mut c, &[file(b"new\n"), END.to_vec()].concat());
    expect_end(&server, &mut c, b"AQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"new\n");
}

#[test]
fn an_idle_timeout_mid_file_leaves_no_temporary() {
    let dir = TempDir::new("idle");
    let server = upload_server(&dir, &["--idle-timeout", "1"]);
    let mut c = begin_file(&server, &dir);
    expect_end(&server, &mut c, b"");
    eventually("the temporary goes", || !has_temporary(dir.path()));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_file_half_received_at_shutdown_is_finished_and_answered() {
    let dir = TempDir::new("shutdown");
    let mut server = upload_server(&dir, &[]);
    let mut c = begin_file(&server, &dir);
    server.signal(libc::SIGTERM);
    server.wait_for_log("shutting down");
    send(&mut c, b"o\nthree\n");
    expect_end(&server, &mut c, b"A");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"one\ntwo\nthree\n");
    drop(c);
    assert!(server.wait_exit().success());
    assert!(!has_temporary(dir.path()));
}

// ----------------------------------------------------------------------
// Limits and faults
// ----------------------------------------------------------------------

#[test]
fn a_file_over_max_upload_is_answered_e_and_closed_and_others_go_on() {
    let dir = TempDir::new("max");
    let server = upload_server(&dir, &["--max-upload", "1000"]);

    // Another client is mid-file while the first is refused.
    let mut other = server.connect("upload");
    send(&mut other, &[&2u32.to_be_bytes()[..], b"first\n"].concat());

    // E as soon as the limit is passed, before the line is even complete.
    let mut big = server.connect("upload");
    send(&mut big, &[&1u32.to_be_bytes()[..], &[b'x'; 1001]].concat());
    assert_eq!(status(&mut big), b'E');
    assert_closed(&mut big);
    server.wait_for_log("larger than --max-upload (1000 bytes)");

    // A file of exactly the limit is saved.
    send(&mut other, b"second\n");
    assert_eq!(status(&mut other), b'A');
    let mut exact = vec![b'y'; 999];
    exact.push(b'\n');
    send(&mut other, &[file(&exact), END.to_vec()].concat());
    expect_end(&server, &mut other, b"AQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"first\nsecond\n");
    assert_eq!(fs::read(dir.join("2.txt")).unwrap(), exact);
    assert_eq!(listing(dir.path()), ["1.txt", "2.txt"]);

    // And a new client is served.
    let mut fresh = server.connect("upload");
    send(&mut fresh, &[file(b"z\n"), END.to_vec()].concat());
    expect_end(&server, &mut fresh, b"AQ");
}

#[test]
fn an_upload_directory_removed_under_the_server_is_answered_e_and_never_replaced() {
    // Root ignores permission bits, but not a removed directory: the
    // directory the server opened at start is gone (ENOENT for a new
    // file in it), and what is put at its path later is not it.
    let tmp = TempDir::new("notdir");
    let dir = tmp.join("uploads");
    let server = Server::start(&["-d", dir.to_str().unwrap(), "upload=0"]);
    fs::remove_dir(&dir).unwrap();
    fs::write(&dir, b"not a directory").unwrap();

    let mut c = server.connect("upload");
    send(&mut c, &file(b"lost\n"));
    assert_eq!(status(&mut c), b'E');
    assert_closed(&mut c);
    server.wait_for_log("file 1 refused, cannot create");
    assert!(
        server.log().contains("No such file or directory"),
        "{}",
        server.log()
    );

    // A new directory at that path is not the one opened at start: the
    // server never writes there (it resolves the path once).
    fs::remove_file(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    let mut c = server.connect("upload");
    send(&mut c, &[file(b"elsewhere\n"), END.to_vec()].concat());
    expect_end(&server, &mut c, b"E");
    assert!(listing(&dir).is_empty());
}

#[test]
fn a_saved_name_taken_by_a_directory_is_answered_e_with_no_temporary_left() {
    let dir = TempDir::new("isdir");
    fs::create_dir(dir.join("2.txt")).unwrap();
    let server = upload_server(&dir, &[]);
    let mut c = server.connect("upload");
    send(&mut c, &[file(b"one\n"), file(b"two\n")].concat());
    expect_end(&server, &mut c, b"AE");
    server.wait_for_log("file 2 refused, cannot rename into place");
    assert_eq!(listing(dir.path()), ["1.txt", "2.txt/"]);
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"one\n");
}

/// Runs `onepoll ARGS` expecting it to exit by itself (bounded):
/// `(exit code, stdout, stderr)`.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onepoll");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("onepoll {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_upload_directory_that_cannot_be_created_is_one_line_and_exit_1() {
    // Under a regular file, not even root can make a directory.
    let tmp = TempDir::new("nocreate");
    let blocker = tmp.join("a-file");
    fs::write(&blocker, b"").unwrap();
    for dir in [blocker.join("uploads"), blocker.clone()] {
        let dir = dir.to_str().unwrap();
        let (code, stdout, stderr) = run_to_exit(&["-b", "127.0.0.1", "-d", dir, "upload=0"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stdout, "");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot create upload directory {dir}")),
            "{stderr}"
        );
    }
    // A missing directory that can be created is.
    let dir = tmp.join("new/deeper");
    let server = Server::start(&["-d", dir.to_str().unwrap(), "upload=0"]);
    assert!(dir.is_dir());
    drop(server);
}

#[test]
fn temporaries_a_crash_left_are_removed_at_start_and_nothing_else() {
    let dir = TempDir::new("stale");
    let outside = TempDir::new("stale-outside");
    fs::write(outside.join(".9.txt.9.tmp"), b"outside").unwrap();
    fs::write(dir.join(".1.txt.7.tmp"), b"half").unwrap();
    fs::write(dir.join(".2.txt.7.3.tmp"), b"half").unwrap();
    fs::write(dir.join("1.txt"), b"kept\n").unwrap();
    fs::write(dir.join(".notes.tmp"), b"not ours").unwrap();
    // Temporaries live at the top in both layouts: the sweep never
    // descends into a directory, nor follows a link, nor removes either.
    let conn_dir = dir.join("20261121T210501Z-c3");
    fs::create_dir(&conn_dir).unwrap();
    fs::write(conn_dir.join(".2.txt.3.tmp"), b"theirs").unwrap();
    fs::create_dir(dir.join(".3.txt.7.tmp")).unwrap();
    std::os::unix::fs::symlink(outside.join(".9.txt.9.tmp"), dir.join(".4.txt.7.tmp")).unwrap();
    let server = upload_server(&dir, &[]);
    server.wait_for_log("removed 2 stale upload temporaries");
    assert_eq!(
        listing(dir.path()),
        [
            ".3.txt.7.tmp/",
            ".4.txt.7.tmp",
            ".notes.tmp",
            "1.txt",
            "20261121T210501Z-c3/",
            "20261121T210501Z-c3/.2.txt.3.tmp"
        ]
    );
    assert_eq!(fs::read(outside.join(".9.txt.9.tmp")).unwrap(), b"outside");
}

// ----------------------------------------------------------------------
// Layout and concurrency
// ----------------------------------------------------------------------

/// Whether `name` is `<YYYYMMDD>T<hhmmss>Z-c<id>`.
fn is_conn_dir_for(name: &str, id: u64) -> bool {
    let b = name.as_bytes();
    b.len() > 18
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && &name[15..18] == "Z-c"
        && name[18..] == id.to_string()
}

#[test]
fn per_connection_layout_keeps_each_connection_in_its_own_directory() {
    let dir = TempDir::new("perconn");
    let server = upload_server(&dir, &["--upload-layout", "per-connection"]);
    for tag in [&b"a"[..], b"b"] {
        let mut c = server.connect("upload");
        let one = [tag, b"1\n"].concat();
        let two = [tag, b"2\n"].concat();
        send(&mut c, &[file(&one), file(&two), END.to_vec()].concat());
        expect_end(&server, &mut c, b"AAQ");
    }
    // A connection that ends before a file leaves no directory.
    let mut c = server.connect("upload");
    send(&mut c, &END);
    expect_end(&server, &mut c, b"Q");

    let ids = opened_ids(&server, 3);
    let mut dirs: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for ((name, id), tag) in dirs.iter().zip(&ids).zip(["a", "b"]) {
        assert!(is_conn_dir_for(name, *id), "{name} for #{id}");
        let sub = dir.join(name);
        assert_eq!(listing(&sub), ["1.txt", "2.txt"]);
        assert_eq!(
            fs::read(sub.join("1.txt")).unwrap(),
            format!("{tag}1\n").as_bytes()
        );
        assert_eq!(
            fs::read(sub.join("2.txt")).unwrap(),
            format!("{tag}2\n").as_bytes()
        );
    }
}

/// The k-th file of client `t` in the concurrency tests: about 100 KiB of
/// lines that say whose they are.
fn client_file(t: usize, k: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for line in 0..2000 {
        writeln!(
            body,
            "client {t} file {k} line {line:05} {}",
            "x".repeat(24)
        )
        .unwrap();
    }
    body
}

/// Sends `files` over one connection in small pieces, then the end
/// message; returns the statuses.
fn upload_in_pieces(addr: std::net::SocketAddr, files: &[Vec<u8>]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut wire: Vec<u8> = files.iter().flat_map(|f| file(f)).collect();
    wire.extend_from_slice(&END);
    for piece in wire.chunks(7 * 1024) {
        send(&mut c, piece);
    }
    read_to_end(&mut c)
}

const CLIENTS: usize = 8;
const FILES: usize = 3;

#[test]
fn concurrent_clients_in_per_connection_layout_each_get_their_own_files() {
    let dir = TempDir::new("concurrent");
    let server = upload_server(&dir, &["--upload-layout", "per-connection"]);
    let addr = server.addr("upload");
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            thread::spawn(move || {
                let files: Vec<Vec<u8>> = (1..=FILES).map(|k| client_file(t, k)).collect();
                upload_in_pieces(addr, &files)
            })
        })
        .collect();
    for w in workers {
        let got = w.join().unwrap();
        assert_eq!(got, b"AAAQ", "server log:\n{}", server.log());
    }
    let dirs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), CLIENTS);
    let mut owners = Vec::new();
    for sub in dirs {
        assert_eq!(listing(&sub), ["1.txt", "2.txt", "3.txt"]);
        let first = fs::read(sub.join("1.txt")).unwrap();
        let t = (0..CLIENTS)
            .find(|&t| first == client_file(t, 1))
            .expect("1.txt is one client's first file, whole");
        for k in 2..=FILES {
            assert_eq!(
                fs::read(sub.join(format!("{k}.txt"))).unwrap(),
                client_file(t, k)
            );
        }
        owners.push(t);
    }
    owners.sort();
    assert_eq!(owners, (0..CLIENTS).collect::<Vec<_>>());
}

#[test]
fn concurrent_clients_in_flat_layout_never_leave_a_torn_or_mixed_file() {
    let dir = TempDir::new("flatmix");
    let server = upload_server(&dir, &[]);
    let addr = server.addr("upload");
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            thread::spawn(move || {
                let files: Vec<Vec<u8>> = (1..=FILES).map(|k| client_file(t, k)).collect();
                upload_in_pieces(addr, &files)
            })
        })
        .collect();
    for w in workers {
        let got = w.join().unwrap();
        assert_eq!(got, b"AAAQ", "server log:\n{}", server.log());
    }
    assert_eq!(listing(dir.path()), ["1.txt", "2.txt", "3.txt"]);
    for k in 1..=FILES {
        let saved = fs::read(dir.join(&format!("{k}.txt"))).unwrap();
        assert!(
            (0..CLIENTS).any(|t| saved == client_file(t, k)),
            "{k}.txt is one client's file {k}, whole"
        );
    }
}

// ----------------------------------------------------------------------
// Memory
// ----------------------------------------------------------------------

#[test]
fn a_256_mib_upload_keeps_server_memory_flat() {
    const MIB: usize = 1 << 20;
    const TOTAL_MIB: usize = 256;
    // Growth allowed over the whole upload: a few buffers, not the file.
    const BOUND_KIB: u64 = 8 * 1024;
    let dir = TempDir::new("big");
    let server = upload_server(&dir, &[]);
    // One MiB of 64-byte lines, sent TOTAL_MIB times.
    let line = format!("{}\n", "l".repeat(63));
    let chunk = line.repeat(MIB / line.len()).into_bytes();
    assert_eq!(chunk.len(), MIB);
    let lines = (MIB / line.len() * TOTAL_MIB) as u32;

    let mut c = server.connect("upload");
    send(
        &mut c,
        &[file(b"warm up\n"), lines.to_be_bytes().to_vec()].concat(),
    );
    assert_eq!(status(&mut c), b'A');
    let before = server.rss_kib();
    let mut peak = before;
    for i in 0..TOTAL_MIB {
        send(&mut c, &chunk);
        if i % 8 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    assert_eq!(status(&mut c), b'A');
    peak = peak.max(server.rss_kib());
    eprintln!(
        "server RSS: {before} KiB before, {peak} KiB at most during a {TOTAL_MIB} MiB upload"
    );
    assert!(
        peak - before < BOUND_KIB,
        "RSS grew from {before} to {peak} KiB"
    );
    send(&mut c, &END);
    expect_end(&server, &mut c, b"Q");

    let mut saved = fs::File::open(dir.join("2.txt")).unwrap();
    assert_eq!(saved.metadata().unwrap().len(), (TOTAL_MIB * MIB) as u64);
    let mut tail = vec![0; line.len()];
    saved.seek(SeekFrom::End(-(line.len() as i64))).unwrap();
    saved.read_exact(&mut tail).unwrap();
    assert_eq!(tail, line.as_bytes());
}

// ----------------------------------------------------------------------
// The client binary
// ----------------------------------------------------------------------

/// Runs `onepoll-client -h 127.0.0.1 -p PORT upload ARGS` with `stdin`:
/// `(exit code, stdout, stderr)`. Bounded by the client's own timeouts.
fn client(port: u16, args: &[&str], stdin: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "upload"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onepoll-client");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let deadline = Instant::now() + PATIENCE * 2;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("onepoll-client {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    }
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_client_sends_files_and_stdin_over_one_connection() {
    let dir = TempDir::new("client");
    let src = TempDir::new("client-src");
    let server = upload_server(&dir, &[]);
    let port = server.addr("upload").port();
    let a = src.join("a.txt");
    let b = src.join("b.bin");
    fs::write(&a, b"alpha\r\nbeta\n").unwrap();
    fs::write(&b, b"\x00\xff no final LF").unwrap();
    let (code, stdout, stderr) = client(
        port,
        &[a.to_str().unwrap(), "-", b.to_str().unwrap()],
        b"from stdin\n",
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].ends_with("a.txt: A, saved as 1.txt (2 line(s), 12 byte(s))"));
    assert_eq!(lines[1], "-: A, saved as 2.txt (1 line(s), 11 byte(s))");
    assert!(
        lines[2].ends_with("b.bin: A, saved as 3.txt (1 line(s), 15 byte(s), LF added)"),
        "{stdout}"
    );
    assert_eq!(lines[3], "Q, done: 3 file(s) saved");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"alpha\r\nbeta\n");
    assert_eq!(fs::read(dir.join("2.txt")).unwrap(), b"from stdin\n");
    assert_eq!(
        fs::read(dir.join("3.txt")).unwrap(),
        b"\x00\xff no final LF\n"
    );
    server.wait_for_log("close upload #1 ");
    assert_eq!(
        server.log().matches("open upload #").count(),
        1,
        "one connection"
    );
}

#[test]
fn the_client_with_no_file_prompts_for_counts_and_lines() {
    let dir = TempDir::new("prompt");
    let server = upload_server(&dir, &[]);
    let port = server.addr("upload").port();
    let (code, stdout, stderr) = client(port, &[], b"2\nfirst\nsecond\n1\nthird\n0\n");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout
        .starts_with("Number of lines in file 1 (0 to end): line 1: line 2: A, saved as 1.txt\n"));
    assert!(stdout.ends_with("Q, done: 2 file(s) saved\n"), "{stdout}");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"first\nsecond\n");
    assert_eq!(fs::read(dir.join("2.txt")).unwrap(), b"third\n");
}

#[test]
fn the_client_exits_1_when_the_server_answers_e() {
    let dir = TempDir::new("client-e");
    let src = TempDir::new("client-e-src");
    let server = upload_server(&dir, &["--max-upload", "100000"]);
    let port = server.addr("upload").port();
    let small = src.join("small.txt");
    let big = src.join("big.txt");
    fs::write(&small, b"fits\n").unwrap();
    // 32 MiB against a 100 kB limit: the client stops at the early E.
    let line = format!("{}\n", "b".repeat(1023));
    fs::write(&big, line.repeat(32 * 1024)).unwrap();
    let (code, stdout, stderr) = client(
        port,
        &[
            small.to_str().unwrap(),
            big.to_str().unwrap(),
            small.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("small.txt: A, saved as 1.txt"), "{stdout}");
    assert!(
        stdout.contains("big.txt: E, refused by the server"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        2,
        "nothing sent after the E: {stdout}"
    );
    assert!(stderr.contains("E for"), "{stderr}");
    assert_eq!(listing(dir.path()), ["1.txt"]);
}

#[test]
fn the_client_exits_1_when_the_server_cannot_be_reached() {
    // A port that was free a moment ago; nothing listens on it now.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stdout, stderr) = client(port, &["/dev/null"], b"");
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

// ----------------------------------------------------------------------
// Filesystems that refuse writes (need mount: root, outside a sandbox)
// ----------------------------------------------------------------------

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    mount_point: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options`, or says why not and returns `None`.
    fn mount(label: &str, options: &str) -> Option<Tmpfs> {
        let mount_point = TempDir::new(label);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs", mount_point.str()])
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { mount_point }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}); see docs-upload.md for the manual check",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path())
            .status();
    }
}

#[test]
fn a_full_filesystem_is_answered_e_with_no_temporary_and_the_server_goes_on() {
    let Some(fs1m) = Tmpfs::mount("enospc", "size=1m") else {
        return;
    };
    let dir = &fs1m.mount_point;
    fs::write(dir.join("1.txt"), b"old\n").unwrap();
    let server = upload_server(dir, &[]);

    // Another client is mid-file when the disk fills.
    let mut other = server.connect("upload");
    send(&mut other, &[&2u32.to_be_bytes()[..], b"small\n"].concat());

    let line = format!("{}\n", "f".repeat(1023));
    let body = line.repeat(2 * 1024); // 2 MiB on a 1 MiB filesystem.
    let mut c = server.connect("upload");
    send(&mut c, &file(body.as_bytes()));
    assert_eq!(status(&mut c), b'E');
    assert_closed(&mut c);
    server.wait_for_log("No space left on device");
    eventually("the refused file's temporary goes", || {
        temporaries(dir.path()) == 1
    });
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"old\n");

    // Space is back: the other client finishes.
    send(&mut other, b"file\n");
    send(&mut other, &END);
    expect_end(&server, &mut other, b"AQ");
    assert_eq!(fs::read(dir.join("1.txt")).unwrap(), b"small\nfile\n");
    drop(server);
}

#[test]
fn a_read_only_filesystem_is_answered_e() {
    let Some(ro) = Tmpfs::mount("erofs", "ro,size=64k") else {
        return;
    };
    let server = upload_server(&ro.mount_point, &[]);
    server.wait_for_log("is not writable: uploads will be answered E");
    let mut c = server.connect("upload");
    send(&mut c, &file(b"nowhere\n"));
    assert_eq!(status(&mut c), b'E');
    assert_closed(&mut c);
    server.wait_for_log("Read-only file system");
    drop(server);
}
