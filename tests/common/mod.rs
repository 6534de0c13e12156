//! Test harness: runs the real `onepoll` binary on 127.0.0.1 with OS-chosen
//! ports, reads the ports from its `listening ...` log lines, keeps its
//! stderr for assertions, and kills it when dropped. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous bound for anything a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running server process.
pub struct Server {
    child: Child,
    /// `(protocol, transport, address)` from the `listening` lines.
    pub listening: Vec<(String, String, SocketAddr)>,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `onepoll -b 127.0.0.1 ARGS...` and waits for every listener.
    pub fn start(args: &[&str]) -> Server {
        Server::start_bound("127.0.0.1", args)
    }

    /// Starts `onepoll -b BIND ARGS...` (`::` to test IPv6 and mapped
    /// IPv4 peers) and waits for every listener.
    pub fn start_bound(bind: &str, args: &[&str]) -> Server {
        Server::start_with(Command::new(env!("CARGO_BIN_EXE_onepoll")), bind, args)
    }

    /// Starts `onepoll -b 127.0.0.1 ARGS...` with extra environment
    /// variables (fault injection's schedule, for instance).
    pub fn start_env(envs: &[(&str, String)], args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onepoll"));
        cmd.envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
        Server::start_with(cmd, "127.0.0.1", args)
    }

    /// Starts the server under `sh -c 'ulimit -n N; exec onepoll ...'`.
    pub fn start_with_fd_limit(limit: u32, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_onepoll"));
        Server::start_with(cmd, "127.0.0.1", args)
    }

    fn start_with(mut cmd: Command, bind: &str, args: &[&str]) -> Server {
        let mut child = cmd
            .args(["-b", bind])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn onepoll");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Log first, then announce: a test that saw the port may
                // look for the line in the log at once.
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(rest) = line.split("listening ").nth(1) {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        // One line per TCP listener, plus one for tne's UDP socket.
        let named: Vec<&str> = args
            .iter()
            .filter(|a| !a.starts_with('-') && a.contains('='))
            .map(|a| a.split('=').next().unwrap_or(""))
            .collect();
        let expected = named.len().max(1) + named.iter().filter(|p| **p == "tne").count();
        let mut listening = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while listening.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(rest) => {
                    let mut words = rest.split_whitespace();
                    let (Some(proto), Some(transport), Some(addr)) =
                        (words.next(), words.next(), words.next())
                    else {
                        continue;
                    };
                    listening.push((proto.into(), transport.into(), addr.parse().unwrap()));
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not start; log:\n{}", log.lock().unwrap());
                }
            }
        }
        Server {
            child,
            listening,
            log,
        }
    }

    /// The TCP address of `protocol`.
    pub fn addr(&self, protocol: &str) -> SocketAddr {
        self.find(protocol, "tcp")
    }

    /// The address of `protocol` over `transport` (`tcp` or `udp`).
    pub fn find(&self, protocol: &str, transport: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(p, t, _)| p == protocol && t == transport)
            .map(|(_, _, a)| *a)
            .unwrap_or_else(|| panic!("no {protocol} {transport} listener"))
    }

    /// Connects to `protocol` with read and write timeouts set.
    pub fn connect(&self, protocol: &str) -> TcpStream {
        let stream = TcpStream::connect(self.addr(protocol)).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        stream
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (bounded).
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never said {needle:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server, in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// User + system CPU time of the server so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// Open descriptors of the server, from /proc.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Sends a signal (e.g. `libc::SIGINT` = 2) to the server.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the server to exit; returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the server wrote on stdout (should be nothing); call after exit.
    pub fn stdout(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads exactly `n` bytes (bounded by the stream's read timeout).
pub fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until the peer closes (bounded by the stream's read timeout).
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).expect("read_to_end");
    buf
}

/// Writes all of `bytes`.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write_all");
}

/// Runs the `onepoll` binary with `args` to completion (for CLI tests):
/// `(exit code, stdout, stderr)`.
pub fn run_onepoll(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run onepoll");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory under the system's temporary directory, removed with
/// everything in it when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory named after `label`, this process and a counter.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("onepoll-it-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory as text, for a command line.
    pub fn str(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
