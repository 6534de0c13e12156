//! Started as systemd starts it: sockets passed in by
//! `systemd-socket-activate` (`LISTEN_FDS`, `LISTEN_FDNAMES`), TCP and UDP,
//! served without binding; `Type=notify` messages (`READY=1`, `STATUS=`,
//! `WATCHDOG=1`, `STOPPING=1`) read from a unix datagram socket given as
//! `NOTIFY_SOCKET`.
//!
//! `systemd-socket-activate` comes with the `systemd` package (`.ci/run`
//! installs it). Without it a test says so loudly and passes, unless `CI`
//! is set: there it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(20);

fn activator() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("systemd-socket-activate"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-socket-activate is missing and CI is set: install systemd"
        );
        eprintln!(
            "\n*** SKIPPED: systemd-socket-activate not found (apt-get install systemd) ***\n"
        );
    }
    found
}

/// A port free on 127.0.0.1 for TCP and UDP alike (right now).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The activator and the server it execs; stderr lines on a channel.
struct Activated {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Activated {
    fn start(cmd: &mut Command) -> Activated {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start systemd-socket-activate");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Activated {
            child,
            log,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no '{needle}' in the log:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

#[test]
fn passed_tcp_and_udp_sockets_are_served_without_binding() {
    let Some(activate) = activator() else {
        return;
    };
    let (tne, stats) = (free_port(), free_port());
    // The outer activator passes tne's UDP socket and execs the inner one,
    // which passes it through and adds tne's and stats' TCP sockets.
    let mut server = Activated::start(
        Command::new(&activate)
            .args([
                "--datagram",
                "-l",
                &format!("127.0.0.1:{tne}"),
                "--fdname=tne",
            ])
            .arg(&activate)
            .args(["-l", &format!("127.0.0.1:{tne}")])
            .args(["-l", &format!("127.0.0.1:{stats}")])
            .arg("--fdname=tne:tne:stats")
            .arg(env!("CARGO_BIN_EXE_onepoll")),
    );
    server.wait_for("as 3.");
    // A datagram sent before the server runs starts it, and is answered.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    udp.send_to(b"TNE20003:early", ("127.0.0.1", tne)).unwrap();
    // The inner activator has bound the TCP sockets (fds 4 and 5).
    server.wait_for("as 5.");
    // So does a connection waiting in the passed listener's backlog.
    let mut tcp = connect(tne);
    tcp.write_all(b"TNE20003:tcp\n").unwrap();
    let mut reply = [0u8; 15];
    tcp.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"TNE20003:A:tcp\n");
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"TNE20003:A:early");
    server.wait_for(&format!("listening tne tcp 127.0.0.1:{tne} (from systemd)"));
    server.wait_for(&format!(
        "listening stats tcp 127.0.0.1:{stats} (from systemd)"
    ));
    server.wait_for(&format!("listening tne udp 127.0.0.1:{tne}"));
    let mut info = connect(stats);
    info.write_all(b"INFO\nQUIT\n").unwrap();
    let mut text = String::new();
    info.read_to_string(&mut text).unwrap();
    assert!(text.contains("requests_tne:2\n"), "{text}");
    assert!(text.contains("protocols:tne,stats\n"), "{text}");
}

#[test]
fn notify_tells_ready_status_watchdog_and_stopping() {
    let Some(activate) = activator() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("onepoll-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let notify = UnixDatagram::bind(&path).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let port = free_port();
    let mut server = Activated::start(
        Command::new(&activate)
            .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=chat"])
            .arg(format!("-ENOTIFY_SOCKET={}", path.display()))
            .arg("-EWATCHDOG_USEC=400000")
            .arg(env!("CARGO_BIN_EXE_onepoll")),
    );
    server.wait_for("Listening on");
    let mut chat = BufReader::new(connect(port));
    let mut welcome = String::new();
    chat.read_line(&mut welcome).unwrap();
    assert!(welcome.starts_with("WELCOME "));

    let next = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.starts_with("READY=1\n"), "{first}");
    // Pings every 200 ms (half of WATCHDOG_USEC), each with the status.
    let started = Instant::now();
    let mut pings = 0;
    let mut saw_one_open = false;
    while pings < 4 {
        let msg = next();
        assert!(msg.contains("WATCHDOG=1"), "{msg}");
        saw_one_open |= msg.contains("STATUS=serving, 1 connection(s) open");
        pings += 1;
    }
    assert!(saw_one_open, "the status counts the chat connection");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "4 pings at 200 ms took {:?}",
        started.elapsed()
    );
    drop(chat);
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let msg = next();
        if msg.starts_with("STOPPING=1") {
            break;
        }
        assert!(Instant::now() < deadline, "no STOPPING=1");
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unnamed_socket_serves_the_one_protocol_named() {
    let Some(activate) = activator() else {
        return;
    };
    let port = free_port();
    let mut server = Activated::start(
        Command::new(&activate)
            .args(["-l", &format!("127.0.0.1:{port}")])
            .arg(env!("CARGO_BIN_EXE_onepoll"))
            .arg("cmd"),
    );
    server.wait_for("Listening on");
    let mut cmd = connect(port);
    cmd.write_all(b"HELO box\nBYE\n").unwrap();
    let mut text = String::new();
    cmd.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("Hello box"), "{text}");
    server.wait_for(&format!(
        "listening cmd tcp 127.0.0.1:{port} (from systemd)"
    ));
}
