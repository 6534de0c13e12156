//! The progress line on stderr: once a second, elapsed time, operations,
//! the rate over the last second and failures. On a terminal it rewrites
//! one line; with `--progress` and no terminal, it prints a line each time.
//! Off with `-q`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::args::BenchConfig;
use super::stats::Stats;

const EVERY: Duration = Duration::from_secs(1);

/// The progress reporter of one run.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    terminal: bool,
    unit: &'static str,
    start: Instant,
    next: Instant,
    last_ops: u64,
    printed: bool,
}

impl Progress {
    /// A reporter for `config` counting `unit`.
    pub fn new(config: &BenchConfig, unit: &'static str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let now = Instant::now();
        Progress {
            enabled: !config.quiet && (config.progress || terminal),
            terminal,
            unit,
            start: now,
            // Nothing until measuring starts.
            next: now + Duration::from_secs(86_400),
            last_ops: 0,
            printed: false,
        }
    }

    /// Measuring starts at `t0`.
    pub fn start(&mut self, t0: Instant) {
        self.start = t0;
        self.next = t0 + EVERY;
    }

    /// When the next line is due (the loop wakes for it).
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Prints a line if one is due.
    pub fn tick(&mut self, now: Instant, stats: &Stats) {
        if now < self.next {
            return;
        }
        self.next += EVERY;
        if self.next <= now {
            self.next = now + EVERY;
        }
        if !self.enabled {
            return;
        }
        let line = self.line(now, stats);
        self.last_ops = stats.ops;
        let mut err = std::io::stderr().lock();
        let _ = match self.terminal {
            true => write!(err, "\r{line}\x1b[K"),
            false => writeln!(err, "{line}"),
        };
        self.printed = true;
    }

    fn line(&self, now: Instant, stats: &Stats) -> String {
        format!(
            "[{:6.1} s] {} {}, {} /s now, {} failures",
            now.saturating_duration_since(self.start).as_secs_f64(),
            stats.ops,
            self.unit,
            stats.ops - self.last_ops.min(stats.ops),
            stats.failures()
        )
    }

    /// Ends the line on a terminal, so the report starts clean.
    pub fn finish(&mut self) {
        if self.printed && self.terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        self.printed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::Workload;

    #[test]
    fn a_line_shows_time_count_rate_and_failures() {
        let mut config = BenchConfig::new(Workload::Tne);
        config.quiet = true;
        let mut p = Progress::new(&config, "requests");
        let t0 = Instant::now();
        p.start(t0);
        let mut stats = Stats::new();
        stats.ops = 1500;
        p.last_ops = 500;
        stats.disconnects = 2;
        assert_eq!(
            p.line(t0 + Duration::from_millis(2000), &stats),
            "[   2.0 s] 1500 requests, 1000 /s now, 2 failures"
        );
        p.tick(t0 + Duration::from_millis(1001), &stats);
        assert_eq!(p.next(), t0 + Duration::from_secs(2));
        assert!(!p.printed, "-q prints nothing");
    }
}
