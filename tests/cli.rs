//! The server's command line: help, version, usage errors (exit 2), a port
//! that cannot be bound (exit 1), and an empty stdout.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_onepoll, Server};
use onepoll::proto::transform::Action;

#[test]
fn help_and_version_print_to_stdout_and_exit_zero() {
    let (code, out, err) = run_onepoll(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("Usage: onepoll [OPTIONS] [PROTOCOL[=PORT] ...]"));
    for option in [
        "--bind",
        "--max-conns",
        "--idle-timeout",
        "--max-buffer",
        "--upload-layout",
        "--transform-table",
    ] {
        assert!(out.contains(option), "--help does not mention {option}");
    }
    assert_eq!(err, "");
    let (code, out, _) = run_onepoll(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("onepoll "));
}

#[test]
fn usage_errors_are_one_line_plus_usage_and_exit_two() {
    for args in [
        &["--frobnicate"][..],
        &["gopher"],
        &["--max-conns", "lots"],
        &["--idle-timeout", "-1"],
        &["-p", "80"],
        &["transform=99999"],
        &["transform", "transform"],
        &["--upload-layout", "tree"],
        &["-b", "not-an-address.invalid"],
    ] {
        let (code, out, err) = run_onepoll(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?} wrote to stdout");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: want error + usage, got {err:?}");
        assert!(lines[0].starts_with("onepoll: "), "{args:?}: {err}");
        assert!(lines[1].starts_with("Usage: onepoll"), "{args:?}: {err}");
    }
}

#[test]
fn a_port_in_use_is_a_one_line_error_naming_it_and_exit_one() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, out, err) = run_onepoll(&["-b", "127.0.0.1", &format!("transform={port}")]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(errors[0].contains("transform"), "{err}");
}

/// Runs `binary` (`onepoll-client`, `onepoll-bench`) with `args` to
/// completion: `(exit code, stdout, stderr, how long it took)`.
fn run_tool(binary: &str, args: &[&str]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the tool");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

const CLIENT: &str = env!("CARGO_BIN_EXE_onepoll-client");
const BENCH: &str = env!("CARGO_BIN_EXE_onepoll-bench");

#[test]
fn the_server_points_a_mistyped_h_at_help() {
    let (code, out, err) = run_onepoll(&["-h"]);
    assert_eq!(code, Some(2));
    assert_eq!(out, "");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.contains("--help"), "{err}");
}

#[test]
fn every_binary_prints_its_version_with_v_and_version() {
    for flag in ["-V", "--version"] {
        let (code, out, _) = run_onepoll(&[flag]);
        assert_eq!(
            (code, out.starts_with("onepoll ")),
            (Some(0), true),
            "{out}"
        );
        for (binary, name) in [(CLIENT, "onepoll-client "), (BENCH, "onepoll-bench ")] {
            let (code, out, err, _) = run_tool(binary, &[flag]);
            assert_eq!(code, Some(0), "{name}{flag}: {err}");
            assert!(out.starts_with(name), "{name}{flag}: {out}");
        }
    }
}

#[test]
fn bind_accepts_a_host_name_resolved_at_start() {
    let server = Server::start_bound("localhost", &["transform=0"]);
    assert_eq!(
        server.addr("transform").ip().to_string(),
        "127.0.0.1",
        "localhost binds its IPv4 address"
    );
}

#[test]
fn a_client_without_a_reply_says_what_it_waited_for_and_exits_one() {
    // tne asked of a transform server: the server waits for the rest of
    // a request that "TNE2" announced, and never answers.
    let server = Server::start(&["transform=0", "chat=0"]);
    let port = server.addr("transform").port().to_string();
    let (code, _, err, took) = run_tool(
        CLIENT,
        &["-h", "127.0.0.1", "-p", &port, "-t", "1", "tne", "hello"],
    );
    assert_eq!(code, Some(1), "{err}");
    let want = format!("no reply from 127.0.0.1:{port} in 1 s \u{2014} is it serving tne?");
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("nothing came back"), "{err}");
    assert!(
        took < Duration::from_secs(8),
        "the timeout was not kept: {took:?}"
    );
    // transform asked of a chat server: its greeting is not a reply, and
    // the message shows it.
    let port = server.addr("chat").port().to_string();
    let (code, _, err, _) = run_tool(
        CLIENT,
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--timeout",
            "1",
            "transform",
            "upper",
            "x",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is it serving transform?"), "{err}");
    assert!(err.contains("WELCOME"), "what came instead is shown: {err}");
}

#[test]
fn a_client_timeout_must_be_a_positive_number() {
    for bad in ["0", "-1", "soon"] {
        let (code, _, err, _) = run_tool(CLIENT, &["-t", bad, "tne", "x"]);
        assert_eq!(code, Some(2), "-t {bad}: {err}");
    }
}

#[test]
fn the_bench_against_the_wrong_protocol_says_why_it_failed() {
    let server = Server::start(&["transform=0"]);
    let port = server.addr("transform").port().to_string();
    let (code, out, err, took) = run_tool(
        BENCH,
        &[
            "tne",
            "-p",
            &port,
            "-c",
            "2",
            "-d",
            "30",
            "--timeout",
            "1",
            "-q",
        ],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let want = format!("no reply from 127.0.0.1:{port} in 1 s \u{2014} is it serving tne?");
    assert!(err.contains(&want), "{err}");
    assert!(
        took < Duration::from_secs(20),
        "the timeout was not kept: {took:?}"
    );
}

#[test]
fn the_transform_client_speaks_either_table() {
    let old = Server::start(&["transform=0"]);
    let new = Server::start(&["--transform-table", "2023", "transform=0"]);
    let ask = |server: &Server, args: &[&str]| {
        let port = server.addr("transform").port().to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port, "transform"];
        all.extend_from_slice(args);
        let (code, out, err, _) = run_tool(CLIENT, &all);
        (code, out, err)
    };
    let (code, out, err) = ask(&new, &["--table", "2023", "reverse", "hello"]);
    assert_eq!((code, out.as_str()), (Some(0), "olleh\n"), "{err}");
    let (code, out, err) = ask(&new, &["--table", "2023", "random", "hello"]);
    assert_eq!(code, Some(0), "{err}");
    let edit = out.strip_suffix('\n').unwrap_or_default();
    assert!(
        Action::Random.is_valid_response(b"hello", edit.as_bytes()),
        "{out:?}"
    );
    let (code, out, err) = ask(&old, &["title-case", "hello world"]);
    assert_eq!((code, out.as_str()), (Some(0), "Hello World\n"), "{err}");
    // The 2023 client against a 2021 server: refused, with the reason.
    let (code, _, err) = ask(&old, &["--table", "2023", "reverse", "hello"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("try --table 2021"), "{err}");
    let (code, _, err) = ask(&old, &["random", "hello"]);
    assert_eq!(code, Some(2), "random is not in the 2021 table: {err}");
}

#[test]
fn the_bench_checks_random_edits_against_a_2023_server() {
    let server = Server::start(&["--transform-table", "2023", "transform=0"]);
    let port = server.addr("transform").port().to_string();
    let args = [
        "transform",
        "-p",
        &port,
        "--table",
        "2023",
        "-a",
        "random",
        "-c",
        "2",
        "-P",
        "4",
        "-n",
        "400",
        "-s",
        "300",
        "-q",
    ];
    let (code, out, err, _) = run_tool(BENCH, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(" 0 errors"), "{out}");
    // The same bench against the 2021 table sees shuffles: wrong replies.
    let old = Server::start(&["transform=0"]);
    let port = old.addr("transform").port().to_string();
    let mut args = args;
    args[2] = &port;
    let (code, out, err, _) = run_tool(BENCH, &args);
    assert_eq!(code, Some(1), "{out}{err}");
    // random is not in the 2021 table.
    let (code, _, err, _) = run_tool(BENCH, &["transform", "-a", "random", "-n", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--table 2023"), "{err}");
}
