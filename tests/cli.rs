//! The server's command line: help, version, usage errors (exit 2), a port
//! that cannot be bound (exit 1), and an empty stdout.

mod common;

use std::net::TcpListener;

use common::run_onepoll;

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
        &["-b", "not-an-address"],
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
