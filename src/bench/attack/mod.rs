//! `onepoll-bench attack NAME`: the hostile loads of issue 16, each one
//! bounded in time and count, aimed only at 127.0.0.0/8, run while a
//! bystander times `ECHO x` on its own connection and the server's RSS is
//! sampled — so that a user can see the defences of the hostile-load rules of docs/PROTOCOLS.md work
//! (or, on a build without them, see what they are for).
//!
//! The parts:
//! - [`args`] — the command line; [`net`] — bind-before-connect, abortive
//!   close, TCP state; [`bystander`] and [`rss`] — the two observers.
//! - One file per attack family: [`hold`] (chat-silent, slots),
//!   [`churn`] (chat-churn, log-flood), [`pipeline`] (cmd-pipeline),
//!   [`upload`] (upload-tiny), [`transform`] (shuffle, transform-hold),
//!   [`paste`] (chat-paste), [`udp`] (udp-amp).
//!
//! Every attack returns an [`Outcome`]: its own figures as one short text.
//! The harness here starts the observers, runs the attack, waits
//! `--settle` for the RSS after, and prints one line (or a markdown row).

pub mod args;
pub mod bystander;
pub mod churn;
pub mod hold;
pub mod net;
pub mod paste;
pub mod pipeline;
pub mod rss;
pub mod transform;
pub mod udp;
pub mod upload;

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use args::{Attack, AttackConfig};

/// What an attack itself measured, as one short text for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The attack's own figures.
    pub notes: String,
}

impl Outcome {
    /// An outcome with these notes.
    pub fn new(notes: impl Into<String>) -> Outcome {
        Outcome {
            notes: notes.into(),
        }
    }
}

/// Why an attack could not run.
#[derive(Debug)]
pub enum AttackError {
    /// A socket or the event loop failed.
    Io(io::Error),
    /// The bystander could not start (the server is not there?).
    Bystander(io::Error),
    /// The attack could not be set up.
    Setup(String),
}

impl fmt::Display for AttackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackError::Io(e) => write!(f, "i/o error: {e}"),
            AttackError::Bystander(e) => write!(f, "the bystander could not start: {e}"),
            AttackError::Setup(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for AttackError {}

impl From<io::Error> for AttackError {
    fn from(e: io::Error) -> AttackError {
        AttackError::Io(e)
    }
}

/// The server's RSS around an attack, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Before the attack.
    pub idle: u64,
    /// Highest reading from its start until `after` was read.
    pub peak: u64,
    /// `--settle` after it ended.
    pub after: u64,
    /// That `--settle`.
    pub settle: Duration,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Which attack.
    pub attack: Attack,
    /// The bystander's round trips.
    pub bystander: bystander::Seen,
    /// The server's RSS, given `--pid`.
    pub memory: Option<Memory>,
    /// The attack's own figures.
    pub outcome: Outcome,
    /// How long the attack ran.
    pub elapsed: Duration,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl Summary {
    fn latency(&self) -> String {
        let s = &self.bystander.stats;
        // An echo still unanswered when the bystander gave up was counted
        // with the time it waited: the maximum is at least that.
        let at_least = if self.bystander.unanswered > 0 {
            ">="
        } else {
            ""
        };
        format!(
            "{}/{}/{at_least}{} ms",
            ms(s.quantile(0.5)),
            ms(s.quantile(0.99)),
            ms(s.max())
        )
    }

    fn bystander_counts(&self) -> String {
        let b = &self.bystander;
        let mut text = format!("{} echoes", b.stats.ops);
        if b.unanswered > 0 {
            text.push_str(&format!(", {} unanswered", b.unanswered));
        }
        if b.wrong > 0 {
            text.push_str(&format!(", {} wrong", b.wrong));
        }
        if b.reconnects > 0 {
            text.push_str(&format!(", {} reconnects", b.reconnects));
        }
        text
    }

    /// The one-line report.
    pub fn render(&self) -> String {
        let memory = match self.memory {
            Some(m) => format!(
                "server RSS idle {}, peak {}, {:.0} s after {}",
                mib(m.idle),
                mib(m.peak),
                m.settle.as_secs_f64(),
                mib(m.after)
            ),
            None => "server RSS not sampled (no --pid)".to_owned(),
        };
        format!(
            "{}: {:.1} s; bystander p50/p99/max {} ({}); {}; {}",
            self.attack,
            self.elapsed.as_secs_f64(),
            self.latency(),
            self.bystander_counts(),
            memory,
            self.outcome.notes
        )
    }

    /// One row of the table `scripts/attack.sh` prints: attack |
    /// bystander p50/p99/max | peak RSS | RSS after | notes.
    pub fn render_markdown(&self) -> String {
        let (peak, after) = match self.memory {
            Some(m) => (mib(m.peak), mib(m.after)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let idle = self
            .memory
            .map_or(String::new(), |m| format!("RSS before {}; ", mib(m.idle)));
        format!(
            "| {} | {} | {} | {} | {}{}; {} |",
            self.attack,
            self.latency(),
            peak,
            after,
            idle,
            self.bystander_counts(),
            self.outcome.notes.replace('|', "/")
        )
    }
}

/// Runs the attack `config` names, with the bystander and the sampler.
pub fn run(config: &AttackConfig) -> Result<Summary, AttackError> {
    net::raise_fd_limit();
    let fds_before = own_fds();
    let sampler = config.pid.and_then(rss::Sampler::start);
    if let (Some(pid), None) = (config.pid, &sampler) {
        return Err(AttackError::Setup(format!(
            "cannot read /proc/{pid}/status"
        )));
    }
    let bystander =
        bystander::Bystander::start(config.addr(crate::config::Protocol::Cmd), config.echo_every)
            .map_err(AttackError::Bystander)?;
    let start = Instant::now();
    let deadline = start + config.duration;
    let outcome = match config.attack {
        Attack::ChatSilent => hold::chat_silent(config, deadline),
        Attack::Slots => hold::slots(config, deadline),
        Attack::ChatChurn => churn::chat_churn(config, deadline),
        Attack::LogFlood => churn::log_flood(config, deadline),
        Attack::CmdPipeline => pipeline::run(config, deadline),
        Attack::UploadTiny => upload::run(config, deadline),
        Attack::Shuffle => transform::shuffle(config, deadline),
        Attack::TransformHold => transform::hold(config, deadline),
        Attack::ChatPaste => paste::run(config, deadline),
        Attack::UdpAmp => udp::run(config, deadline),
    };
    let elapsed = start.elapsed();
    let seen = bystander.finish();
    let mut outcome = outcome?;
    // Everything the attack opened is closed by now: say so if not.
    let leaked = own_fds().saturating_sub(fds_before);
    if leaked > 0 {
        outcome
            .notes
            .push_str(&format!("; the attack LEFT {leaked} descriptors open"));
    }
    let memory = match (sampler, config.pid) {
        (Some(sampler), Some(pid)) => {
            std::thread::sleep(config.settle);
            let idle = sampler.idle;
            let (peak, after) = sampler.finish(pid);
            Some(Memory {
                idle,
                peak,
                after,
                settle: config.settle,
            })
        }
        _ => None,
    };
    Ok(Summary {
        attack: config.attack,
        bystander: seen,
        memory,
        outcome,
        elapsed,
    })
}

/// `onepoll-bench attack ...`: parses `args` (after `attack`), runs,
/// prints, returns the exit code — 0 when the attack ran (whatever the
/// server did), 1 when it could not, 2 on a usage error.
pub fn main(args: &[String]) -> i32 {
    let config = match args::parse(args) {
        Ok(args::AttackCommand::Help) => {
            print!("{}", args::usage());
            return 0;
        }
        Ok(args::AttackCommand::Run(config)) => config,
        Err(e) => {
            eprintln!("onepoll-bench attack: {e}");
            eprint!("{}", args::usage());
            return 2;
        }
    };
    match run(&config) {
        Ok(summary) if config.markdown => {
            println!("{}", summary.render_markdown());
            0
        }
        Ok(summary) => {
            println!("{}", summary.render());
            0
        }
        Err(e) => {
            eprintln!("onepoll-bench attack {}: {e}", config.attack);
            1
        }
    }
}

/// Descriptors this process has open.
fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Time left until `deadline`, at most `cap`.
pub(crate) fn left(deadline: Instant, cap: Duration) -> Duration {
    deadline.saturating_duration_since(Instant::now()).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Stats;

    fn summary(unanswered: u64) -> Summary {
        let mut stats = Stats::new();
        for ms in [1, 2, 3, 400] {
            stats.record(Duration::from_millis(ms));
        }
        Summary {
            attack: Attack::Slots,
            bystander: bystander::Seen {
                stats,
                unanswered,
                wrong: 0,
                reconnects: 0,
            },
            memory: Some(Memory {
                idle: 2 << 20,
                peak: 300 << 20,
                after: 3 << 20,
                settle: Duration::from_secs(10),
            }),
            outcome: Outcome::new("held 32 | closed 9968"),
            elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_line_has_latency_memory_and_the_attacks_figures() {
        let line = summary(0).render();
        assert!(
            line.starts_with("slots: 10.0 s; bystander p50/p99/max 2.00/400/400 ms (4 echoes)"),
            "{line}"
        );
        assert!(
            line.contains("idle 2.0 MiB, peak 300.0 MiB, 10 s after 3.0 MiB"),
            "{line}"
        );
        assert!(line.ends_with("held 32 | closed 9968"), "{line}");
    }

    #[test]
    fn the_row_has_five_cells_and_marks_an_unanswered_echo() {
        let row = summary(1).render_markdown();
        assert_eq!(
            row,
            "| slots | 2.00/400/>=400 ms | 300.0 MiB | 3.0 MiB | RSS before 2.0 MiB; 4 echoes, 1 unanswered; held 32 / closed 9968 |"
        );
    }
}
