//! What a run counts: operations, bytes, errors, disconnects, and the
//! latency of every operation in an HdrHistogram (nanoseconds, three
//! significant digits).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency the histogram tells apart (longer ones count as this).
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Counters and latencies of one run.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Latency of each operation, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Operations completed and checked: replies, chat deliveries, files,
    /// connections.
    pub ops: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Replies with a wrong byte (the connection is then closed).
    pub errors: u64,
    /// Connections the server closed or reset while requests were
    /// outstanding or expected.
    pub disconnects: u64,
    /// Connections that could not be opened.
    pub connect_errors: u64,
    /// UDP requests that got no reply in time.
    pub lost: u64,
    /// chaos: expected disconnects — resets, garbage, a slow chat
    /// consumer dropped — counted apart, not failures.
    pub dropped: u64,
    /// chaos: connections on which the server owed a reply or a close for
    /// longer than `--hang-limit`.
    pub hung: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats::new()
    }
}

impl Stats {
    /// All zero.
    pub fn new() -> Stats {
        Stats {
            // Bounds and precision are constants that the crate accepts:
            // the one `unreachable!` the library allows (see lib.rs).
            #[allow(clippy::unreachable)]
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds")),
            ops: 0,
            bytes_out: 0,
            bytes_in: 0,
            errors: 0,
            disconnects: 0,
            connect_errors: 0,
            lost: 0,
            dropped: 0,
            hung: 0,
        }
    }

    /// Counts one operation that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        self.ops += 1;
    }

    /// Every kind of failure, summed.
    pub fn failures(&self) -> u64 {
        self.errors + self.disconnects + self.connect_errors + self.lost + self.hung
    }

    /// The latency at `quantile` (0 to 1); zero when nothing was recorded.
    pub fn quantile(&self, quantile: f64) -> Duration {
        if self.latency.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.latency.value_at_quantile(quantile))
    }

    /// The largest latency recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.latency.max())
    }

    /// The latency distribution as HdrHistogram prints it
    /// (`outputPercentileDistribution`, values in µs): one line per step
    /// of `Value Percentile TotalCount 1/(1-Percentile)`, five steps per
    /// halving of the distance to 100%, then the summary lines. What
    /// HdrHistogram's plotters and `scripts/plot-latency.sh` read.
    pub fn percentile_distribution(&self) -> String {
        use std::fmt::Write;
        let h = &self.latency;
        let mut text = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        let mut total = 0u64;
        for step in h.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let us = step.value_iterated_to() as f64 / 1000.0;
            let p = step.quantile_iterated_to();
            let _ = if p < 1.0 {
                writeln!(
                    text,
                    "{us:12.3} {p:14.12} {total:10} {:14.2}",
                    1.0 / (1.0 - p)
                )
            } else {
                writeln!(text, "{us:12.3} {p:14.12} {total:10}")
            };
        }
        let _ = writeln!(
            text,
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
            h.mean() / 1000.0,
            h.stdev() / 1000.0
        );
        let _ = writeln!(
            text,
            "#[Max     = {:12.3}, Total count    = {:12}]",
            h.max() as f64 / 1000.0,
            h.len()
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_recorded_latencies() {
        let mut s = Stats::new();
        for us in 1..=1000u64 {
            s.record(Duration::from_micros(us));
        }
        assert_eq!(s.ops, 1000);
        let p50 = s.quantile(0.5).as_micros();
        assert!((499..=501).contains(&p50), "p50 {p50}");
        let p99 = s.quantile(0.99).as_micros();
        assert!((989..=991).contains(&p99), "p99 {p99}");
        assert!((999..=1001).contains(&s.max().as_micros()));
    }

    #[test]
    fn an_empty_run_has_zero_latency_and_absurd_ones_saturate() {
        let mut s = Stats::new();
        assert_eq!(s.quantile(0.99), Duration::ZERO);
        s.record(Duration::from_secs(100_000));
        s.record(Duration::ZERO);
        assert_eq!(s.ops, 2);
        assert!(s.max() >= Duration::from_secs(3599));
    }

    #[test]
    fn failures_sum_every_kind() {
        let s = Stats {
            errors: 1,
            disconnects: 2,
            connect_errors: 3,
            lost: 4,
            hung: 5,
            dropped: 100,
            ..Stats::new()
        };
        assert_eq!(s.failures(), 15, "expected drops are no failure");
    }

    #[test]
    fn the_distribution_climbs_to_the_max_in_hdrhistogram_form() {
        let mut s = Stats::new();
        for us in 1..=1000u64 {
            s.record(Duration::from_micros(us));
        }
        let text = s.percentile_distribution();
        let rows: Vec<Vec<f64>> = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains("Value"))
            .map(|l| l.split_whitespace().map(|f| f.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20, "{text}");
        assert!(rows
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        let last = rows.last().unwrap();
        assert_eq!((last[1], last[2]), (1.0, 1000.0), "{text}");
        assert!((999.0..=1001.0).contains(&last[0]), "{text}");
        assert!(text.contains("#[Max"), "{text}");
    }
}
