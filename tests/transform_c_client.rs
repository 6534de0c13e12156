//! A transform client written in C the way the course's students write it
//! (getopt, connect, send every request, then read every response:
//! tests/c/transform_client.c), compiled here with `cc`, against a server
//! speaking each action table. Skipped, saying so, where `cc` is missing.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::Server;
use onepoll::proto::transform::Action;

/// Builds the C client once per test binary; `None` when there is no `cc`.
fn c_client() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/transform_client.c");
            let binary = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("transform_client");
            let built = Command::new("cc")
                .args(["-std=c99", "-Wall", "-Werror", "-O1", "-o"])
                .arg(&binary)
                .arg(source)
                .status();
            match built {
                Ok(status) if status.success() => Some(binary),
                Ok(status) => panic!("cc failed to build {source}: {status}"),
                Err(e) => {
                    eprintln!("SKIPPED: no C compiler ('cc': {e}); the C client test did not run");
                    None
                }
            }
        })
        .clone()
}

/// Runs the C client against `server` with its table `-t table` and
/// `requests` (ACTION MESSAGE pairs); returns one response per line.
fn run_c(client: &PathBuf, server: &Server, table: &str, requests: &[&str]) -> Vec<Vec<u8>> {
    let port = server.addr("transform").port().to_string();
    let out = Command::new(client)
        .args(["-h", "127.0.0.1", "-p", &port, "-t", table])
        .args(requests)
        .output()
        .expect("run the C client");
    assert!(
        out.status.success(),
        "C client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<Vec<u8>> = out
        .stdout
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        lines.pop(),
        Some(Vec::new()),
        "every response ends its line"
    );
    lines
}

/// The bytes the C client sends for "@N".
fn text(n: usize) -> Vec<u8> {
    b"the Quick bROWN fox "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

#[test]
fn a_2021_student_client_against_a_2021_server() {
    let Some(client) = c_client() else { return };
    let server = Server::start(&["transform=0"]);
    let got = run_c(
        &client,
        &server,
        "2021",
        &[
            "uppercase",
            "hello",
            "lowercase",
            "HeLLo",
            "title-case",
            "hello wORLD",
            "reverse",
            "abc",
            "shuffle",
            "aabbc",
            "3",
            "x",
            "uppercase",
            "@65536",
            "reverse",
            "@1000",
        ],
    );
    assert_eq!(got.len(), 8);
    assert_eq!(got[0], b"HELLO");
    assert_eq!(got[1], b"hello");
    assert_eq!(got[2], b"Hello World");
    assert_eq!(got[3], b"cba");
    assert!(Action::Shuffle.is_valid_response(b"aabbc", &got[4]));
    assert_eq!(got[5], b"error", "an unknown action");
    assert_eq!(got[6], text(65536).to_ascii_uppercase());
    assert_eq!(got[7], text(1000).into_iter().rev().collect::<Vec<u8>>());
}

#[test]
fn a_2023_student_client_against_a_2023_server() {
    let Some(client) = c_client() else { return };
    let server = Server::start(&["--transform-table", "2023", "transform=0"]);
    let got = run_c(
        &client,
        &server,
        "2023",
        &[
            "uppercase",
            "hello",
            "lowercase",
            "HeLLo",
            "reverse",
            "abc",
            "shuffle",
            "aabbc",
            "random",
            "hello",
            "random",
            "@50000",
            "random",
            "",
            "3",
            "x",
            "reverse",
            "@70000",
        ],
    );
    assert_eq!(got.len(), 9);
    assert_eq!(got[0], b"HELLO");
    assert_eq!(got[1], b"hello");
    assert_eq!(got[2], b"cba", "0x04 is reverse in 2023");
    assert!(Action::Shuffle.is_valid_response(b"aabbc", &got[3]));
    assert!(
        Action::Random.is_valid_response(b"hello", &got[4]),
        "{:?}",
        String::from_utf8_lossy(&got[4])
    );
    assert!(Action::Random.is_valid_response(&text(50000), &got[5]));
    assert_ne!(got[5], text(50000), "50,000 bytes left unedited");
    assert_eq!(got[6], b"", "random of nothing is nothing");
    assert_eq!(got[7], b"error");
    assert_eq!(got[8], text(70000).into_iter().rev().collect::<Vec<u8>>());
}

#[test]
fn a_2023_student_client_against_the_default_table_gets_what_the_issue_saw() {
    // The reason --transform-table exists: a 2023 client's reverse (0x04)
    // is title-case to a 2021 server, and its random (0x10) a shuffle.
    let Some(client) = c_client() else { return };
    let server = Server::start(&["transform=0"]);
    let got = run_c(
        &client,
        &server,
        "2023",
        &["reverse", "abc", "random", "hello"],
    );
    assert_eq!(got[0], b"Abc");
    assert!(Action::Shuffle.is_valid_response(b"hello", &got[1]));
}
