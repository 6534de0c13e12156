//! `onepoll-bench` end to end against a tiny transform server in a thread
//! of this test (so it depends on neither the peers nor the onepoll
//! binary): a correct server gives a clean report and CSV row, a server
//! that garbles a byte is caught.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A blocking transform server that answers uppercase (and garbles the
/// first data byte of every `garble_every`-th reply when that is not 0).
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(garble_every: u64) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, _)) => {
                        thread::spawn(move || serve(sock, garble_every));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut sock: TcpStream, garble_every: u64) {
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut served = 0u64;
    loop {
        let mut header = [0u8; 4];
        if sock.read_exact(&mut header).is_err() {
            return;
        }
        let word = u32::from_be_bytes(header);
        let len = (word & ((1 << 27) - 1)) as usize;
        let mut data = vec![0u8; len];
        if sock.read_exact(&mut data).is_err() {
            return;
        }
        data.make_ascii_uppercase();
        served += 1;
        if garble_every != 0 && served % garble_every == 0 {
            if let Some(b) = data.first_mut() {
                *b ^= 0x01;
            }
        }
        let mut reply = (len as u32).to_be_bytes().to_vec();
        reply.extend_from_slice(&data);
        if sock.write_all(&reply).is_err() {
            return;
        }
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onepoll-bench"))
        .args(args)
        .output()
        .unwrap()
}

fn csv_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bench-smoke-{}-{name}.csv", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The value of `column` in the CSV row.
fn csv_field(text: &str, column: &str) -> String {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == column).unwrap();
    row[i].to_owned()
}

#[test]
fn a_correct_server_gets_a_clean_report_and_a_csv_row() {
    let server = Server::start(0);
    let csv = csv_path("ok");
    let port = server.port.to_string();
    let out = bench(&[
        "transform",
        "-p",
        &port,
        "-c",
        "4",
        "-P",
        "4",
        "-s",
        "100",
        "-d",
        "1",
        "--csv",
        csv.to_str().unwrap(),
        "--label",
        "thread",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("====== transform uppercase ======"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 wrong replies, 0 disconnects"),
        "{stdout}"
    );
    assert!(stdout.contains("p99.9"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::remove_file(&csv).unwrap();
    assert_eq!(csv_field(&text, "label"), "thread");
    assert_eq!(csv_field(&text, "errors"), "0");
    let ops: u64 = csv_field(&text, "ops").parse().unwrap();
    assert!(ops > 0, "{text}");
}

/// `--probe-cpu`: the cross-CPU round trip is timed around the run and
/// lands in the quiet line and the CSV; a CPU the machine cannot have is
/// a clear error, not a hang.
#[test]
fn a_probed_run_records_the_cross_cpu_round_trip() {
    let server = Server::start(0);
    let csv = csv_path("probe");
    let port = server.port.to_string();
    // A CPU this process may run on (CI may not allow every CPU).
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0).to_string();
    let out = bench(&[
        "transform",
        "-p",
        &port,
        "-c",
        "2",
        "-n",
        "100",
        "--probe-cpu",
        &cpu,
        "-q",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("cross-CPU round trip"), "{stdout}");
    let text = std::fs::read_to_string(&csv).unwrap();
    std::fs::remove_file(&csv).unwrap();
    for column in ["probe_before_us", "probe_after_us"] {
        let us: f64 = csv_field(&text, column).parse().unwrap();
        assert!(us > 0.0 && us < 100_000.0, "{column} {us}: {text}");
    }

    let out = bench(&[
        "transform",
        "-p",
        &port,
        "-n",
        "10",
        "--probe-cpu",
        "100000",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cross-CPU probe on CPU 100000"), "{stderr}");
}

#[test]
fn a_wrong_byte_is_counted_and_fails_the_run() {
    let server = Server::start(5);
    let port = server.port.to_string();
    let out = bench(&[
        "transform",
        "-p",
        &port,
        "-c",
        "3",
        "-n",
        "200",
        "-d",
        "5",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("3 errors"),
        "each connection dies at its 5th reply: {stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "-q prints one line: {stdout}");
}

#[test]
fn a_request_cap_ends_the_run_early() {
    let server = Server::start(0);
    let port = server.port.to_string();
    let started = Instant::now();
    let out = bench(&[
        "transform",
        "-p",
        &port,
        "-c",
        "2",
        "-P",
        "3",
        "-n",
        "50",
        "-d",
        "20",
        "-q",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the cap, not --duration, ended it"
    );
    assert!(stdout.contains(", 0 errors, 0 disconnects"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    let out = bench(&["transform", "-c", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--conns"));
    let out = bench(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("WORKLOAD"));
}
