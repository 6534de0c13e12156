//! `onepoll-bench attack NAME [OPTIONS]`: the command line, parsed with
//! getopts into an [`AttackConfig`] as `bench::args` does for workloads.
//! Every target is in 127.0.0.0/8: there is no way to aim an attack
//! elsewhere.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use getopts::Options;

use crate::config::Protocol;

/// The attacks of issue 16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Chat connections that send nothing and never read.
    ChatSilent,
    /// Connect and close as fast as possible into a full chat room.
    ChatChurn,
    /// cmd connections each pipelining ECHO without reading.
    CmdPipeline,
    /// One connection sending many one-line upload files.
    UploadTiny,
    /// Large shuffles in a row.
    Shuffle,
    /// One chat client pasting long lines to receivers that read slowly.
    ChatPaste,
    /// One address opening as many connections as it can.
    Slots,
    /// Reverse headers of maximum length, trickled one byte at a time.
    TransformHold,
    /// One-byte UDP datagrams: the reply's size against the request's.
    UdpAmp,
    /// A burst of connections the server should refuse, and its log.
    LogFlood,
}

impl Attack {
    /// Every attack, in the order `scripts/attack.sh` runs them.
    pub const ALL: [Attack; 10] = [
        Attack::ChatSilent,
        Attack::ChatChurn,
        Attack::CmdPipeline,
        Attack::UploadTiny,
        Attack::Shuffle,
        Attack::ChatPaste,
        Attack::Slots,
        Attack::TransformHold,
        Attack::UdpAmp,
        Attack::LogFlood,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Attack::ChatSilent => "chat-silent",
            Attack::ChatChurn => "chat-churn",
            Attack::CmdPipeline => "cmd-pipeline",
            Attack::UploadTiny => "upload-tiny",
            Attack::Shuffle => "shuffle",
            Attack::ChatPaste => "chat-paste",
            Attack::Slots => "slots",
            Attack::TransformHold => "transform-hold",
            Attack::UdpAmp => "udp-amp",
            Attack::LogFlood => "log-flood",
        }
    }

    /// The protocol it attacks.
    pub fn protocol(self) -> Protocol {
        match self {
            Attack::ChatSilent | Attack::ChatChurn | Attack::ChatPaste => Protocol::Chat,
            Attack::CmdPipeline | Attack::Slots | Attack::LogFlood => Protocol::Cmd,
            Attack::UploadTiny => Protocol::Upload,
            Attack::Shuffle | Attack::TransformHold => Protocol::Transform,
            Attack::UdpAmp => Protocol::Tne,
        }
    }

    /// `--conns` when not given: connections (chat-silent, cmd-pipeline,
    /// slots), chat-churn's room, log-flood's held connections,
    /// transform-hold's holders, chat-paste's receivers.
    pub fn default_conns(self) -> usize {
        match self {
            Attack::ChatSilent | Attack::Slots => 10_000,
            Attack::CmdPipeline => 5_000,
            Attack::ChatChurn => 1_000,
            Attack::LogFlood => 40,
            Attack::TransformHold => 2,
            Attack::ChatPaste => 5,
            Attack::UploadTiny | Attack::Shuffle | Attack::UdpAmp => 1,
        }
    }

    /// `--count` when not given: files (upload-tiny), shuffles,
    /// datagrams (udp-amp), connects (chat-churn, log-flood: until the
    /// duration ends).
    pub fn default_count(self) -> u64 {
        match self {
            Attack::UploadTiny => 400_000,
            Attack::Shuffle => 3,
            Attack::UdpAmp => 10_000,
            _ => u64::MAX,
        }
    }

    /// `--size` when not given: bytes pipelined per connection
    /// (cmd-pipeline), the shuffle's LENGTH, the pasted line, the datagram,
    /// transform-hold's header LENGTH.
    pub fn default_size(self) -> usize {
        match self {
            Attack::CmdPipeline => 1 << 20,
            Attack::Shuffle | Attack::TransformHold => crate::proto::transform::MAX_LENGTH as usize,
            Attack::ChatPaste => 8_000,
            _ => 1,
        }
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Attack {
    type Err = AttackArgError;
    fn from_str(s: &str) -> Result<Attack, AttackArgError> {
        Attack::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| AttackArgError::Unknown(s.to_owned()))
    }
}

/// Everything one attack needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackConfig {
    /// Which attack.
    pub attack: Attack,
    /// The server's address, in 127.0.0.0/8.
    pub host: Ipv4Addr,
    /// Ports: tne (TCP and UDP), cmd, chat, upload, transform.
    pub ports: [u16; 5],
    /// Connections (see [`Attack::default_conns`]).
    pub conns: usize,
    /// Count (see [`Attack::default_count`]).
    pub count: u64,
    /// Size (see [`Attack::default_size`]).
    pub size: usize,
    /// The attack stops by itself after this long at most.
    pub duration: Duration,
    /// Connections per source address, for attacks from many addresses.
    pub per_addr: usize,
    /// The first source address the attack uses (127.0.0.1 is the
    /// bystander's).
    pub source: Ipv4Addr,
    /// chat-churn: members of the room.
    pub room: usize,
    /// chat-paste: bytes per second each receiver reads.
    pub read_rate: u64,
    /// transform-hold: time between trickled bytes.
    pub interval: Duration,
    /// transform's action table, 2021 or 2023 (for reverse and shuffle).
    pub table: u16,
    /// The bystander's `ECHO` period.
    pub echo_every: Duration,
    /// The server's process, for RSS.
    pub pid: Option<u32>,
    /// How long after the attack the RSS is read again.
    pub settle: Duration,
    /// The server's log file, for log-flood.
    pub log: Option<PathBuf>,
    /// Print the result as one markdown table row.
    pub markdown: bool,
}

const PROTOCOLS: [Protocol; 5] = [
    Protocol::Tne,
    Protocol::Cmd,
    Protocol::Chat,
    Protocol::Upload,
    Protocol::Transform,
];

impl AttackConfig {
    /// The defaults for `attack`.
    pub fn new(attack: Attack) -> AttackConfig {
        AttackConfig {
            attack,
            host: Ipv4Addr::LOCALHOST,
            ports: PROTOCOLS.map(Protocol::default_port),
            conns: attack.default_conns(),
            count: attack.default_count(),
            size: attack.default_size(),
            duration: Duration::from_secs(10),
            per_addr: 30,
            source: Ipv4Addr::new(127, 0, 0, 2),
            room: 1_000,
            read_rate: 200_000,
            interval: Duration::from_secs(1),
            table: 2021,
            echo_every: Duration::from_millis(10),
            pid: None,
            settle: Duration::from_secs(10),
            log: None,
            markdown: false,
        }
    }

    /// The server's address for `protocol`.
    pub fn addr(&self, protocol: Protocol) -> SocketAddrV4 {
        let i = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0);
        SocketAddrV4::new(self.host, self.ports.get(i).copied().unwrap_or(0))
    }

    /// The transform action code of reverse (`shuffle` false) or shuffle
    /// in the configured table.
    pub fn transform_code(&self, shuffle: bool) -> u8 {
        match (self.table, shuffle) {
            (2023, false) => 0x04,
            (2023, true) => 0x08,
            (_, false) => 0x08,
            (_, true) => 0x10,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum AttackCommand {
    /// Run one attack.
    Run(Box<AttackConfig>),
    /// Print the help and exit 0.
    Help,
}

/// An attack command line that cannot be run (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackArgError {
    /// getopts refused the options.
    Options(String),
    /// Not exactly one NAME.
    NameCount(usize),
    /// NAME is no attack.
    Unknown(String),
    /// An option's value is not valid.
    BadValue {
        /// The option, as `--name`.
        option: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl fmt::Display for AttackArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackArgError::Options(msg) => f.write_str(msg),
            AttackArgError::NameCount(0) => f.write_str("no attack NAME given"),
            AttackArgError::NameCount(n) => write!(f, "{n} attack NAMEs given, expected one"),
            AttackArgError::Unknown(name) => {
                let names: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
                write!(
                    f,
                    "unknown attack '{name}' (expected one of {})",
                    names.join(", ")
                )
            }
            AttackArgError::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for --{option}: expected {expected}"
            ),
        }
    }
}

impl std::error::Error for AttackArgError {}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "h",
        "host",
        "server address, within 127.0.0.0/8 (default 127.0.0.1)",
        "ADDR",
    );
    for p in PROTOCOLS {
        let name = p.name();
        o.optopt(
            "",
            &format!("{name}-port"),
            &format!("{name}'s port (default {})", p.default_port()),
            "PORT",
        );
    }
    o.optopt("c", "conns", "connections: chat-silent, slots 10000; cmd-pipeline 5000; log-flood held 40; transform-hold holders 2; chat-paste receivers 5", "N");
    o.optopt("n", "count", "files (upload-tiny 400000), shuffles (3), datagrams (udp-amp 10000), connects (chat-churn, log-flood: no limit)", "N");
    o.optopt("s", "size", "bytes: pipelined per connection (1 MiB), shuffle and transform-hold LENGTH (134217727), pasted line (8000), datagram (1)", "BYTES");
    o.optopt(
        "d",
        "duration",
        "the attack stops by itself after this long (default 10)",
        "SECS",
    );
    o.optopt("", "per-addr", "connections per source address, 127.0.0.2 up (default 30, under the default --max-conns-per-ip)", "N");
    o.optopt(
        "",
        "source",
        "first source address (default 127.0.0.2)",
        "ADDR",
    );
    o.optopt(
        "",
        "room",
        "chat-churn: members of the room (default 1000)",
        "N",
    );
    o.optopt(
        "",
        "read-rate",
        "chat-paste: bytes per second each receiver reads (default 200000)",
        "BYTES",
    );
    o.optopt(
        "",
        "interval",
        "transform-hold: seconds between trickled bytes (default 1)",
        "SECS",
    );
    o.optopt(
        "",
        "table",
        "transform action table, 2021 or 2023 (default 2021)",
        "YEAR",
    );
    o.optopt(
        "",
        "echo-every",
        "the bystander's ECHO period, milliseconds (default 10)",
        "MS",
    );
    o.optopt(
        "",
        "pid",
        "the server's pid: sample its RSS every 100 ms",
        "PID",
    );
    o.optopt(
        "",
        "settle",
        "seconds after the attack to read the RSS again (default 10)",
        "SECS",
    );
    o.optopt(
        "",
        "log",
        "the server's log file (log-flood reports its growth)",
        "FILE",
    );
    o.optflag("", "markdown", "print one markdown table row");
    o.optflag("", "help", "print this help");
    o
}

/// The help text.
pub fn usage() -> String {
    let names: Vec<&str> = Attack::ALL.iter().map(|a| a.name()).collect();
    let brief = format!(
        "Usage: onepoll-bench attack NAME [OPTIONS]\n\n\
        NAME: {}\n\
        Runs one attack of issue 16 against a onepoll server on 127.0.0.0/8 while a\n\
        bystander sends `ECHO x` (cmd) every 10 ms, then prints the bystander's round\n\
        trips (p50/p99/max), the server's RSS (peak, and after --settle, given --pid)\n\
        and the attack's own figures. Every attack stops by itself and closes\n\
        everything it opened.",
        names.join(" | ")
    );
    options().usage(&brief)
}

fn value<T: FromStr>(
    m: &getopts::Matches,
    long: &str,
    expected: &'static str,
    ok: impl Fn(&T) -> bool,
) -> Result<Option<T>, AttackArgError> {
    let Some(text) = m.opt_str(long) else {
        return Ok(None);
    };
    match text.parse::<T>() {
        Ok(v) if ok(&v) => Ok(Some(v)),
        _ => Err(AttackArgError::BadValue {
            option: long.to_owned(),
            value: text,
            expected,
        }),
    }
}

fn seconds(m: &getopts::Matches, long: &str) -> Result<Option<Duration>, AttackArgError> {
    let secs = value(m, long, "seconds, 0 to 3600", |s: &f64| {
        (0.0..=3600.0).contains(s)
    })?;
    Ok(secs.map(Duration::from_secs_f64))
}

fn loopback(m: &getopts::Matches, long: &str) -> Result<Option<Ipv4Addr>, AttackArgError> {
    value(m, long, "an IPv4 address in 127.0.0.0/8", |a: &Ipv4Addr| {
        a.is_loopback()
    })
}

/// Parses the arguments after `attack`.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<AttackCommand, AttackArgError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let m = options()
        .parse(&args)
        .map_err(|e| AttackArgError::Options(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(AttackCommand::Help);
    }
    let [name] = m.free.as_slice() else {
        return Err(AttackArgError::NameCount(m.free.len()));
    };
    let mut c = AttackConfig::new(name.parse()?);
    c.host = loopback(&m, "host")?.unwrap_or(c.host);
    for (i, p) in PROTOCOLS.iter().enumerate() {
        let long = format!("{}-port", p.name());
        if let (Some(port), Some(slot)) = (
            value(&m, &long, "a port from 1 to 65535", |p: &u16| *p > 0)?,
            c.ports.get_mut(i),
        ) {
            *slot = port;
        }
    }
    let positive = |v: &usize| *v > 0;
    c.conns = value(&m, "conns", "a whole number, 1 to 100000", |v| {
        positive(v) && *v <= 100_000
    })?
    .unwrap_or(c.conns);
    c.count =
        value(&m, "count", "a whole number, at least 1", |v: &u64| *v > 0)?.unwrap_or(c.count);
    c.size = value(&m, "size", "a number of bytes, at least 1", positive)?.unwrap_or(c.size);
    if c.attack.protocol() == Protocol::Transform
        && c.size > crate::proto::transform::MAX_LENGTH as usize
    {
        return Err(AttackArgError::BadValue {
            option: "size".to_owned(),
            value: c.size.to_string(),
            expected: "at most 134217727 (transform's LENGTH)",
        });
    }
    if let Some(d) = seconds(&m, "duration")? {
        if d.is_zero() {
            return Err(AttackArgError::BadValue {
                option: "duration".to_owned(),
                value: "0".to_owned(),
                expected: "seconds, more than 0",
            });
        }
        c.duration = d;
    }
    c.per_addr =
        value(&m, "per-addr", "a whole number, at least 1", positive)?.unwrap_or(c.per_addr);
    c.source = loopback(&m, "source")?.unwrap_or(c.source);
    c.room = value(&m, "room", "a whole number, 1 to 100000", |v| {
        positive(v) && *v <= 100_000
    })?
    .unwrap_or(c.room);
    c.read_rate = value(
        &m,
        "read-rate",
        "bytes per second, at least 1",
        |v: &u64| *v > 0,
    )?
    .unwrap_or(c.read_rate);
    c.interval = seconds(&m, "interval")?.unwrap_or(c.interval);
    c.table = value(&m, "table", "2021 or 2023", |t: &u16| {
        matches!(t, 2021 | 2023)
    })?
    .unwrap_or(c.table);
    if let Some(ms) = value(&m, "echo-every", "milliseconds, 1 to 10000", |v: &u64| {
        (1..=10_000).contains(v)
    })? {
        c.echo_every = Duration::from_millis(ms);
    }
    c.pid = value(&m, "pid", "a process id", |p: &u32| *p > 0)?;
    c.settle = seconds(&m, "settle")?.unwrap_or(c.settle);
    c.log = m.opt_str("log").map(PathBuf::from);
    c.markdown = m.opt_present("markdown");
    Ok(AttackCommand::Run(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> AttackConfig {
        match parse(args) {
            Ok(AttackCommand::Run(c)) => *c,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn every_attack_parses_with_its_defaults() {
        for a in Attack::ALL {
            let c = config(&[a.name()]);
            assert_eq!(c.attack, a);
            assert_eq!(c.conns, a.default_conns());
            assert_eq!(c.host, Ipv4Addr::LOCALHOST);
            assert_eq!(c.addr(Protocol::Cmd).port(), 8008);
        }
        assert_eq!(config(&["cmd-pipeline"]).size, 1 << 20);
        assert_eq!(config(&["shuffle"]).count, 3);
    }

    #[test]
    fn options_are_read() {
        let c = config(&[
            "slots",
            "-c",
            "7",
            "-d",
            "0.5",
            "--cmd-port",
            "9000",
            "--source",
            "127.0.3.1",
            "--pid",
            "42",
            "--settle",
            "0",
            "--markdown",
            "--table",
            "2023",
            "--per-addr",
            "3",
        ]);
        assert_eq!((c.conns, c.per_addr), (7, 3));
        assert_eq!(c.duration, Duration::from_millis(500));
        assert_eq!(c.addr(Protocol::Cmd), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.source, Ipv4Addr::new(127, 0, 3, 1));
        assert_eq!(
            (c.pid, c.settle, c.markdown),
            (Some(42), Duration::ZERO, true)
        );
        assert_eq!(
            (c.transform_code(false), c.transform_code(true)),
            (0x04, 0x08)
        );
        assert_eq!(config(&["shuffle"]).transform_code(true), 0x10);
    }

    #[test]
    fn targets_outside_loopback_and_bad_values_are_refused() {
        for bad in [
            &["slots", "-h", "192.0.2.1"][..],
            &["slots", "--source", "10.0.0.1"],
            &["slots", "-c", "0"],
            &["slots", "-d", "0"],
            &["slots", "--table", "2022"],
            &["shuffle", "-s", "134217728"],
        ] {
            assert!(
                matches!(parse(bad), Err(AttackArgError::BadValue { .. })),
                "{bad:?} accepted"
            );
        }
        assert_eq!(parse::<&str>(&[]), Err(AttackArgError::NameCount(0)));
        assert!(matches!(parse(&["nuke"]), Err(AttackArgError::Unknown(_))));
        assert_eq!(parse(&["--help"]), Ok(AttackCommand::Help));
    }
}
