//! The load generator's command line: parsed with getopts into a
//! [`BenchConfig`], every value validated, and the target resolved under the
//! loopback rule (a non-loopback target only when `--host` names it).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use getopts::Options;

use crate::config::Protocol;
use crate::proto::transform::{Action, Table};

/// How long a run waits for a reply unless `--timeout` says otherwise.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

use super::chaos::{self, Misbehave};

/// What one run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// transform requests (action, size, pipeline depth).
    Transform,
    /// tne lines over TCP.
    Tne,
    /// tne datagrams over UDP.
    TneUdp,
    /// cmd `ECHO` after one `HELO`.
    Cmd,
    /// chat fan-out: senders' messages timed at the receivers.
    Chat,
    /// upload files of `--lines` lines of `--size` bytes.
    Upload,
    /// N connections held idle: server memory per connection.
    Idle,
    /// connect, one request, close, over and over.
    Churn,
    /// misbehaving connections, one misbehaviour each, over and over.
    Chaos,
}

impl Workload {
    /// Every workload, in the order `--help` lists them.
    pub const ALL: [Workload; 9] = [
        Workload::Transform,
        Workload::Tne,
        Workload::TneUdp,
        Workload::Cmd,
        Workload::Chat,
        Workload::Upload,
        Workload::Idle,
        Workload::Churn,
        Workload::Chaos,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Transform => "transform",
            Workload::Tne => "tne",
            Workload::TneUdp => "tne-udp",
            Workload::Cmd => "cmd",
            Workload::Chat => "chat",
            Workload::Upload => "upload",
            Workload::Idle => "idle",
            Workload::Churn => "churn",
            Workload::Chaos => "chaos",
        }
    }

    /// What one operation is, plural, as reports count it.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Chat => "deliveries",
            Workload::Upload => "files",
            Workload::Idle | Workload::Churn | Workload::Chaos => "connections",
            _ => "requests",
        }
    }

    /// The protocol it speaks; idle, churn and chaos speak `--proto`.
    pub fn protocol(self, proto: Protocol) -> Protocol {
        match self {
            Workload::Transform => Protocol::Transform,
            Workload::Tne | Workload::TneUdp => Protocol::Tne,
            Workload::Cmd => Protocol::Cmd,
            Workload::Chat => Protocol::Chat,
            Workload::Upload => Protocol::Upload,
            Workload::Idle | Workload::Churn | Workload::Chaos => proto,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = ArgError;
    fn from_str(s: &str) -> Result<Workload, ArgError> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| ArgError::UnknownWorkload(s.to_owned()))
    }
}

/// Everything one run needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// What to drive.
    pub workload: Workload,
    /// Host name or address to connect to.
    pub host: String,
    /// Whether `--host` named it (allows a non-loopback target).
    pub host_explicit: bool,
    /// Port; the protocol's default when not given.
    pub port: u16,
    /// Connections (idle: connections held; churn: connections at once).
    pub conns: usize,
    /// Requests outstanding per connection (chat: messages per sender
    /// not yet delivered to every receiver).
    pub pipeline: usize,
    /// Payload bytes: transform data, tne message, ECHO text, chat text,
    /// upload line (without LF).
    pub size: usize,
    /// transform action.
    pub action: Action,
    /// How long the measured phase lasts (idle: how long connections are
    /// held).
    pub duration: Duration,
    /// Stop after this many operations.
    pub requests: Option<u64>,
    /// Fixed rate, operations per second over all connections (chat:
    /// messages per second over all senders); latency is then measured
    /// from each operation's intended start.
    pub rate: Option<f64>,
    /// chat: receiving connections.
    pub receivers: usize,
    /// chat: sending connections.
    pub senders: usize,
    /// upload: lines per file.
    pub lines: usize,
    /// idle, churn and chaos: the protocol spoken.
    pub proto: Protocol,
    /// chaos: the misbehaviours, taken in turn by each new connection.
    pub misbehave: Vec<Misbehave>,
    /// chaos: how long a slow reader stops reading, and a half-open
    /// connection is held.
    pub pause: Duration,
    /// chaos: how long the server may owe a reply or a close.
    pub hang_limit: Duration,
    /// The server's process, for CPU time and memory.
    pub server_pid: Option<u32>,
    /// Time the machine's cross-CPU wake-up cost against this CPU (the
    /// server's) before and after the run (see `bench::probe`).
    pub probe_cpu: Option<usize>,
    /// One line of output.
    pub quiet: bool,
    /// Append a CSV row here.
    pub csv: Option<PathBuf>,
    /// A name for the server under test, printed and written to the CSV.
    pub label: String,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// transform: the action table the server speaks (`--table`).
    pub table: Table,
    /// How long the run waits for a reply (any reply, on any connection)
    /// before it stops and says what it waited for (`--timeout`).
    pub reply_timeout: Duration,
    /// Write the latency distribution here, in HdrHistogram's percentile
    /// form (`--hgrm`).
    pub hgrm: Option<PathBuf>,
}

impl BenchConfig {
    /// The defaults for `workload`.
    pub fn new(workload: Workload) -> BenchConfig {
        let proto = Protocol::Tne;
        BenchConfig {
            workload,
            host: "127.0.0.1".to_owned(),
            host_explicit: false,
            port: workload.protocol(proto).default_port(),
            conns: 50,
            pipeline: 1,
            size: 64,
            action: Action::Uppercase,
            duration: Duration::from_secs(5),
            requests: None,
            rate: None,
            receivers: 100,
            senders: 1,
            lines: 10,
            proto,
            misbehave: Misbehave::ALL.to_vec(),
            pause: Duration::from_secs(2),
            hang_limit: Duration::from_secs(10),
            server_pid: None,
            probe_cpu: None,
            quiet: false,
            csv: None,
            label: String::new(),
            progress: false,
            table: Table::Y2021,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            hgrm: None,
        }
    }

    /// The protocol this run speaks.
    pub fn protocol(&self) -> Protocol {
        self.workload.protocol(self.proto)
    }

    /// Resolves the target, refusing one outside loopback unless `--host`
    /// named it.
    pub fn target(&self) -> Result<SocketAddr, ArgError> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ArgError::Unresolved(self.host.clone()))?;
        check_target(addr, self.host_explicit)?;
        Ok(addr)
    }
}

/// The loopback rule: a target outside loopback only when it was named
/// explicitly with `--host`.
pub fn check_target(addr: SocketAddr, host_explicit: bool) -> Result<(), ArgError> {
    if addr.ip().is_loopback() || host_explicit {
        Ok(())
    } else {
        Err(ArgError::NotLoopback(addr))
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run one workload.
    Run(Box<BenchConfig>),
    /// Print the help and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A command line that cannot be run (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// getopts refused the options.
    Options(String),
    /// No WORKLOAD given, or more than one.
    WorkloadCount(usize),
    /// WORKLOAD names none.
    UnknownWorkload(String),
    /// An option's value is not valid.
    BadValue {
        /// The option, as `--name`.
        option: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// An option that this workload cannot use.
    NotFor {
        /// The option, as `--name`.
        option: &'static str,
        /// The workload.
        workload: Workload,
    },
    /// The host resolved to no address.
    Unresolved(String),
    /// A non-loopback target without an explicit `--host`.
    NotLoopback(SocketAddr),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Options(msg) => f.write_str(msg),
            ArgError::WorkloadCount(0) => f.write_str("no WORKLOAD given"),
            ArgError::WorkloadCount(n) => write!(f, "{n} WORKLOADs given, expected one"),
            ArgError::UnknownWorkload(w) => write!(
                f,
                "unknown workload '{w}' (expected transform, tne, tne-udp, cmd, chat, upload, idle, churn or chaos)"
            ),
            ArgError::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for {option}: expected {expected}"
            ),
            ArgError::NotFor { option, workload } => {
                write!(f, "{option} does not apply to the {workload} workload")
            }
            ArgError::Unresolved(host) => write!(f, "cannot resolve host '{host}'"),
            ArgError::NotLoopback(addr) => write!(
                f,
                "target {addr} is not a loopback address; name it with --host to load it anyway"
            ),
        }
    }
}

impl std::error::Error for ArgError {}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt("h", "host", "server host (default 127.0.0.1; naming a non-loopback host here is the only way to load one)", "HOST");
    o.optopt("p", "port", "server port (default: the protocol's)", "PORT");
    o.optopt("c", "conns", "connections (default 50)", "N");
    o.optopt(
        "P",
        "pipeline",
        "requests outstanding per connection (default 1)",
        "N",
    );
    o.optopt("s", "size", "payload bytes (default 64)", "BYTES");
    o.optopt(
        "a",
        "action",
        "transform action: uppercase, lowercase, title-case, reverse, shuffle, random (2023 table) (default uppercase)",
        "NAME",
    );
    o.optopt(
        "d",
        "duration",
        "seconds to run; idle: seconds to hold (default 5)",
        "SECS",
    );
    o.optopt("n", "requests", "stop after N operations", "N");
    o.optopt("r", "rate", "fixed rate, operations per second over all connections (latency from the intended send time)", "OPS");
    o.optopt(
        "",
        "receivers",
        "chat: receiving connections (default 100)",
        "N",
    );
    o.optopt("", "senders", "chat: sending connections (default 1)", "N");
    o.optopt("", "lines", "upload: lines per file (default 10)", "N");
    o.optopt(
        "",
        "proto",
        "idle, churn, chaos: protocol spoken (default tne)",
        "PROTOCOL",
    );
    o.optopt(
        "",
        "misbehave",
        "chaos: misbehaviours taken in turn, comma-separated: slow, trickle, reset, garbage, half-open (default all)",
        "LIST",
    );
    o.optopt(
        "",
        "pause",
        "chaos: seconds a slow reader stops reading and a half-open connection is held (default 2)",
        "SECS",
    );
    o.optopt(
        "",
        "hang-limit",
        "chaos: seconds the server may owe a reply or a close before the connection counts as hung (default 10)",
        "SECS",
    );
    o.optopt(
        "",
        "server-pid",
        "server process: report its CPU time per operation and memory",
        "PID",
    );
    o.optopt(
        "",
        "probe-cpu",
        "before and after the run, time loopback round trips to a thread on this CPU (the server's): tells a slow spell of the machine from a slow server",
        "CPU",
    );
    o.optflag("q", "quiet", "print one line");
    o.optopt(
        "",
        "csv",
        "append a machine-readable row to FILE (header when new)",
        "FILE",
    );
    o.optopt(
        "",
        "label",
        "name of the server under test, for the report and CSV",
        "TEXT",
    );
    o.optflag(
        "",
        "progress",
        "a progress line on stderr every second (default: when stderr is a terminal)",
    );
    o.optflag("", "help", "print this help");
    o.optopt(
        "",
        "table",
        "transform: the server's action table, 2021 or 2023 (see onepoll --transform-table; default 2021)",
        "YEAR",
    );
    o.optopt(
        "",
        "timeout",
        "seconds to wait for a reply before giving up and saying why (default 10)",
        "SECS",
    );
    o.optflag("V", "version", "print the version and exit");
    o.optopt(
        "",
        "hgrm",
        "write the latency distribution to FILE in HdrHistogram's percentile form (for scripts/plot-latency.sh)",
        "FILE",
    );
    o
}

/// The help text.
pub fn usage() -> String {
    let brief = "Usage: onepoll-bench [OPTIONS] WORKLOAD\n\n\
        WORKLOAD: transform | tne | tne-udp | cmd | chat | upload | idle | churn | chaos\n\
        Drives a onepoll server (or any server speaking its protocols) from one event loop\n\
        over many connections, checks every reply byte for byte, and prints throughput,\n\
        latency percentiles, errors and disconnects.\n\
        `onepoll-bench attack --help`: the hostile loads of issue 16.";
    options().usage(brief)
}

fn number<T: FromStr>(
    m: &getopts::Matches,
    long: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ArgError> {
    match m.opt_str(long) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| ArgError::BadValue {
            option: option_name(long),
            value,
            expected,
        }),
    }
}

fn option_name(long: &str) -> &'static str {
    match long {
        "port" => "--port",
        "conns" => "--conns",
        "pipeline" => "--pipeline",
        "size" => "--size",
        "duration" => "--duration",
        "requests" => "--requests",
        "rate" => "--rate",
        "receivers" => "--receivers",
        "senders" => "--senders",
        "lines" => "--lines",
        "server-pid" => "--server-pid",
        "probe-cpu" => "--probe-cpu",
        "misbehave" => "--misbehave",
        "pause" => "--pause",
        "hang-limit" => "--hang-limit",
        "timeout" => "--timeout",
        _ => "an option",
    }
}

fn positive(
    m: &getopts::Matches,
    long: &'static str,
    max: usize,
) -> Result<Option<usize>, ArgError> {
    const EXPECTED: &str = "a whole number within bounds (at least 1)";
    let value = number::<usize>(m, long, EXPECTED)?;
    match value {
        Some(v) if v == 0 || v > max => Err(ArgError::BadValue {
            option: option_name(long),
            value: v.to_string(),
            expected: EXPECTED,
        }),
        other => Ok(other),
    }
}

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, ArgError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let m = options()
        .parse(&args)
        .map_err(|e| ArgError::Options(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Command::Help);
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }
    if m.free.len() != 1 {
        return Err(ArgError::WorkloadCount(m.free.len()));
    }
    let [workload] = m.free.as_slice() else {
        return Err(ArgError::WorkloadCount(m.free.len()));
    };
    let workload: Workload = workload.parse()?;
    let mut c = BenchConfig::new(workload);

    if let Some(proto) = m.opt_str("proto") {
        if !matches!(workload, Workload::Idle | Workload::Churn | Workload::Chaos) {
            return Err(ArgError::NotFor {
                option: "--proto",
                workload,
            });
        }
        c.proto = proto.parse().map_err(|_| ArgError::BadValue {
            option: "--proto",
            value: proto.clone(),
            expected: "tne, cmd, chat, upload or transform",
        })?;
        c.port = c.proto.default_port();
    }
    if let Some(host) = m.opt_str("host") {
        c.host = host;
        c.host_explicit = true;
    }
    if let Some(port) = number::<u16>(&m, "port", "a port from 1 to 65535")? {
        if port == 0 {
            return Err(ArgError::BadValue {
                option: "--port",
                value: "0".to_owned(),
                expected: "a port from 1 to 65535",
            });
        }
        c.port = port;
    }
    c.conns = positive(&m, "conns", 1_000_000)?.unwrap_or(c.conns);
    c.pipeline = positive(&m, "pipeline", 65_536)?.unwrap_or(c.pipeline);
    c.receivers = positive(&m, "receivers", 1_000_000)?.unwrap_or(c.receivers);
    c.senders = positive(&m, "senders", 10_000)?.unwrap_or(c.senders);
    c.lines = positive(&m, "lines", 1_000_000_000)?.unwrap_or(c.lines);
    if let Some(size) = number::<usize>(&m, "size", "a number of bytes")? {
        c.size = size;
    }
    validate_size(&c)?;
    if let Some(action) = m.opt_str("action") {
        if workload != Workload::Transform {
            return Err(ArgError::NotFor {
                option: "--action",
                workload,
            });
        }
        c.action =
            Action::ALL
                .into_iter()
                .find(|a| a.name() == action)
                .ok_or(ArgError::BadValue {
                    option: "--action",
                    value: action,
                    expected: "uppercase, lowercase, title-case, reverse, shuffle or random",
                })?;
    }
    if let Some(table) = m.opt_str("table") {
        if workload != Workload::Transform {
            return Err(ArgError::NotFor {
                option: "--table",
                workload,
            });
        }
        c.table = table.parse().map_err(|_| ArgError::BadValue {
            option: "--table",
            value: table,
            expected: "2021 or 2023",
        })?;
    }
    if c.table.code(c.action).is_none() {
        return Err(ArgError::BadValue {
            option: "--action",
            value: c.action.name().to_string(),
            expected: match c.table {
                Table::Y2021 => "uppercase, lowercase, title-case, reverse or shuffle with --table 2021 (random needs --table 2023)",
                Table::Y2023 => "uppercase, lowercase, reverse, shuffle or random with --table 2023",
            },
        });
    }
    if let Some(secs) = number::<f64>(&m, "timeout", "seconds, more than 0 and at most 3600")? {
        if !(secs > 0.0 && secs <= 3600.0) {
            return Err(ArgError::BadValue {
                option: "--timeout",
                value: secs.to_string(),
                expected: "seconds, more than 0 and at most 3600",
            });
        }
        c.reply_timeout = Duration::from_secs_f64(secs);
    }
    if let Some(secs) = number::<f64>(&m, "duration", "seconds, more than 0 and at most 3600")? {
        if !(secs > 0.0 && secs <= 3600.0) {
            return Err(ArgError::BadValue {
                option: "--duration",
                value: secs.to_string(),
                expected: "seconds, more than 0 and at most 3600",
            });
        }
        c.duration = Duration::from_secs_f64(secs);
    }
    if let Some(n) = number::<u64>(&m, "requests", "a whole number, at least 1")? {
        if n == 0 {
            return Err(ArgError::BadValue {
                option: "--requests",
                value: "0".to_owned(),
                expected: "a whole number, at least 1",
            });
        }
        c.requests = Some(n);
    }
    if let Some(rate) = number::<f64>(&m, "rate", "operations per second, more than 0")? {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(ArgError::BadValue {
                option: "--rate",
                value: rate.to_string(),
                expected: "operations per second, more than 0",
            });
        }
        if matches!(workload, Workload::Idle | Workload::Churn | Workload::Chaos) {
            return Err(ArgError::NotFor {
                option: "--rate",
                workload,
            });
        }
        c.rate = Some(rate);
    }
    parse_chaos(&m, &mut c)?;
    c.server_pid = number(&m, "server-pid", "a process id")?;
    c.probe_cpu = number(&m, "probe-cpu", "a CPU number")?;
    c.quiet = m.opt_present("quiet");
    c.csv = m.opt_str("csv").map(PathBuf::from);
    c.hgrm = m.opt_str("hgrm").map(PathBuf::from);
    c.label = m.opt_str("label").unwrap_or_default();
    c.progress = m.opt_present("progress");
    Ok(Command::Run(Box::new(c)))
}

/// The chaos workload's options, refused for any other.
fn parse_chaos(m: &getopts::Matches, c: &mut BenchConfig) -> Result<(), ArgError> {
    for option in ["misbehave", "pause", "hang-limit"] {
        if m.opt_present(option) && c.workload != Workload::Chaos {
            return Err(ArgError::NotFor {
                option: option_name(option),
                workload: c.workload,
            });
        }
    }
    if let Some(list) = m.opt_str("misbehave") {
        c.misbehave = chaos::parse_list(&list).ok_or(ArgError::BadValue {
            option: "--misbehave",
            value: list,
            expected: "all, or a list of slow, trickle, reset, garbage, half-open",
        })?;
    }
    const SECS: &str = "seconds, more than 0 and at most 3600";
    for (long, field) in [("pause", &mut c.pause), ("hang-limit", &mut c.hang_limit)] {
        if let Some(secs) = number::<f64>(m, long, SECS)? {
            if !(secs > 0.0 && secs <= 3600.0) {
                return Err(ArgError::BadValue {
                    option: option_name(long),
                    value: secs.to_string(),
                    expected: SECS,
                });
            }
            *field = Duration::from_secs_f64(secs);
        }
    }
    Ok(())
}

/// Sizes each protocol can carry: a tne message is at least one byte, a
/// transform LENGTH has 27 bits, lines stay within the default
/// `--max-line`.
fn validate_size(c: &BenchConfig) -> Result<(), ArgError> {
    let (min, max, expected) = match c.protocol() {
        Protocol::Transform => (
            0,
            crate::proto::transform::MAX_LENGTH as usize,
            "0 to 134217727 bytes",
        ),
        Protocol::Tne => (1, 8192 - 9, "1 to 8183 bytes (a tne line within 8192)"),
        Protocol::Cmd => (0, 8192 - 5, "0 to 8187 bytes (an ECHO line within 8192)"),
        Protocol::Chat if c.workload == Workload::Chaos => (0, usize::MAX, "any"),
        Protocol::Chat => (40, 8192, "40 to 8192 bytes (room for the timestamp)"),
        Protocol::Upload => (0, 64 << 20, "0 to 64 MiB per line"),
        // The protocols served only when named have no bench workload.
        other => {
            return Err(ArgError::BadValue {
                option: "--proto",
                value: other.name().into(),
                expected: "tne, cmd, chat, upload or transform",
            })
        }
    };
    if c.size < min || c.size > max {
        return Err(ArgError::BadValue {
            option: "--size",
            value: c.size.to_string(),
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> BenchConfig {
        match parse(args) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn error(args: &[&str]) -> ArgError {
        match parse(args) {
            Err(e) => e,
            Ok(c) => panic!("{args:?} was accepted: {c:?}"),
        }
    }

    #[test]
    fn defaults_target_loopback_on_the_protocols_port() {
        let c = config(&["transform"]);
        assert_eq!(c.host, "127.0.0.1");
        assert!(!c.host_explicit);
        assert_eq!((c.port, c.conns, c.pipeline, c.size), (8083, 50, 1, 64));
        assert_eq!(c.duration, Duration::from_secs(5));
        assert_eq!(config(&["cmd"]).port, 8008);
        assert_eq!(config(&["tne-udp"]).port, 20003);
        assert_eq!(config(&["churn", "--proto", "transform"]).port, 8083);
        assert_eq!(config(&["chat", "--size", "100"]).port, 6000);
    }

    #[test]
    fn every_value_is_validated() {
        for bad in [
            &["transform", "-c", "0"][..],
            &["transform", "-P", "x"],
            &["transform", "-d", "0"],
            &["transform", "-d", "4000"],
            &["transform", "-n", "0"],
            &["transform", "--rate", "-1"],
            &["transform", "-p", "0"],
            &["transform", "-p", "70000"],
            &["transform", "-a", "sideways"],
            &["transform", "-s", "134217728"],
            &["tne", "-s", "0"],
            &["chat", "-s", "10"],
            &["idle", "--proto", "gopher"],
        ] {
            assert!(
                matches!(error(bad), ArgError::BadValue { .. }),
                "{bad:?} accepted"
            );
        }
        assert_eq!(error(&[]), ArgError::WorkloadCount(0));
        assert_eq!(error(&["tne", "cmd"]), ArgError::WorkloadCount(2));
        assert_eq!(
            error(&["gopher"]),
            ArgError::UnknownWorkload("gopher".into())
        );
        assert!(matches!(error(&["--frob", "tne"]), ArgError::Options(_)));
    }

    #[test]
    fn options_that_do_not_apply_are_refused() {
        assert!(matches!(
            error(&["tne", "--action", "reverse"]),
            ArgError::NotFor { .. }
        ));
        assert!(matches!(
            error(&["transform", "--proto", "tne"]),
            ArgError::NotFor { .. }
        ));
        assert!(matches!(
            error(&["churn", "--rate", "10"]),
            ArgError::NotFor { .. }
        ));
    }

    #[test]
    fn all_options_are_read() {
        let c = config(&[
            "transform",
            "-p",
            "9000",
            "-c",
            "7",
            "-P",
            "16",
            "-s",
            "1000",
            "-a",
            "shuffle",
            "-d",
            "0.5",
            "-n",
            "99",
            "--rate",
            "1000",
            "--server-pid",
            "42",
            "-q",
            "--csv",
            "/tmp/x.csv",
            "--label",
            "c-epoll",
        ]);
        assert_eq!((c.port, c.conns, c.pipeline, c.size), (9000, 7, 16, 1000));
        assert_eq!(c.action, Action::Shuffle);
        assert_eq!(c.duration, Duration::from_millis(500));
        assert_eq!(
            (c.requests, c.rate, c.server_pid),
            (Some(99), Some(1000.0), Some(42))
        );
        assert!(c.quiet);
        assert_eq!(c.csv, Some(PathBuf::from("/tmp/x.csv")));
        assert_eq!(c.label, "c-epoll");
        assert_eq!(parse(&["--help", "x"]), Ok(Command::Help));
    }

    #[test]
    fn chaos_takes_its_misbehaviours_pause_and_hang_limit() {
        let c = config(&["chaos"]);
        assert_eq!(c.misbehave, Misbehave::ALL.to_vec());
        assert_eq!(
            (c.pause, c.hang_limit),
            (Duration::from_secs(2), Duration::from_secs(10))
        );
        let c = config(&[
            "chaos",
            "--proto",
            "chat",
            "--misbehave",
            "reset,garbage",
            "--pause",
            "0.5",
            "--hang-limit",
            "3",
        ]);
        assert_eq!(c.protocol(), Protocol::Chat);
        assert_eq!(c.port, 6000);
        assert_eq!(c.misbehave, vec![Misbehave::Reset, Misbehave::Garbage]);
        assert_eq!(c.pause, Duration::from_millis(500));
        assert_eq!(c.hang_limit, Duration::from_secs(3));
        for bad in [
            &["chaos", "--misbehave", "rude"][..],
            &["chaos", "--pause", "0"],
            &["chaos", "--hang-limit", "x"],
        ] {
            assert!(
                matches!(error(bad), ArgError::BadValue { .. }),
                "{bad:?} accepted"
            );
        }
        for bad in [
            &["tne", "--misbehave", "slow"][..],
            &["churn", "--pause", "1"],
            &["chaos", "--rate", "5"],
        ] {
            assert!(
                matches!(error(bad), ArgError::NotFor { .. }),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn a_non_loopback_target_needs_an_explicit_host() {
        let far: SocketAddr = "192.0.2.7:8083".parse().unwrap();
        assert_eq!(check_target(far, false), Err(ArgError::NotLoopback(far)));
        assert_eq!(check_target(far, true), Ok(()));
        for near in ["127.0.0.1:1", "127.9.9.9:1", "[::1]:1"] {
            assert_eq!(check_target(near.parse().unwrap(), false), Ok(()));
        }
    }

    #[test]
    fn the_default_and_localhost_resolve_to_loopback() {
        let c = config(&["tne"]);
        assert!(c.target().unwrap().ip().is_loopback());
        let c = config(&["tne", "-h", "localhost", "-p", "1234"]);
        let t = c.target().unwrap();
        assert!(t.ip().is_loopback());
        assert_eq!(t.port(), 1234);
    }
}
