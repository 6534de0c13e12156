//! Connections refused at accept: counted by reason, and logged as one
//! warning line a second at most, with the counts — never a line per
//! connection (a flood of refusals once wrote 37.9 MB of log in 5 s).
//!
//! The first refusal after a quiet second is reported at once, so an
//! operator (or a test) sees it without delay; those that follow within
//! the second are counted and reported together when it ends (the loop
//! wakes for [`RefusalLog::next_report`]). The line is a warning, so a
//! server run with `-q` still tells. Pure: the loop passes `now`.

use std::fmt;
use std::net::IpAddr;

/// The least time between two report lines (milliseconds).
pub const REPORT_EVERY_MS: u64 = 1000;

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// `--max-conns` connections were open (`server full`).
    ServerFull,
    /// Its address had `--max-conns-per-ip` connections open.
    PerIp,
    /// Its address was over `--conn-rate-per-ip`.
    Rate,
    /// No descriptor was left to serve it (EMFILE/ENFILE).
    Descriptors,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [RefusalReason; 4] = [
        RefusalReason::ServerFull,
        RefusalReason::PerIp,
        RefusalReason::Rate,
        RefusalReason::Descriptors,
    ];

    /// The metrics' label value.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::ServerFull => "server_full",
            RefusalReason::PerIp => "per_ip",
            RefusalReason::Rate => "rate",
            RefusalReason::Descriptors => "descriptors",
        }
    }
}

/// Refusals counted by reason: the metrics' names (`server_full`,
/// `per_ip`, `rate`, `descriptors`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// `--max-conns` reached.
    pub server_full: u64,
    /// `--max-conns-per-ip` reached.
    pub per_ip: u64,
    /// `--conn-rate-per-ip` exceeded.
    pub rate: u64,
    /// Out of file descriptors.
    pub descriptors: u64,
}

impl RefusalCounts {
    /// Counts one refusal.
    #[inline]
    pub fn add(&mut self, reason: RefusalReason) {
        let counter = match reason {
            RefusalReason::ServerFull => &mut self.server_full,
            RefusalReason::PerIp => &mut self.per_ip,
            RefusalReason::Rate => &mut self.rate,
            RefusalReason::Descriptors => &mut self.descriptors,
        };
        *counter = counter.saturating_add(1);
    }

    /// Every refusal counted.
    pub fn total(&self) -> u64 {
        self.server_full
            .saturating_add(self.per_ip)
            .saturating_add(self.rate)
            .saturating_add(self.descriptors)
    }
}

/// The limits named in a report line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalLimits {
    /// `--max-conns` (as fitted to the descriptor limit).
    pub max_conns: usize,
    /// `--max-conns-per-ip`.
    pub max_conns_per_ip: u32,
    /// `--conn-rate-per-ip`.
    pub conn_rate_per_ip: u32,
}

/// The refusal counters and the state of their once-a-second log line.
#[derive(Debug)]
pub struct RefusalLog {
    /// Every refusal since start, by reason.
    pub totals: RefusalCounts,
    /// Refusals not yet reported.
    pending: RefusalCounts,
    /// When the first of `pending` came.
    pending_since: u64,
    /// The address of the last refusal not yet reported, if known.
    last_peer: Option<IpAddr>,
    /// When the last line was written; `None` before the first.
    last_report: Option<u64>,
    limits: RefusalLimits,
}

impl RefusalLog {
    /// No refusal yet.
    pub fn new(limits: RefusalLimits) -> RefusalLog {
        RefusalLog {
            totals: RefusalCounts::default(),
            pending: RefusalCounts::default(),
            pending_since: 0,
            last_peer: None,
            last_report: None,
            limits,
        }
    }

    /// Counts a refusal of a connection from `peer` (if known) at `now`.
    pub fn note(&mut self, reason: RefusalReason, peer: Option<IpAddr>, now: u64) {
        if self.pending.total() == 0 {
            self.pending_since = now;
        }
        self.totals.add(reason);
        self.pending.add(reason);
        if peer.is_some() {
            self.last_peer = peer;
        }
    }

    /// When the refusals not yet reported are due to be: `None` if there
    /// are none.
    #[inline]
    pub fn next_report(&self) -> Option<u64> {
        if self.pending.total() == 0 {
            return None;
        }
        Some(
            self.last_report
                .map_or(0, |at| at.saturating_add(REPORT_EVERY_MS)),
        )
    }

    /// The line to log now, if one is due; `open` is the connections the
    /// server has open. The refusals it reports are then forgotten (the
    /// totals stay).
    pub fn report(&mut self, now: u64, open: usize) -> Option<RefusalReport> {
        if self.next_report()? > now {
            return None;
        }
        let report = RefusalReport {
            counts: self.pending,
            over_ms: now.saturating_sub(self.pending_since),
            last_peer: self.last_peer,
            open,
            limits: self.limits,
        };
        self.pending = RefusalCounts::default();
        self.last_peer = None;
        self.last_report = Some(now);
        Some(report)
    }
}

/// One report line: `refused N connection(s) over S s: ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalReport {
    /// The refusals reported, by reason.
    pub counts: RefusalCounts,
    /// From the first of them to the report (milliseconds).
    pub over_ms: u64,
    /// The address of the last one, if known.
    pub last_peer: Option<IpAddr>,
    /// Connections open at the report.
    pub open: usize,
    /// The limits, for the wording.
    pub limits: RefusalLimits,
}

impl fmt::Display for RefusalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "refused {} connection(s) over {}.{}s:",
            c.total(),
            self.over_ms / 1000,
            self.over_ms % 1000 / 100
        )?;
        let limits = &self.limits;
        let mut sep = " ";
        if c.server_full > 0 {
            let n = c.server_full;
            write!(
                f,
                "{sep}{n} server full (--max-conns {} reached)",
                limits.max_conns
            )?;
            sep = ", ";
        }
        if c.per_ip > 0 {
            let n = c.per_ip;
            write!(
                f,
                "{sep}{n} --max-conns-per-ip {} reached",
                limits.max_conns_per_ip
            )?;
            sep = ", ";
        }
        if c.rate > 0 {
            let n = c.rate;
            write!(
                f,
                "{sep}{n} --conn-rate-per-ip {} exceeded",
                limits.conn_rate_per_ip
            )?;
            sep = ", ";
        }
        if c.descriptors > 0 {
            write!(f, "{sep}{} out of file descriptors", c.descriptors)?;
        }
        if let Some(peer) = self.last_peer {
            write!(f, "; last from {peer}")?;
        }
        write!(f, "; {} open", self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RefusalLimits = RefusalLimits {
        max_conns: 100,
        max_conns_per_ip: 4,
        conn_rate_per_ip: 20,
    };

    #[test]
    fn the_first_refusal_is_reported_at_once_and_the_rest_once_a_second() {
        let mut log = RefusalLog::new(LIMITS);
        assert_eq!(log.next_report(), None);
        assert!(log.report(0, 0).is_none());
        log.note(RefusalReason::PerIp, None, 10);
        let first = log.report(10, 4).unwrap();
        assert_eq!(first.counts.per_ip, 1);
        let mut lines = 1;
        // 10,000 refusals over 3 s: a line a second, not one each.
        for i in 0..10_000u64 {
            let now = 10 + i * 3000 / 10_000;
            log.note(RefusalReason::Rate, None, now);
            if log.report(now, 4).is_some() {
                lines += 1;
            }
        }
        assert_eq!(log.next_report(), Some(3010));
        assert!(log.report(3009, 4).is_none());
        assert!(log.report(3010, 4).is_some());
        lines += 1;
        assert_eq!(lines, 4);
        assert_eq!(log.next_report(), None);
        assert_eq!(log.totals.rate, 10_000);
        assert_eq!(log.totals.per_ip, 1);
        assert_eq!(log.totals.total(), 10_001);
    }

    #[test]
    fn reported_counts_add_up_to_the_totals() {
        let mut log = RefusalLog::new(LIMITS);
        let reasons = [
            RefusalReason::ServerFull,
            RefusalReason::PerIp,
            RefusalReason::Rate,
            RefusalReason::Descriptors,
        ];
        let mut reported = RefusalCounts::default();
        for now in 0..5000u64 {
            let reason = reasons[(now % 4) as usize];
            log.note(reason, None, now);
            if let Some(r) = log.report(now, 0) {
                reported.server_full += r.counts.server_full;
                reported.per_ip += r.counts.per_ip;
                reported.rate += r.counts.rate;
                reported.descriptors += r.counts.descriptors;
            }
        }
        if let Some(r) = log.report(10_000, 0) {
            reported.server_full += r.counts.server_full;
            reported.per_ip += r.counts.per_ip;
            reported.rate += r.counts.rate;
            reported.descriptors += r.counts.descriptors;
        }
        assert_eq!(reported, log.totals);
        assert_eq!(log.totals.server_full, 1250);
    }

    #[test]
    fn the_line_names_each_reason_its_limit_and_the_last_address() {
        let mut log = RefusalLog::new(LIMITS);
        log.note(RefusalReason::ServerFull, None, 1000);
        log.report(1000, 100).unwrap();
        for reason in [
            RefusalReason::ServerFull,
            RefusalReason::ServerFull,
            RefusalReason::PerIp,
            RefusalReason::Rate,
            RefusalReason::Descriptors,
        ] {
            log.note(reason, Some("192.0.2.7".parse().unwrap()), 1500);
        }
        log.note(RefusalReason::Descriptors, None, 1900);
        let line = log.report(2000, 100).unwrap().to_string();
        assert_eq!(
            line,
            "refused 6 connection(s) over 0.5s: 2 server full (--max-conns 100 reached), \
             1 --max-conns-per-ip 4 reached, 1 --conn-rate-per-ip 20 exceeded, \
             2 out of file descriptors; last from 192.0.2.7; 100 open"
        );
        log.note(RefusalReason::Rate, None, 5000);
        let line = log.report(5000, 3).unwrap().to_string();
        assert_eq!(
            line,
            "refused 1 connection(s) over 0.0s: 1 --conn-rate-per-ip 20 exceeded; 3 open"
        );
    }
}
