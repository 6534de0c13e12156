//! Every limit and default of the server, in one documented struct. (The
//! protocols, their names and ports are declared in [`crate::proto`].)

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::proto::{Protocol, UnknownProtocol};
use crate::server::admission::{self, Cidr};

/// Unsent output above which a request/reply connection is no longer read
/// (backpressure); reading resumes once it drains below.
pub const BACKPRESSURE_BYTES: usize = 1024 * 1024;

/// How long a graceful shutdown waits for replies to go out.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a closing connection may take to flush its last replies and see
/// the peer's end of stream before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Where uploaded files go (spec 1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadLayout {
    /// `<upload-dir>/<k>.txt`: later connections overwrite earlier ones.
    Flat,
    /// `<upload-dir>/<conn-id>/<k>.txt`: connections never collide.
    PerConnection,
}

impl Config {
    /// The address `protocol`'s listener binds: its own
    /// (`PROTOCOL=ADDR:PORT`) or `--bind`.
    pub fn bind_addr(&self, protocol: Protocol) -> IpAddr {
        self.bind_for
            .iter()
            .find(|(p, _)| *p == protocol)
            .map_or(self.bind, |(_, addr)| *addr)
    }
}

/// Everything the server is told on its command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address every listener binds (IPv4 or IPv6).
    pub bind: IpAddr,
    /// The protocols to serve and their ports (0: the OS picks).
    pub listeners: Vec<(Protocol, u16)>,
    /// upload: directory of saved files, created if missing.
    pub upload_dir: PathBuf,
    /// upload: flat or per-connection.
    pub upload_layout: UploadLayout,
    /// upload: flush each file and its directory entry to stable storage
    /// before answering `A` (`--upload-fsync`). Off by default: it buys
    /// durability across power loss, which the spec does not ask for, at
    /// the price of stalling the one loop thread for each flush. See
    /// [`crate::proto::upload`].
    pub upload_fsync: bool,
    /// TCP connections open at once, all protocols together.
    pub max_conns: usize,
    /// Close a connection with no traffic either way for this long.
    /// `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Longest line of tne, cmd and chat, CR and LF not counted.
    pub max_line: usize,
    /// chat: unsent output that makes a slow consumer.
    pub max_sendq: usize,
    /// upload: largest file.
    pub max_upload: u64,
    /// transform: bytes reverse and shuffle may hold, all connections,
    /// taken as their data arrives (docs/PROTOCOLS.md, the server: 134217728).
    pub max_buffer: usize,
    /// Log detail.
    pub log_level: log::LevelFilter,
    /// TCP connections open at once from one IPv4 address or IPv6 /64
    /// (`--max-conns-per-ip`); see [`crate::server::admission`].
    pub max_conns_per_ip: u32,
    /// New TCP connections a second from one IPv4 address or IPv6 /64,
    /// with a burst of twice as many (`--conn-rate-per-ip`).
    pub conn_rate_per_ip: u32,
    /// Addresses the per-address limits do not apply to (`--exempt`).
    pub exempt: Vec<Cidr>,
    /// transform: which action each ACTION code names (`--transform-table`,
    /// spec 1.5; default 2021).
    pub transform_table: crate::proto::transform::Table,
    /// upload: files one connection may save (`--max-files`); the next
    /// one is answered `E` and the connection closed.
    pub max_files: u64,
    // --- stats and systemd (issue 19) ---
    /// Listeners bound to their own address instead of [`Config::bind`]
    /// (`PROTOCOL=ADDR:PORT`, `[ADDR]:PORT` for IPv6). Empty by default.
    pub bind_for: Vec<(Protocol, IpAddr)>,
    /// Every client buffer together (unsent output, carried input,
    /// transform messages held): past it, the biggest holders are closed
    /// (spec section 5, `server::memory_budget`).
    pub max_memory: usize,
    /// chat: lines per second read from one client; 0 = no limit
    /// (`server::pacing`).
    pub chat_rate: u32,
    /// chat: lines a client may send at once before `chat_rate` applies.
    pub chat_burst: u32,
    /// `--trace`: log, at trace level under the target `onepoll::trace`,
    /// one line per wake-up and per event (see `server::trace`). `-vv`
    /// shows those lines too. Default off.
    pub trace: bool,
}

impl Default for Config {
    /// The spec's defaults, serving every protocol on its default port.
    fn default() -> Config {
        Config {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listeners: Protocol::ALL
                .into_iter()
                .map(|p| (p, p.default_port()))
                .collect(),
            upload_dir: PathBuf::from("./uploads"),
            upload_layout: UploadLayout::Flat,
            upload_fsync: false,
            max_conns: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            max_line: 8192,
            max_sendq: 1024 * 1024,
            max_upload: 1 << 30,
            max_buffer: 128 * 1024 * 1024,
            log_level: log::LevelFilter::Info,
            max_conns_per_ip: 32,
            conn_rate_per_ip: 20,
            exempt: admission::default_exempt(),
            transform_table: crate::proto::transform::Table::Y2021,
            max_files: 100_000,
            bind_for: Vec::new(),
            max_memory: 256 * 1024 * 1024,
            chat_rate: 10,
            chat_burst: 20,
            trace: false,
        }
    }
}
