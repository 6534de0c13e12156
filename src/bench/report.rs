//! The results of a run, printed in the manner of redis-benchmark: a header
//! with the settings, throughput, server cost, errors and a latency table;
//! or one line (`-q`); or one CSV row (`--csv`).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::args::{BenchConfig, Workload};
use super::probe::WakeProbe;
use super::stats::Stats;

/// What the server process cost during the measured phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerUsage {
    /// Its CPU time (user + system) over the run.
    pub cpu: Duration,
    /// Its resident memory before the connections were opened (idle) or
    /// before the run.
    pub rss_before: u64,
    /// Its resident memory at the end.
    pub rss_after: u64,
}

/// Everything a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings.
    pub config: BenchConfig,
    /// Where the load went.
    pub target: SocketAddr,
    /// Length of the measured phase.
    pub elapsed: Duration,
    /// Counters and latencies.
    pub stats: Stats,
    /// Connections that were open and ready when measuring began.
    pub conns: usize,
    /// The server's cost, with `--server-pid`.
    pub server: Option<ServerUsage>,
    /// The bench's own CPU time over the run.
    pub bench_cpu: Duration,
    /// The machine's cross-CPU round trip around the run, with
    /// `--probe-cpu`.
    pub probe: Option<WakeProbe>,
}

/// The percentiles in the latency table.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl Report {
    /// What one operation is, plural.
    pub fn unit(&self) -> &'static str {
        self.config.workload.unit()
    }

    /// The workload with its main choice, as a title.
    pub fn title(&self) -> String {
        let c = &self.config;
        match c.workload {
            Workload::Transform => format!("transform {}", c.action),
            Workload::Chat => format!(
                "chat {} receivers x {} sender{}",
                c.receivers,
                c.senders,
                if c.senders == 1 { "" } else { "s" }
            ),
            Workload::Idle | Workload::Churn => format!("{} {}", c.workload, c.proto),
            Workload::Chaos => format!(
                "chaos {} ({})",
                c.proto,
                c.misbehave
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Workload::Cmd => "cmd ECHO".to_owned(),
            w => w.to_string(),
        }
    }

    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        per_sec(self.stats.ops as f64, self.elapsed)
    }

    /// Megabytes (10^6) sent per second.
    pub fn mb_out_per_sec(&self) -> f64 {
        per_sec(self.stats.bytes_out as f64 / 1e6, self.elapsed)
    }

    /// Megabytes (10^6) received per second.
    pub fn mb_in_per_sec(&self) -> f64 {
        per_sec(self.stats.bytes_in as f64 / 1e6, self.elapsed)
    }

    /// Server CPU microseconds per operation.
    pub fn server_us_per_op(&self) -> Option<f64> {
        let s = self.server?;
        // Idle's operations are the final check, not the measured phase.
        (self.stats.ops > 0 && self.config.workload != Workload::Idle)
            .then(|| s.cpu.as_secs_f64() * 1e6 / self.stats.ops as f64)
    }

    /// Server memory per connection (idle): growth of its resident memory
    /// divided by the connections held.
    pub fn server_bytes_per_conn(&self) -> Option<f64> {
        let s = self.server?;
        (self.config.workload == Workload::Idle && self.conns > 0)
            .then(|| (s.rss_after as f64 - s.rss_before as f64) / self.conns as f64)
    }

    /// The full report.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut o = String::new();
        let _ = writeln!(o, "====== {} ======", self.title());
        let label = match (&c.label[..], c.server_pid) {
            ("", None) => String::new(),
            ("", Some(pid)) => format!(" (pid {pid})"),
            (l, None) => format!(" ({l})"),
            (l, Some(pid)) => format!(" ({l}, pid {pid})"),
        };
        let _ = writeln!(o, "  target       {}{label}", self.target);
        let _ = writeln!(o, "  connections  {}", self.settings());
        let mode = match c.rate {
            Some(r) => format!("fixed rate {r} /s (latency from each intended send time)"),
            None => "closed loop (next request when a reply comes)".to_owned(),
        };
        if !matches!(
            c.workload,
            Workload::Idle | Workload::Churn | Workload::Chaos
        ) {
            let _ = writeln!(o, "  mode         {mode}");
        }
        let limit = match c.requests {
            Some(n) => format!("{:.1} s or {n} {}", c.duration.as_secs_f64(), self.unit()),
            None => format!("{:.1} s", c.duration.as_secs_f64()),
        };
        let _ = writeln!(o, "  limit        {limit}");
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  {} {} in {:.2} s; {} wrong replies, {} disconnects, {} connect errors{}",
            self.stats.ops,
            self.unit(),
            self.elapsed.as_secs_f64(),
            self.stats.errors,
            self.stats.disconnects,
            self.stats.connect_errors,
            self.extra_counts()
        );
        let _ = writeln!(
            o,
            "  throughput   {:.1} {}/s, {:.1} MB/s sent, {:.1} MB/s received",
            self.ops_per_sec(),
            self.unit(),
            self.mb_out_per_sec(),
            self.mb_in_per_sec()
        );
        if let Some(s) = self.server {
            match self.server_us_per_op() {
                Some(us) => {
                    let _ = writeln!(
                        o,
                        "  server CPU   {us:.3} µs per {} ({:.2} s over the run); bench CPU {:.2} s",
                        singular(self.unit()),
                        s.cpu.as_secs_f64(),
                        self.bench_cpu.as_secs_f64()
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "  server CPU   {:.2} s over the run",
                        s.cpu.as_secs_f64()
                    );
                }
            }
            if let Some(b) = self.server_bytes_per_conn() {
                let _ = writeln!(
                    o,
                    "  server mem   {b:.0} B per connection (VmRSS {} -> {} for {} connections)",
                    human_bytes(s.rss_before),
                    human_bytes(s.rss_after),
                    self.conns
                );
            }
        }
        if let Some(p) = self.probe {
            let _ = writeln!(
                o,
                "  machine      cross-CPU round trip {:.1} µs before the run, {:.1} µs after",
                p.before_us, p.after_us
            );
        }
        let _ = writeln!(o);
        let _ = write!(o, "  latency (µs)");
        for (name, _) in PERCENTILES {
            let _ = write!(o, " {name:>9}");
        }
        let _ = writeln!(o, " {:>9}", "max");
        let _ = write!(o, "  {:12}", "");
        for (_, q) in PERCENTILES {
            let _ = write!(o, " {:>9.1}", micros(self.stats.quantile(q)));
        }
        let _ = writeln!(o, " {:>9.1}", micros(self.stats.max()));
        o
    }

    /// The counters only some workloads have, when not zero.
    fn extra_counts(&self) -> String {
        let s = &self.stats;
        let mut o = String::new();
        if s.lost > 0 {
            let _ = write!(o, ", {} lost", s.lost);
        }
        if self.config.workload == Workload::Chaos {
            let _ = write!(o, ", {} hung, {} expected drops", s.hung, s.dropped);
        }
        o
    }

    fn settings(&self) -> String {
        let c = &self.config;
        match c.workload {
            Workload::Chat => format!(
                "{} receivers, {} senders, {} messages in flight per sender, text {} B",
                c.receivers, c.senders, c.pipeline, c.size
            ),
            Workload::Upload => format!(
                "{}, pipeline {}, files of {} lines of {} B",
                c.conns, c.pipeline, c.lines, c.size
            ),
            Workload::Idle => format!("{} held idle", c.conns),
            Workload::Churn => format!(
                "{} at once, one request each, payload {} B",
                c.conns, c.size
            ),
            Workload::Chaos => format!(
                "{} at once, pipeline {}, payload {} B, pause {:.1} s",
                c.conns,
                c.pipeline,
                c.size,
                c.pause.as_secs_f64()
            ),
            _ => format!("{}, pipeline {}, payload {} B", c.conns, c.pipeline, c.size),
        }
    }

    /// The one-line report.
    pub fn render_quiet(&self) -> String {
        let c = &self.config;
        let mut o = format!(
            "{}{} c={} P={} s={}: {:.1} {}/s, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
            match &c.label[..] {
                "" => String::new(),
                l => format!("[{l}] "),
            },
            self.title(),
            match c.workload {
                Workload::Chat => c.receivers,
                _ => c.conns,
            },
            c.pipeline,
            c.size,
            self.ops_per_sec(),
            self.unit(),
            micros(self.stats.quantile(0.5)),
            micros(self.stats.quantile(0.99)),
            micros(self.stats.quantile(0.999)),
        );
        if let Some(us) = self.server_us_per_op() {
            let _ = write!(o, ", server {us:.3} µs/op");
        }
        if let Some(b) = self.server_bytes_per_conn() {
            let _ = write!(o, ", server {b:.0} B/conn");
        }
        let _ = write!(
            o,
            ", {} errors, {} disconnects",
            self.stats.errors + self.stats.connect_errors + self.stats.lost + self.stats.hung,
            self.stats.disconnects
        );
        if self.config.workload == Workload::Chaos {
            let _ = write!(
                o,
                " ({} hung), {} expected drops",
                self.stats.hung, self.stats.dropped
            );
        }
        if let Some(p) = self.probe {
            let _ = write!(
                o,
                ", cross-CPU round trip {:.1}/{:.1} µs",
                p.before_us, p.after_us
            );
        }
        o
    }

    /// The CSV header line, without newline.
    pub fn csv_header() -> &'static str {
        "label,workload,proto,target,conns,pipeline,size,action,rate,duration_s,ops,ops_per_s,\
         mb_out_per_s,mb_in_per_s,p50_us,p90_us,p99_us,p999_us,max_us,errors,disconnects,\
         connect_errors,lost,server_cpu_s,server_us_per_op,server_rss_before,server_rss_after,\
         server_bytes_per_conn,bench_cpu_s,dropped,hung,probe_before_us,probe_after_us"
    }

    /// This run as one CSV row, without newline.
    pub fn csv_row(&self) -> String {
        let c = &self.config;
        let opt =
            |v: Option<f64>, prec: usize| v.map(|v| format!("{v:.prec$}")).unwrap_or_default();
        let q = |q: f64| format!("{:.1}", micros(self.stats.quantile(q)));
        let s = &self.stats;
        [
            csv_field(&c.label),
            c.workload.to_string(),
            c.protocol().to_string(),
            self.target.to_string(),
            match c.workload {
                Workload::Chat => c.receivers.to_string(),
                _ => c.conns.to_string(),
            },
            c.pipeline.to_string(),
            c.size.to_string(),
            c.action.to_string(),
            c.rate.map(|r| r.to_string()).unwrap_or_default(),
            format!("{:.3}", self.elapsed.as_secs_f64()),
            s.ops.to_string(),
            format!("{:.1}", self.ops_per_sec()),
            format!("{:.2}", self.mb_out_per_sec()),
            format!("{:.2}", self.mb_in_per_sec()),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            format!("{:.1}", micros(s.max())),
            s.errors.to_string(),
            s.disconnects.to_string(),
            s.connect_errors.to_string(),
            s.lost.to_string(),
            opt(self.server.map(|s| s.cpu.as_secs_f64()), 3),
            opt(self.server_us_per_op(), 4),
            self.server
                .map(|s| s.rss_before.to_string())
                .unwrap_or_default(),
            self.server
                .map(|s| s.rss_after.to_string())
                .unwrap_or_default(),
            opt(self.server_bytes_per_conn(), 1),
            format!("{:.3}", self.bench_cpu.as_secs_f64()),
            s.dropped.to_string(),
            s.hung.to_string(),
            opt(self.probe.map(|p| p.before_us), 2),
            opt(self.probe.map(|p| p.after_us), 2),
        ]
        .join(",")
    }

    /// Appends the CSV row to `path`, with the header first when the file
    /// is new or empty.
    pub fn append_csv(&self, path: &Path) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut text = String::new();
        if file.metadata()?.len() == 0 {
            text.push_str(Report::csv_header());
            text.push('\n');
        }
        text.push_str(&self.csv_row());
        text.push('\n');
        file.write_all(text.as_bytes())
    }
}

fn per_sec(amount: f64, elapsed: Duration) -> f64 {
    match elapsed.as_secs_f64() {
        s if s > 0.0 => amount / s,
        _ => 0.0,
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn singular(unit: &str) -> &str {
    match unit {
        "deliveries" => "delivery",
        u => u.strip_suffix('s').unwrap_or(u),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 10 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 10 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A label as one CSV field: quoted when it holds a comma or a quote.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(workload: Workload) -> Report {
        let mut config = BenchConfig::new(workload);
        config.pipeline = 16;
        config.label = "c-epoll".into();
        config.server_pid = Some(42);
        let mut stats = Stats::new();
        for us in 1..=100u64 {
            stats.record(Duration::from_micros(us));
        }
        stats.bytes_out = 6_800;
        stats.bytes_in = 6_800;
        stats.errors = 2;
        stats.disconnects = 1;
        Report {
            config,
            target: "127.0.0.1:8083".parse().unwrap(),
            elapsed: Duration::from_secs(2),
            stats,
            conns: 50,
            server: Some(ServerUsage {
                cpu: Duration::from_micros(37),
                rss_before: 1_000_000,
                rss_after: 1_005_200,
            }),
            bench_cpu: Duration::from_millis(1500),
            probe: None,
        }
    }

    #[test]
    fn the_full_report_has_settings_throughput_cost_and_percentiles() {
        let text = report(Workload::Transform).render();
        for want in [
            "====== transform uppercase ======",
            "127.0.0.1:8083 (c-epoll, pid 42)",
            "50, pipeline 16, payload 64 B",
            "100 requests in 2.00 s; 2 wrong replies, 1 disconnects",
            "throughput   50.0 requests/s",
            "0.370 µs per request",
            "p50       p90       p99     p99.9       max",
            "50.0      90.0      99.0     100.0     100.0",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("server mem"));
    }

    #[test]
    fn idle_reports_memory_per_connection() {
        let r = report(Workload::Idle);
        assert_eq!(r.server_bytes_per_conn(), Some(104.0));
        assert!(r.render().contains("104 B per connection"));
        assert!(r.render_quiet().contains("server 104 B/conn"));
        assert_eq!(report(Workload::Tne).server_bytes_per_conn(), None);
    }

    #[test]
    fn the_quiet_report_is_one_line() {
        let line = report(Workload::Chat).render_quiet();
        assert_eq!(line.lines().count(), 1);
        assert!(
            line.starts_with("[c-epoll] chat 100 receivers x 1 sender c=100 P=16"),
            "{line}"
        );
        assert!(line.contains("50.0 deliveries/s"), "{line}");
        assert!(line.contains("2 errors, 1 disconnects"), "{line}");
    }

    #[test]
    fn the_csv_row_matches_its_header() {
        let r = report(Workload::Transform);
        let header: Vec<&str> = Report::csv_header().split(',').collect();
        let row = r.csv_row();
        let row: Vec<&str> = row.split(',').collect();
        assert_eq!(header.len(), row.len());
        let field = |name| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(field("label"), "c-epoll");
        assert_eq!(field("ops"), "100");
        assert_eq!(field("p99_us"), "99.0");
        assert_eq!(field("server_us_per_op"), "0.3700");
        assert_eq!(field("errors"), "2");
    }

    #[test]
    fn a_csv_file_gets_its_header_once() {
        let path = std::env::temp_dir().join(format!("onepoll-bench-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let r = report(Workload::Tne);
        r.append_csv(&path).unwrap();
        r.append_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], Report::csv_header());
        assert_eq!(lines[1], lines[2]);
    }

    #[test]
    fn labels_with_commas_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
