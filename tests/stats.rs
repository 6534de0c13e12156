//! The stats listener (spec section 6) over real sockets: the Prometheus
//! text checked by `promtool`, a real Prometheus server scraping it,
//! counters that move by exactly what was sent, INFO and CLIENTS, and
//! `onepoll-client stats`.
//!
//! `promtool` and `prometheus` come with Debian's `prometheus` package
//! (`.ci/run` installs it). Without them a test says so loudly and passes,
//! unless `CI` is set: there it fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{read_to_end, Server, PATIENCE};

/// The path of `tool` on `PATH`; `None` (after a loud message) when it is
/// missing outside CI. In CI a missing tool fails the test.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing and CI is set: install Debian's prometheus package"
        );
        eprintln!("\n*** SKIPPED: {name} not found (apt-get install prometheus) ***\n");
    }
    found
}

/// `GET path` over HTTP/1.1 to `addr`: the status line, the head and the
/// body (the server closes after the response).
///
/// A connection refused while the server is full (`ERR server full`) is
/// tried again, within [`PATIENCE`].
fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let deadline = Instant::now() + PATIENCE;
    let response = loop {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // A refused connection may be reset under the write or the read.
        let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        let mut bytes = Vec::new();
        let read = stream.read_to_end(&mut bytes);
        let response = String::from_utf8(bytes).expect("utf-8");
        let refused = read.is_err() || response == "ERR server full\n";
        if !refused || Instant::now() > deadline {
            break response;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {response:?}"));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, head.to_string(), body.to_string())
}

fn scrape(server: &Server) -> String {
    let (status, _, body) = http_get(server.addr("stats"), "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of `series` (`name{labels}` exactly as exposed) in `text`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// Scrapes until every series reaches its value (bounded); returns the
/// last text.
fn scrape_until(server: &Server, want: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(server);
        if want.iter().all(|(series, v)| value(&text, series) == *v) || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn stats_server(extra: &[&str]) -> Server {
    let mut args = vec!["tne=0", "cmd=0", "chat=0", "stats=127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Sends lines to the stats listener and reads the reply up to its
/// ending empty line.
fn ask(stream: &mut BufReader<TcpStream>, command: &str) -> Vec<String> {
    stream.get_mut().write_all(command.as_bytes()).unwrap();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).unwrap() > 0, "closed early");
        let line = line.trim_end_matches('\n').to_string();
        if line.is_empty() {
            return lines;
        }
        lines.push(line);
    }
}

#[test]
fn the_metrics_pass_promtool_check() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let server = stats_server(&[]);
    let mut tne = server.connect("tne");
    tne.write_all(b"TNE20003:hello\n").unwrap();
    let mut reply = [0u8; 17];
    tne.read_exact(&mut reply).unwrap();
    let text = scrape(&server);
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{text}");
    assert!(said.trim().is_empty(), "promtool found problems: {said}");
    for name in [
        "onepoll_connections{protocol=\"tne\"}",
        "onepoll_connections_refused_total{protocol=\"tne\",reason=\"per_ip\"}",
        "onepoll_connections_closed_total{protocol=\"chat\",reason=\"slow_consumer\"}",
        "onepoll_udp_replies_cut_total",
        "onepoll_chat_deliveries_total",
        "onepoll_chat_members",
        "onepoll_upload_files_saved_total",
        "onepoll_upload_files_refused_total",
        "onepoll_buffered_bytes",
        "onepoll_memory_limit_bytes",
        "onepoll_loop_wakeups_total",
        "onepoll_loop_wakeup_duration_seconds_bucket{le=\"1e-05\"}",
        "onepoll_loop_wakeup_duration_seconds_bucket{le=\"1\"}",
        "onepoll_loop_wakeup_duration_seconds_count",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        value(&text, name);
    }
    assert_eq!(value(&text, "onepoll_connections{protocol=\"tne\"}"), 1.0);
}

#[test]
fn counters_move_by_exactly_the_traffic_sent() {
    let server = stats_server(&[]);
    let before = scrape(&server);
    let requests =
        |text: &str, p: &str| value(text, &format!("onepoll_requests_total{{protocol=\"{p}\"}}"));

    // 25 tne messages over TCP, 7 over UDP.
    let mut tne = server.connect("tne");
    let mut sent = 0;
    for i in 0..25 {
        let line = format!("TNE20003:message {i}\n");
        tne.write_all(line.as_bytes()).unwrap();
        sent += line.len();
    }
    let mut replies = Vec::new();
    let expected_reply: usize = (0..25)
        .map(|i| format!("TNE20003:A:message {i}\n").len())
        .sum();
    while replies.len() < expected_reply {
        let mut buf = [0u8; 4096];
        let n = tne.read(&mut buf).unwrap();
        assert!(n > 0);
        replies.extend_from_slice(&buf[..n]);
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(PATIENCE)).unwrap();
    for i in 0..7 {
        udp.send_to(
            format!("TNE20003:d{i}").as_bytes(),
            server.find("tne", "udp"),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        udp.recv_from(&mut buf).unwrap();
    }
    // cmd: five lines, the last BYE (the server closes: "done").
    let mut cmd = server.connect("cmd");
    cmd.write_all(b"HELO box\nECHO a\nECHO b\nREQIP\nBYE\n")
        .unwrap();
    read_to_end(&mut cmd);
    drop(cmd);
    drop(tne);

    let after = scrape_until(
        &server,
        &[
            (
                "onepoll_connections_closed_total{protocol=\"tne\",reason=\"peer\"}",
                1.0,
            ),
            (
                "onepoll_connections_closed_total{protocol=\"cmd\",reason=\"done\"}",
                1.0,
            ),
        ],
    );
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(requests(&after, "tne") - requests(&before, "tne"), 32.0);
    assert_eq!(requests(&after, "cmd") - requests(&before, "cmd"), 5.0);
    assert_eq!(
        delta("onepoll_received_bytes_total{protocol=\"tne\"}"),
        sent as f64
    );
    assert_eq!(
        delta("onepoll_sent_bytes_total{protocol=\"tne\"}"),
        expected_reply as f64
    );
    assert_eq!(
        delta("onepoll_connections_accepted_total{protocol=\"tne\"}"),
        1.0
    );
    assert_eq!(
        delta("onepoll_connections_accepted_total{protocol=\"cmd\"}"),
        1.0
    );
    assert_eq!(
        delta("onepoll_connections_closed_total{protocol=\"cmd\",reason=\"done\"}"),
        1.0
    );
    assert_eq!(value(&after, "onepoll_connections{protocol=\"tne\"}"), 0.0);
    // Every scrape is one stats request; this one is open while rendered.
    assert_eq!(
        value(&after, "onepoll_connections{protocol=\"stats\"}"),
        1.0
    );
    assert!(delta("onepoll_loop_wakeups_total") > 0.0);
    assert_eq!(
        value(&after, "onepoll_loop_wakeups_total"),
        value(&after, "onepoll_loop_wakeup_duration_seconds_count"),
        "every wake-up is timed"
    );
}

#[test]
fn refusals_are_counted_by_reason_and_logged_once_a_second() {
    let server = stats_server(&["--max-conns", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| server.connect("tne")).collect();
    // Let the server accept all three before the refusals begin.
    let mut first = held[0].try_clone().unwrap();
    first.write_all(b"TNE20003:x\n").unwrap();
    let mut buf = [0u8; 13];
    first.read_exact(&mut buf).unwrap();
    for _ in 0..6 {
        let mut refused = server.connect("tne");
        let said = read_to_end(&mut refused);
        assert_eq!(said, b"TNE20003:E:server full\n");
    }
    drop(held);
    let text = scrape_until(
        &server,
        &[(
            "onepoll_connections_refused_total{protocol=\"tne\",reason=\"server_full\"}",
            6.0,
        )],
    );
    assert_eq!(
        value(
            &text,
            "onepoll_connections_refused_total{protocol=\"tne\",reason=\"server_full\"}"
        ),
        6.0
    );
    server.wait_for_log("server full (--max-conns");
    let lines = server.log().matches("connection(s) over").count();
    assert!(
        (1..=2).contains(&lines),
        "6 refusals in well under 2 s make 1 or 2 log lines, not {lines}:\n{}",
        server.log()
    );
}

#[test]
fn info_and_clients_answer_in_sections_and_lines() {
    let server = stats_server(&[]);
    let mut chat = BufReader::new(server.connect("chat"));
    let mut welcome = String::new();
    chat.read_line(&mut welcome).unwrap();
    let nick = welcome
        .trim_end()
        .strip_prefix("WELCOME ")
        .unwrap()
        .to_string();
    let mut stats = BufReader::new(server.connect("stats"));
    // CR LF accepted, case ignored; pipelined commands answered in order.
    stats
        .get_mut()
        .write_all(b"info\r\nNOPE\nCLIENTS\n")
        .unwrap();
    let info = ask(&mut stats, "");
    let headers: Vec<&String> = info.iter().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headers,
        ["# Server", "# Clients", "# Stats", "# Memory", "# Loop"]
    );
    for line in info.iter().filter(|l| !l.starts_with('#')) {
        assert!(line.contains(':'), "not key:value: {line}");
    }
    assert!(info.contains(&"connected_chat:1".to_string()));
    assert!(info.contains(&"chat_members:1".to_string()));
    assert!(info.contains(&format!("process_id:{}", server.pid())));
    let mut err = String::new();
    stats.read_line(&mut err).unwrap();
    assert_eq!(err, "ERR unknown command\n");
    let clients = ask(&mut stats, "");
    assert_eq!(clients.len(), 2, "{clients:?}");
    let chat_line = clients.iter().find(|l| l.contains("proto=chat")).unwrap();
    assert!(chat_line.ends_with(&format!("nick={nick}")), "{chat_line}");
    assert!(chat_line.contains(&format!("addr={}", chat.get_ref().local_addr().unwrap())));
    let own = clients.iter().find(|l| l.contains("proto=stats")).unwrap();
    assert!(own.contains(" age=0 idle=0 inbuf=0 "), "{own}");
    assert!(!own.contains("nick="));
    stats.get_mut().write_all(b"QUIT\n").unwrap();
    let mut rest = Vec::new();
    stats.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn other_paths_are_404_and_metrics_have_the_prometheus_type() {
    let server = stats_server(&[]);
    let (status, _, _) = http_get(server.addr("stats"), "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, head, body) = http_get(server.addr("stats"), "/metrics?x=1");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
}

#[test]
fn the_client_prints_info_clients_and_metrics() {
    let server = stats_server(&[]);
    let port = server.addr("stats").port().to_string();
    let run = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
            .args(["-h", "127.0.0.1", "-p", &port, "stats", what])
            .output()
            .expect("run onepoll-client");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run("INFO").starts_with("# Server\nonepoll_version:"));
    assert!(run("CLIENTS").contains("proto=stats"));
    assert!(run("metrics").contains("# TYPE onepoll_requests_total counter"));
    let out = Command::new(env!("CARGO_BIN_EXE_onepoll-client"))
        .args(["-h", "127.0.0.1", "-p", &port, "stats", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A Prometheus server run for one test, killed when dropped.
struct Prometheus {
    child: Child,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first sample of an instant query through Prometheus' HTTP API, if
/// it has one yet.
fn query(api: SocketAddr, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut stream = TcpStream::connect(api).ok()?;
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET /api/v1/query?query={encoded} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[1.7e9,"32"]}]}}
    let value = response.split("\"value\":[").nth(1)?;
    let number = value.split(",\"").nth(1)?.split('"').next()?;
    number.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_counters() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let server = stats_server(&[]);
    let mut tne = server.connect("tne");
    for i in 0..12 {
        tne.write_all(format!("TNE20003:m{i}\n").as_bytes())
            .unwrap();
    }
    let mut reply = vec![0u8; (0..12).map(|i| format!("TNE20003:A:m{i}\n").len()).sum()];
    tne.read_exact(&mut reply).unwrap();

    let dir = std::env::temp_dir().join(format!("onepoll-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: onepoll\n    static_configs:\n      \
             - targets: ['{}']\n",
            server.addr("stats")
        ),
    )
    .unwrap();
    let port = free_port();
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address={api}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prometheus = Prometheus { child, _dir: dir };

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = query(
            api,
            "onepoll_requests_total{protocol=\"tne\",job=\"onepoll\"}",
        );
        if seen.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(seen, Some(12.0), "Prometheus never scraped the 12 requests");
    assert_eq!(query(api, "up{job=\"onepoll\"}"), Some(1.0));
    assert_eq!(
        query(api, "onepoll_connections{protocol=\"tne\"}"),
        Some(1.0)
    );
    // The scrapes themselves are counted: Prometheus saw its own.
    let scrapes = query(api, "onepoll_requests_total{protocol=\"stats\"}").unwrap();
    assert!(scrapes >= 1.0);
}

#[test]
fn a_reset_is_told_from_a_close_in_the_log_and_the_counters() {
    use std::os::fd::AsRawFd;
    let server = stats_server(&[]);
    let mut polite = server.connect("cmd");
    polite.write_all(b"HELO x\n").unwrap();
    let mut rude = server.connect("cmd");
    rude.write_all(b"HELO y\n").unwrap();
    let mut buf = [0u8; 64];
    let _ = polite.read(&mut buf).unwrap();
    let _ = rude.read(&mut buf).unwrap();
    drop(polite);
    // SO_LINGER with a zero timeout: close sends a reset, not a FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one linger struct from a live socket's fd.
    let rc = unsafe {
        libc::setsockopt(
            rude.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(rude);
    let text = scrape_until(
        &server,
        &[
            (
                "onepoll_connections_closed_total{protocol=\"cmd\",reason=\"peer\"}",
                1.0,
            ),
            (
                "onepoll_connections_closed_total{protocol=\"cmd\",reason=\"reset\"}",
                1.0,
            ),
        ],
    );
    assert_eq!(
        value(
            &text,
            "onepoll_connections_closed_total{protocol=\"cmd\",reason=\"reset\"}"
        ),
        1.0
    );
    server.wait_for_log("close cmd #1 from");
    assert!(
        server.log().contains("(closed by peer)"),
        "{}",
        server.log()
    );
    assert!(server.log().contains("(reset by peer)"), "{}", server.log());
}

#[test]
fn a_quiet_server_still_reports_refusals_once_a_second() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_onepoll"))
        .args(["-q", "-b", "127.0.0.1", "--max-conns", "1"])
        .arg(format!("cmd={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let held = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("server did not start: {e}"),
        }
    };
    held.set_read_timeout(Some(PATIENCE)).unwrap();
    (&held).write_all(b"HELO x\n").unwrap();
    let mut buf = [0u8; 64];
    let _ = (&held).read(&mut buf).unwrap();
    for _ in 0..5 {
        let mut refused = TcpStream::connect(("127.0.0.1", port)).unwrap();
        refused.set_read_timeout(Some(PATIENCE)).unwrap();
        assert_eq!(read_to_end(&mut refused), b"ERR server full\n");
    }
    // The rest of the burst is logged within a second of the first line.
    thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    drop(held);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    let counted: u64 = lines
        .iter()
        .filter_map(|l| {
            l.split("refused ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(counted, 5, "{log}");
    assert!(lines.len() <= 2, "{log}");
    assert!(
        !log.contains("open cmd"),
        "-q hides the per-connection lines: {log}"
    );
}

#[test]
fn each_listener_may_have_its_own_address() {
    // Protocols on --bind (127.0.0.1), stats on IPv6 loopback.
    let server = Server::start(&["tne=0", "stats=[::1]:0"]);
    let stats = server.addr("stats");
    assert_eq!(stats.ip(), "::1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(server.addr("tne").ip().to_string(), "127.0.0.1");
    let text = scrape(&server);
    assert_eq!(value(&text, "onepoll_connections{protocol=\"stats\"}"), 1.0);
}
