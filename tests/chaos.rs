//! `onepoll-bench chaos` against the real `onepoll` binary, one protocol
//! per test: every misbehaviour in turn — slow readers, trickles, resets,
//! garbage, half-open connections — and afterwards the server has closed
//! every connection (its descriptors are back to the count before), left
//! no upload temporary, and still answers. Every wait is bounded; nothing
//! is timed.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TempDir, PATIENCE};

/// Runs `onepoll-bench ARGS -q` to completion: (exit code, its line).
fn bench(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-bench"))
        .args(args)
        .arg("-q")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// The number before `word` in `line` (`"3 hung"` -> 3).
fn count_before(line: &str, word: &str) -> u64 {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before {word:?} in {line}"))
}

/// Where each of the server's descriptors points.
fn fd_targets(server: &Server) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until the server's descriptors are back to `baseline`.
fn wait_fds(server: &Server, baseline: usize) {
    let deadline = Instant::now() + PATIENCE;
    while server.open_fds() != baseline {
        assert!(
            Instant::now() < deadline,
            "descriptors {} != {baseline} before the run: {:?}",
            server.open_fds(),
            fd_targets(server),
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A few well-behaved (if slow) connections, every reply checked.
fn clean_run(proto: &str, port: &str) -> (Option<i32>, String) {
    bench(&[
        "chaos",
        "--proto",
        proto,
        "-p",
        port,
        "-c",
        "2",
        "-n",
        "6",
        "--misbehave",
        "slow,trickle",
        "--pause",
        "0.05",
    ])
}

/// The server's descriptor count once it has stayed the same for a while.
fn settled_fds(server: &Server) -> usize {
    let deadline = Instant::now() + PATIENCE;
    let mut last = server.open_fds();
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = server.open_fds();
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

fn survives_chaos(proto: &str, extra: &[&str]) {
    let dir = TempDir::new(proto);
    let listen = format!("{proto}=0");
    let server = Server::start(&["-d", dir.0.to_str().unwrap(), &listen]);
    let port = server.addr(proto).port().to_string();
    // The baseline once the server has served once and settled (it opens
    // its spare descriptor after logging that it listens).
    let (code, line) = clean_run(proto, &port);
    assert_eq!(code, Some(0), "{line}");
    let baseline = settled_fds(&server);
    let mut args = vec![
        "chaos",
        "--proto",
        proto,
        "-p",
        &port,
        "-c",
        "10",
        "-P",
        "8",
        "-d",
        "1.5",
        "--pause",
        "0.2",
        "--hang-limit",
        "10",
    ];
    args.extend_from_slice(extra);
    let (code, line) = bench(&args);
    assert_eq!(code, Some(0), "{line}");
    assert_eq!(count_before(&line, "errors"), 0, "{line}");
    assert_eq!(count_before(&line, "disconnects"), 0, "{line}");
    assert_eq!(count_before(&line, "hung"), 0, "{line}");
    assert!(count_before(&line, "expected drops") > 0, "{line}");
    wait_fds(&server, baseline);
    let temps: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temporaries left: {temps:?}");
    // It still serves: a clean, checked run.
    let (code, line) = clean_run(proto, &port);
    assert_eq!(code, Some(0), "{line}");
    assert!(!server.log().contains("panic"), "{}", server.log());
}

#[test]
fn transform_survives_chaos() {
    survives_chaos("transform", &["-s", "100000"]);
}

#[test]
fn tne_survives_chaos() {
    survives_chaos("tne", &[]);
}

#[test]
fn cmd_survives_chaos() {
    survives_chaos("cmd", &[]);
}

#[test]
fn chat_survives_chaos() {
    survives_chaos("chat", &[]);
}

#[test]
fn upload_survives_chaos() {
    survives_chaos("upload", &["--lines", "50", "-s", "1000"]);
}
