//! The server's command line (`docs/PROTOCOLS.md`, "The server"): parsed
//! with getopts into a [`Config`], every value validated, errors as a type
//! the binary turns into one line, the usage and exit code 2.

use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

use crate::config::{Config, Protocol, UploadLayout};
use crate::server::admission;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server (boxed: a config is large beside the other cases).
    Run(Box<Config>),
    /// Print the help text and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// A command line that cannot be run: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// getopts refused the options (unknown flag, missing value...).
    Options(String),
    /// An option's value is not valid.
    BadValue {
        /// The option, as `--name`.
        option: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A positional argument names no protocol.
    UnknownProtocol(String),
    /// A port that is not a number from 0 to 65535.
    BadPort(String),
    /// The same protocol named twice.
    Duplicate(Protocol),
    /// `--port` without exactly one protocol.
    PortNeedsOneProtocol,
    /// `--port` and `PROTOCOL=PORT` together.
    PortTwice(Protocol),
    /// `-v` and `-q` together.
    VerboseAndQuiet,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Options(msg) => f.write_str(msg),
            UsageError::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for {option}: expected {expected}"
            ),
            UsageError::UnknownProtocol(name) => write!(
                f,
                "unknown protocol '{name}' (expected tne, cmd, chat, upload, transform or stats)"
            ),
            UsageError::BadPort(port) => {
                write!(
                    f,
                    "invalid port '{port}': expected a number from 0 to 65535"
                )
            }
            UsageError::Duplicate(p) => write!(f, "protocol '{p}' named twice"),
            UsageError::PortNeedsOneProtocol => {
                f.write_str("--port needs exactly one PROTOCOL to apply to")
            }
            UsageError::PortTwice(p) => {
                write!(f, "port of '{p}' given both by --port and by {p}=PORT")
            }
            UsageError::VerboseAndQuiet => f.write_str("--verbose and --quiet exclude each other"),
        }
    }
}

impl std::error::Error for UsageError {}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "b",
        "bind",
        "address to listen on, IPv4 or IPv6, or a host name resolved at start (default 0.0.0.0)",
        "ADDR",
    );
    o.optopt(
        "p",
        "port",
        "port of the one PROTOCOL named (0: any free port)",
        "PORT",
    );
    o.optopt(
        "d",
        "upload-dir",
        "where uploads are saved, created if missing (default ./uploads)",
        "DIR",
    );
    o.optopt(
        "",
        "upload-layout",
        "flat: DIR/k.txt; per-connection: DIR/<conn>/k.txt (default flat)",
        "LAYOUT",
    );
    o.optflag(
        "",
        "upload-fsync",
        "flush each upload and its directory entry to disk before A (slower)",
    );
    o.optopt(
        "",
        "max-conns",
        "TCP connections open at once, all protocols (default 10000)",
        "N",
    );
    o.optopt(
        "",
        "idle-timeout",
        "close a connection silent this long; 0 = never (default 300)",
        "SECS",
    );
    o.optopt(
        "",
        "max-line",
        "longest line of tne, cmd and chat (default 8192)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-sendq",
        "chat: unsent output that makes a slow consumer (default 1048576)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-upload",
        "upload: largest file (default 1073741824)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-buffer",
        "transform: bytes reverse/shuffle hold, all connections (default 134217728)",
        "BYTES",
    );
    o.optopt(
        "",
        "max-conns-per-ip",
        "TCP connections open at once from one IPv4 address or IPv6 /64 (default 32)",
        "N",
    );
    o.optopt(
        "",
        "conn-rate-per-ip",
        "new TCP connections a second from one address, burst 2N (default 20)",
        "N",
    );
    o.optopt(
        "",
        "exempt",
        "addresses the per-address limits skip, or none (default 127.0.0.0/8,::1/128)",
        "CIDR,..",
    );
    o.optopt(
        "",
        "max-memory",
        "every client buffer together; past it the biggest are closed (default 268435456)",
        "BYTES",
    );
    o.optopt(
        "",
        "chat-rate",
        "chat: lines per second read from one client; 0 = no limit (default 10)",
        "N",
    );
    o.optopt(
        "",
        "chat-burst",
        "chat: lines a client may send at once before --chat-rate applies (default 20)",
        "N",
    );
    o.optflagmulti("v", "verbose", "more log detail (twice: trace)");
    o.optflag("q", "quiet", "log warnings and errors only");
    o.optflag("", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
    o.optopt(
        "",
        "transform-table",
        "transform's action table: 2021 (0x04 title-case, 0x08 reverse, 0x10 shuffle) or 2023 (0x04 reverse, 0x08 shuffle, 0x10 random); default 2021",
        "2021|2023",
    );
    o.optopt(
        "",
        "max-files",
        "upload: files one connection may save (default 100000)",
        "N",
    );
    o.optflag(
        "",
        "trace",
        "log each wake-up and each event: the token, its readiness, bytes read, consumed, queued and written, WouldBlock, interest changes, closes (log target onepoll::trace; -vv shows it too)",
    );
    o
}

/// The help text of `onepoll --help`.
pub fn usage() -> String {
    let brief = "\
Usage: onepoll [OPTIONS] [PROTOCOL[=PORT] ...]

Serve the onepoll protocols from one event loop on one thread.
PROTOCOL is tne (20003), cmd (8008), chat (6000), upload (8010) or
transform (8083); with none, all five are served, each on its
default port. Logs go to stderr; stdout stays empty.

Examples:
  onepoll                          every protocol on its default port
  onepoll transform=9000           transform on port 9000
  onepoll -b ::1 -p 0 transform    transform on IPv6 loopback, any free port
  onepoll tne chat stats=127.0.0.1:9108
                                   tne and chat, and metrics on loopback only

stats (9108) is served only when named: GET /metrics (Prometheus), or
the lines INFO, CLIENTS, QUIT. Started by systemd with sockets
(LISTEN_FDS, each named after its protocol), it serves those instead.";
    let mut text = options().usage(brief);
    text.push_str(
        "\nSIGINT or SIGTERM: stop accepting, send pending replies (up to 5 s), exit 0;\n\
         a second signal exits at once.\n",
    );
    text
}

/// The short usage line printed after a usage error.
pub fn short_usage() -> &'static str {
    "Usage: onepoll [OPTIONS] [PROTOCOL[=PORT] ...]   (onepoll --help for more)"
}

fn number<T: std::str::FromStr>(
    m: &getopts::Matches,
    option: &'static str,
    expected: &'static str,
) -> Result<Option<T>, UsageError> {
    match m.opt_str(option) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| UsageError::BadValue {
            option: option_name(option),
            value,
            expected,
        }),
    }
}

fn option_name(long: &str) -> &'static str {
    match long {
        "max-conns" => "--max-conns",
        "idle-timeout" => "--idle-timeout",
        "max-line" => "--max-line",
        "max-sendq" => "--max-sendq",
        "max-upload" => "--max-upload",
        "max-buffer" => "--max-buffer",
        "bind" => "--bind",
        "upload-layout" => "--upload-layout",
        "max-conns-per-ip" => "--max-conns-per-ip",
        "conn-rate-per-ip" => "--conn-rate-per-ip",
        "exempt" => "--exempt",
        "max-files" => "--max-files",
        "max-memory" => "--max-memory",
        "chat-rate" => "--chat-rate",
        "chat-burst" => "--chat-burst",
        _ => "option",
    }
}

fn positive<T: PartialOrd + Default>(
    value: Option<T>,
    option: &'static str,
    shown: impl Fn() -> String,
) -> Result<Option<T>, UsageError> {
    match value {
        Some(v) if v <= T::default() => Err(UsageError::BadValue {
            option: option_name(option),
            value: shown(),
            expected: "a number greater than 0",
        }),
        other => Ok(other),
    }
}

/// `--bind`'s address: an IP address as written, or a host name resolved
/// once, here, at start (its first IPv4 address if it has one, so that
/// `localhost` means 127.0.0.1 as the clients' default does).
fn resolve_bind(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let addrs: Vec<IpAddr> = (text, 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

fn parse_port(text: &str) -> Result<u16, UsageError> {
    text.parse()
        .map_err(|_| UsageError::BadPort(text.to_string()))
}

/// `PORT`, `ADDR:PORT` or `[ADDR]:PORT` after `PROTOCOL=`: the port, and
/// (stats and systemd, issue 19) the listener's own address noted in
/// `bind_for`.
fn parse_listen_addr(
    text: &str,
    protocol: Protocol,
    bind_for: &mut Vec<(Protocol, IpAddr)>,
) -> Result<u16, UsageError> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(port);
    }
    match text.parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            bind_for.push((protocol, addr.ip()));
            Ok(addr.port())
        }
        Err(_) => Err(UsageError::BadPort(text.to_string())),
    }
}

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, UsageError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let m = options().parse(&args).map_err(|e| match e {
        // The clients and the bench take -h for the host: a hand used to
        // them types it here too.
        getopts::Fail::UnrecognizedOption(ref opt) if opt == "h" => UsageError::Options(format!(
            "{e} (for help use --help; -h is the clients' --host)"
        )),
        e => UsageError::Options(e.to_string()),
    })?;
    if m.opt_present("help") {
        return Ok(Command::Help);
    }
    if m.opt_present("version") {
        return Ok(Command::Version);
    }

    let mut config = Config::default();
    if let Some(bind) = m.opt_str("bind") {
        config.bind = resolve_bind(&bind).ok_or(UsageError::BadValue {
            option: "--bind",
            value: bind,
            expected: "an IPv4 or IPv6 address, or a host name that resolves to one",
        })?;
    }
    if let Some(dir) = m.opt_str("upload-dir") {
        config.upload_dir = PathBuf::from(dir);
    }
    config.upload_fsync = m.opt_present("upload-fsync");
    if let Some(layout) = m.opt_str("upload-layout") {
        config.upload_layout = match layout.as_str() {
            "flat" => UploadLayout::Flat,
            "per-connection" => UploadLayout::PerConnection,
            _ => {
                return Err(UsageError::BadValue {
                    option: "--upload-layout",
                    value: layout,
                    expected: "flat or per-connection",
                })
            }
        };
    }
    const COUNT: &str = "a whole number";
    let max_conns = number::<usize>(&m, "max-conns", COUNT)?;
    if let Some(n) = positive(max_conns, "max-conns", || "0".into())? {
        config.max_conns = n;
    }
    if let Some(secs) = number::<u64>(&m, "idle-timeout", "a whole number of seconds")? {
        config.idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
    }
    let max_line = number::<usize>(&m, "max-line", COUNT)?;
    if let Some(n) = positive(max_line, "max-line", || "0".into())? {
        config.max_line = n;
    }
    let max_sendq = number::<usize>(&m, "max-sendq", COUNT)?;
    if let Some(n) = positive(max_sendq, "max-sendq", || "0".into())? {
        config.max_sendq = n;
    }
    if let Some(n) = number::<u64>(&m, "max-upload", COUNT)? {
        config.max_upload = n;
    }
    if let Some(n) = number::<usize>(&m, "max-buffer", COUNT)? {
        config.max_buffer = n;
    }
    let per_ip = number::<u32>(&m, "max-conns-per-ip", COUNT)?;
    if let Some(n) = positive(per_ip, "max-conns-per-ip", || "0".into())? {
        config.max_conns_per_ip = n;
    }
    let rate = number::<u32>(&m, "conn-rate-per-ip", COUNT)?;
    if let Some(n) = positive(rate, "conn-rate-per-ip", || "0".into())? {
        config.conn_rate_per_ip = n;
    }
    if let Some(text) = m.opt_str("exempt") {
        config.exempt = admission::parse_exempt(&text).map_err(|_| UsageError::BadValue {
            option: "--exempt",
            value: text,
            expected: "CIDR blocks (ADDR[/PREFIX]) separated by commas, or none",
        })?;
    }
    let max_files = number::<u64>(&m, "max-files", COUNT)?;
    if let Some(n) = positive(max_files, "max-files", || "0".into())? {
        config.max_files = n;
    }
    let max_memory = number::<usize>(&m, "max-memory", COUNT)?;
    if let Some(n) = positive(max_memory, "max-memory", || "0".into())? {
        config.max_memory = n;
    }
    if let Some(n) = number::<u32>(&m, "chat-rate", COUNT)? {
        config.chat_rate = n;
    }
    let chat_burst = number::<u32>(&m, "chat-burst", COUNT)?;
    if let Some(n) = positive(chat_burst, "chat-burst", || "0".into())? {
        config.chat_burst = n;
    }
    config.trace = m.opt_present("trace");
    config.log_level = match (m.opt_count("verbose"), m.opt_present("quiet")) {
        (0, false) => log::LevelFilter::Info,
        (0, true) => log::LevelFilter::Warn,
        (1, false) => log::LevelFilter::Debug,
        (_, false) => log::LevelFilter::Trace,
        (_, true) => return Err(UsageError::VerboseAndQuiet),
    };
    if let Some(table) = m.opt_str("transform-table") {
        config.transform_table = table.parse().map_err(|_| UsageError::BadValue {
            option: "--transform-table",
            value: table,
            expected: "2021 or 2023",
        })?;
    }

    let mut listeners: Vec<(Protocol, Option<u16>)> = Vec::new();
    for word in &m.free {
        let (name, port) = match word.split_once('=') {
            Some((name, port)) => (name, Some(port)),
            None => (word.as_str(), None),
        };
        let protocol: Protocol = name
            .parse()
            .map_err(|_| UsageError::UnknownProtocol(name.to_string()))?;
        let port = match port {
            Some(text) => Some(parse_listen_addr(text, protocol, &mut config.bind_for)?),
            None => None,
        };
        if listeners.iter().any(|(p, _)| *p == protocol) {
            return Err(UsageError::Duplicate(protocol));
        }
        listeners.push((protocol, port));
    }
    if let Some(port) = m.opt_str("port") {
        let port = parse_port(&port)?;
        match listeners.as_mut_slice() {
            [(protocol, slot)] => {
                if slot.is_some() {
                    return Err(UsageError::PortTwice(*protocol));
                }
                *slot = Some(port);
            }
            _ => return Err(UsageError::PortNeedsOneProtocol),
        }
    }
    if !listeners.is_empty() {
        config.listeners = listeners
            .into_iter()
            .map(|(p, port)| (p, port.unwrap_or_else(|| p.default_port())))
            .collect();
    }
    Ok(Command::Run(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn error(args: &[&str]) -> UsageError {
        match parse(args) {
            Err(e) => e,
            other => panic!("{args:?} should fail, gave {other:?}"),
        }
    }

    #[test]
    fn no_protocol_serves_all_five_on_their_default_ports() {
        let c = config(&[]);
        assert_eq!(
            c.listeners,
            vec![
                (Protocol::Tne, 20003),
                (Protocol::Cmd, 8008),
                (Protocol::Chat, 6000),
                (Protocol::Upload, 8010),
                (Protocol::Transform, 8083)
            ]
        );
        assert_eq!(c.max_conns, 10_000);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn port_applies_to_the_one_protocol_named() {
        assert_eq!(
            config(&["-p", "0", "transform"]).listeners,
            vec![(Protocol::Transform, 0)]
        );
        assert_eq!(
            config(&["transform=9000"]).listeners,
            vec![(Protocol::Transform, 9000)]
        );
        assert_eq!(error(&["-p", "1"]), UsageError::PortNeedsOneProtocol);
        assert_eq!(
            error(&["-p", "1", "transform=2"]),
            UsageError::PortTwice(Protocol::Transform)
        );
    }

    #[test]
    fn max_files_defaults_to_the_spec_and_must_be_positive() {
        assert_eq!(config(&[]).max_files, 100_000);
        assert_eq!(config(&["--max-files", "3"]).max_files, 3);
        assert!(matches!(
            error(&["--max-files", "0"]),
            UsageError::BadValue {
                option: "--max-files",
                ..
            }
        ));
    }

    #[test]
    fn values_are_validated() {
        assert!(matches!(
            error(&["--max-conns", "x"]),
            UsageError::BadValue { .. }
        ));
        assert!(matches!(
            error(&["--max-conns", "0"]),
            UsageError::BadValue { .. }
        ));
        assert!(matches!(
            error(&["-b", "nowhere.invalid"]),
            UsageError::BadValue { .. }
        ));
        let UsageError::Options(why) = error(&["-h"]) else {
            panic!("-h is not an option of the server");
        };
        assert!(why.contains("--help"), "{why}");
        assert!(matches!(
            error(&["--upload-layout", "tree"]),
            UsageError::BadValue { .. }
        ));
        assert_eq!(
            error(&["transform=70000"]),
            UsageError::BadPort("70000".into())
        );
        assert_eq!(
            error(&["gopher"]),
            UsageError::UnknownProtocol("gopher".into())
        );
        assert_eq!(
            error(&["transform", "transform"]),
            UsageError::Duplicate(Protocol::Transform)
        );
        assert_eq!(error(&["-v", "-q"]), UsageError::VerboseAndQuiet);
        assert!(matches!(error(&["--frobnicate"]), UsageError::Options(_)));
    }

    #[test]
    fn idle_timeout_zero_means_never_and_ipv6_binds() {
        let c = config(&[
            "--idle-timeout",
            "0",
            "-b",
            "::1",
            "--upload-layout",
            "per-connection",
        ]);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.bind, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(c.upload_layout, UploadLayout::PerConnection);
        assert_eq!(config(&["-b", "localhost"]).bind.to_string(), "127.0.0.1");
    }

    #[test]
    fn the_transform_table_is_2021_unless_told() {
        use crate::proto::transform::Table;
        assert_eq!(config(&[]).transform_table, Table::Y2021);
        let c = config(&["--transform-table", "2023"]);
        assert_eq!(c.transform_table, Table::Y2023);
        assert!(matches!(
            error(&["--transform-table", "2022"]),
            UsageError::BadValue { .. }
        ));
    }

    #[test]
    fn upload_fsync_is_off_unless_asked_for() {
        assert!(!config(&["upload"]).upload_fsync);
        assert!(config(&["--upload-fsync", "upload"]).upload_fsync);
    }

    #[test]
    fn a_listener_may_name_its_own_address() {
        let c = config(&["tne", "stats=127.0.0.1:9108", "chat=[::1]:0"]);
        assert_eq!(
            c.listeners,
            vec![
                (Protocol::Tne, 20003),
                (Protocol::Stats, 9108),
                (Protocol::Chat, 0)
            ]
        );
        assert_eq!(
            c.bind_addr(Protocol::Stats),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            c.bind_addr(Protocol::Chat),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.bind_addr(Protocol::Tne), c.bind);
        assert_eq!(
            error(&["stats=localhost:1"]),
            UsageError::BadPort("localhost:1".into())
        );
        assert!(!config(&[])
            .listeners
            .iter()
            .any(|(p, _)| *p == Protocol::Stats));
    }

    #[test]
    fn trace_is_off_unless_asked_for() {
        assert!(!config(&[]).trace);
        assert!(config(&["--trace", "transform"]).trace);
        assert!(usage().contains("--trace"));
    }

    #[test]
    fn help_and_version_win() {
        assert!(matches!(parse(&["--help", "gopher"]), Ok(Command::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Command::Version)));
        assert!(usage().contains("--max-buffer"));
    }

    #[test]
    fn per_address_limits_are_parsed_and_validated() {
        let c = config(&[]);
        assert_eq!((c.max_conns_per_ip, c.conn_rate_per_ip), (32, 20));
        assert_eq!(c.exempt, admission::default_exempt());
        let c = config(&[
            "--max-conns-per-ip",
            "3",
            "--conn-rate-per-ip",
            "7",
            "--exempt",
            "10.0.0.0/8,2001:db8::/32",
        ]);
        assert_eq!((c.max_conns_per_ip, c.conn_rate_per_ip), (3, 7));
        assert_eq!(
            c.exempt,
            admission::parse_exempt("10.0.0.0/8,2001:db8::/32").unwrap()
        );
        assert!(config(&["--exempt", "none"]).exempt.is_empty());
        for bad in [
            &["--exempt", "10.0.0.0/33"][..],
            &["--exempt", "localhost"],
            &["--exempt", ""],
            &["--max-conns-per-ip", "0"],
            &["--conn-rate-per-ip", "0"],
            &["--conn-rate-per-ip", "many"],
        ] {
            assert!(matches!(error(bad), UsageError::BadValue { .. }), "{bad:?}");
        }
        for option in ["--max-conns-per-ip", "--conn-rate-per-ip", "--exempt"] {
            assert!(usage().contains(option), "{option}");
        }
    }

    #[test]
    fn memory_and_flood_options_have_the_spec_defaults() {
        let c = config(&[]);
        assert_eq!(c.max_memory, 268_435_456);
        assert_eq!(c.max_buffer, 134_217_728);
        assert_eq!((c.chat_rate, c.chat_burst), (10, 20));
        let c = config(&[
            "--max-memory",
            "4000000",
            "--chat-rate",
            "0",
            "--chat-burst",
            "5",
        ]);
        assert_eq!(c.max_memory, 4_000_000);
        assert_eq!((c.chat_rate, c.chat_burst), (0, 5));
        for bad in [
            ["--max-memory", "0"],
            ["--chat-burst", "0"],
            ["--chat-rate", "-1"],
        ] {
            assert!(
                matches!(error(&bad), UsageError::BadValue { .. }),
                "{bad:?}"
            );
        }
    }
}
