//! `onepoll-bench attack NAME` end to end against the debug onepoll: each
//! attack, in a tiny configuration for about a second, runs, stops by
//! itself, closes everything it opened (the tool counts its own descriptors
//! before and after; the server's come back to their idle count) and
//! prints its one-line report. Not a test of
//! speed, nor of the defences: of the tool.

mod common;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TempDir, PATIENCE};

/// Runs `onepoll-bench attack ARGS` against `server`; returns stdout,
/// after checking that it exited 0 within a bound.
fn attack(server: &Server, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onepoll-bench"));
    cmd.arg("attack").args(args);
    for (proto, transport) in [
        ("tne", "tcp"),
        ("cmd", "tcp"),
        ("chat", "tcp"),
        ("upload", "tcp"),
        ("transform", "tcp"),
    ] {
        cmd.arg(format!("--{proto}-port"))
            .arg(server.find(proto, transport).port().to_string());
    }
    let pid = server.pid().to_string();
    cmd.args(["--pid", &pid, "--settle", "0.2"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onepoll-bench");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("attack {args:?} did not stop by itself");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "attack {args:?}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits until the server holds no more descriptors than `idle`.
fn wait_for_fds(server: &Server, idle: usize, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while server.open_fds() > idle {
        if Instant::now() > deadline {
            let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!("{what}: the server still has {fds:?} open (idle: {idle})");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_attack_runs_stops_closes_and_reports() {
    let dir = TempDir::new("attack-smoke");
    let server = Server::start(&[
        "-d",
        dir.str(),
        "tne=0",
        "cmd=0",
        "chat=0",
        "upload=0",
        "transform=0",
    ]);
    // The server opens a descriptor or two after its `listening` lines:
    // its idle count is the highest over a moment's quiet.
    let mut idle = 0;
    for _ in 0..10 {
        idle = idle.max(server.open_fds());
        thread::sleep(Duration::from_millis(50));
    }
    let runs: [(&[&str], &str); 10] = [
        (&["chat-silent", "-c", "20", "-d", "1"], "20 connected"),
        (
            &["chat-churn", "--room", "10", "-n", "100", "-d", "1"],
            "churned",
        ),
        (
            &["cmd-pipeline", "-c", "5", "-s", "100000", "-d", "1"],
            "5 wrote it all",
        ),
        (&["upload-tiny", "-n", "200", "-d", "5"], "200 A"),
        (
            &["shuffle", "-n", "2", "-s", "100000", "-d", "5"],
            "2 answered (0 error)",
        ),
        (
            &["chat-paste", "-c", "2", "-s", "1000", "-d", "1"],
            "dropped",
        ),
        (&["slots", "-c", "20", "-d", "1"], "20 connected"),
        (
            &["transform-hold", "-d", "1", "--interval", "0.2"],
            "another client's 1000 B reverse",
        ),
        (&["udp-amp", "-n", "50", "-d", "1"], "50 replies"),
        (
            &["log-flood", "-c", "5", "-n", "100", "-d", "1"],
            "100 connects",
        ),
    ];
    for (args, figure) in runs {
        let name = args[0];
        let out = attack(&server, args);
        assert!(
            out.starts_with(&format!("{name}: ")),
            "{name} printed {out:?}"
        );
        for part in ["bystander p50/p99/max", "echoes", "server RSS idle", figure] {
            assert!(out.contains(part), "{name}: no {part:?} in {out:?}");
        }
        assert_eq!(out.lines().count(), 1, "{name}: one line, got {out:?}");
        assert!(
            !out.contains("LEFT"),
            "{name} did not close everything: {out}"
        );
        wait_for_fds(&server, idle, name);
    }
    let row = attack(&server, &["udp-amp", "-n", "10", "-d", "1", "--markdown"]);
    assert!(row.starts_with("| udp-amp | "), "{row:?}");
    assert_eq!(row.trim_end().matches(" | ").count(), 4, "{row:?}");
}

#[test]
fn a_missing_server_or_a_bad_command_line_is_an_error() {
    let bench = env!("CARGO_BIN_EXE_onepoll-bench");
    let run = |args: &[&str]| {
        Command::new(bench)
            .arg("attack")
            .args(args)
            .output()
            .unwrap()
    };
    // Nothing listens on port 1: the bystander cannot start.
    let out = run(&["slots", "-c", "1", "-d", "0.1", "--cmd-port", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    for bad in [&["nuke"][..], &["slots", "-h", "192.0.2.1"], &[]] {
        assert_eq!(run(bad).status.code(), Some(2), "{bad:?}");
    }
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("chat-silent"));
}
