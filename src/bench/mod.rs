//! `onepoll-bench`, the load generator (`docs/PROTOCOLS.md`): one `mio::Poll`
//! loop on one thread drives many nonblocking connections, checks every
//! reply byte for byte, and reports throughput, latency percentiles,
//! errors, disconnects and — given the server's pid — its CPU time per
//! operation and memory per connection.
//!
//! The parts, one file each:
//! - [`args`] — the command line and the loopback rule.
//! - [`script`] — what each protocol sends and the reply the spec demands;
//!   [`check`] — streaming checkers that compare replies at any split.
//! - [`tcp`] and [`reqrep`] — request/reply connections (transform, tne,
//!   cmd, upload) and the steady, idle and churn modes; [`udp`] — tne over
//!   UDP; [`chat`] — fan-out with delivery latency timed at the receivers.
//! - [`probe`] — the machine's cross-CPU wake-up cost, timed around a run.
//! - [`rate`] — the fixed-rate schedule (latency from the intended send
//!   time); [`stats`] — counters and the HdrHistogram; [`report`] — the
//!   redis-benchmark-style output, one-line and CSV forms; [`procfs`] — the
//!   server's CPU and memory; [`progress`] — the line on stderr.
//! - [`chaos`] — misbehaving clients (slow readers, trickles, resets,
//!   garbage, half-open connections) and the check that the server copes.
//! - [`attack`] — `onepoll-bench attack NAME`: the hostile loads of issue
//!   16, with a bystander timing `ECHO` and the server's RSS sampled.
//!
//! Adding a workload: a [`args::Workload`] variant, its script (if it is
//! request/reply, that is all) or its own driver module, and its arm in
//! [`run`].

pub mod args;
pub mod attack;
pub mod chaos;
pub mod chat;
pub mod check;
pub mod probe;
pub mod procfs;
pub mod progress;
pub mod rate;
pub mod report;
pub mod reqrep;
pub mod script;
pub mod stats;
pub mod tcp;
pub mod udp;

use std::fmt;
use std::io;

pub use args::{BenchConfig, Workload};
pub use report::Report;

/// Why a run could not produce a report.
#[derive(Debug)]
pub enum BenchError {
    /// The command line was wrong (exit 2).
    Args(args::ArgError),
    /// The event loop or a socket setup failed.
    Io(io::Error),
    /// Connections could not be opened or made ready.
    Setup(String),
    /// The cross-CPU probe (`--probe-cpu`) failed on this CPU.
    Probe(usize, io::Error),
    /// The server did not answer as the protocol does: what was waited
    /// for and what came instead.
    NoReply(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Args(e) => e.fmt(f),
            BenchError::Io(e) => write!(f, "i/o error: {e}"),
            BenchError::Setup(why) => f.write_str(why),
            BenchError::Probe(cpu, e) => write!(f, "cross-CPU probe on CPU {cpu}: {e}"),
            BenchError::NoReply(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<args::ArgError> for BenchError {
    fn from(e: args::ArgError) -> BenchError {
        BenchError::Args(e)
    }
}

/// Runs the workload `config` describes and returns what it measured.
pub fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    let target = config.target()?;
    let round_trip = |cpu| probe::round_trip_us(cpu).map_err(|e| BenchError::Probe(cpu, e));
    let before = config.probe_cpu.map(round_trip).transpose()?;
    let mut report = match config.workload {
        Workload::Chat => chat::run(config, target),
        Workload::TneUdp => udp::run(config, target),
        Workload::Chaos => chaos::run(config, target),
        _ => reqrep::run(config, target),
    }?;
    if let (Some(cpu), Some(before_us)) = (config.probe_cpu, before) {
        if let Some(pid) = config.server_pid {
            probe::wait_for_quiet(pid);
        }
        report.probe = Some(probe::WakeProbe {
            before_us,
            after_us: round_trip(cpu)?,
        });
    }
    Ok(report)
}

/// The whole program: parses `args` (without the program name), runs,
/// prints, and returns the exit code — 0 when every operation succeeded, 1
/// when any failed or the run could not start, 2 on a usage error.
pub fn main(args: &[String]) -> i32 {
    if let Some(("attack", rest)) = args.split_first().map(|(a, rest)| (a.as_str(), rest)) {
        return attack::main(rest);
    }
    let config = match args::parse(args) {
        Ok(args::Command::Help) => {
            print!("{}", args::usage());
            return 0;
        }
        Ok(args::Command::Version) => {
            println!("onepoll-bench {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Ok(args::Command::Run(config)) => config,
        Err(e) => {
            eprintln!("onepoll-bench: {e}");
            eprint!("{}", args::usage());
            return 2;
        }
    };
    let report = match run(&config) {
        Ok(report) => report,
        Err(BenchError::Args(e)) => {
            eprintln!("onepoll-bench: {e}");
            return 2;
        }
        Err(e) => {
            eprintln!("onepoll-bench: {e}");
            return 1;
        }
    };
    if config.quiet {
        println!("{}", report.render_quiet());
    } else {
        print!("{}", report.render());
    }
    if let Some(path) = &config.csv {
        if let Err(e) = report.append_csv(path) {
            eprintln!("onepoll-bench: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if let Some(path) = &config.hgrm {
        if let Err(e) = std::fs::write(path, report.stats.percentile_distribution()) {
            eprintln!("onepoll-bench: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    if report.stats.ops == 0 {
        let st = &report.stats;
        eprintln!(
            "onepoll-bench: nothing succeeded ({} wrong replies, {} disconnects, {} connect errors) \u{2014} is {}:{} serving {}?",
            st.errors,
            st.disconnects,
            st.connect_errors,
            config.host,
            report.target.port(),
            config.protocol()
        );
    }
    match (report.stats.failures(), report.stats.ops) {
        (0, ops) if ops > 0 => 0,
        _ => 1,
    }
}
