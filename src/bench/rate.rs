//! The fixed-rate schedule (`--rate`), as wrk2 does it: every operation has
//! an intended start time fixed in advance, and its latency is measured
//! from then, not from when it could actually be sent. A server that
//! stalls is charged for every operation that should have started during
//! the stall (no coordinated omission).

use std::time::{Duration, Instant};

/// The intended start times of one connection's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    next: Instant,
    interval: Duration,
}

impl Schedule {
    /// Connection `index` of `conns` sharing `rate` operations per second
    /// from `start`: each connection runs at `rate / conns`, and their
    /// phases are spread evenly so the total rate is smooth.
    pub fn new(start: Instant, rate: f64, index: usize, conns: usize) -> Schedule {
        let conns = conns.max(1) as f64;
        let interval = Duration::from_secs_f64(conns / rate);
        let phase = Duration::from_secs_f64(index as f64 / rate);
        Schedule {
            next: start + phase,
            interval,
        }
    }

    /// When the next operation is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Takes the next operation if it is due at `now`: returns its intended
    /// start time and schedules the one after.
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        (self.next <= now).then(|| {
            let due = self.next;
            self.next += self.interval;
            due
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_the_rate_with_spread_phases() {
        let t0 = Instant::now();
        let a = Schedule::new(t0, 1000.0, 0, 4);
        let b = Schedule::new(t0, 1000.0, 1, 4);
        assert_eq!(a.next(), t0);
        assert_eq!(b.next(), t0 + Duration::from_millis(1));
        assert_eq!(a.interval, Duration::from_millis(4));
    }

    #[test]
    fn a_late_sender_owes_every_operation_at_its_intended_time() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100.0, 0, 1);
        let late = t0 + Duration::from_millis(35);
        let due: Vec<Instant> = std::iter::from_fn(|| s.take_due(late)).collect();
        assert_eq!(
            due,
            [0, 10, 20, 30].map(|ms| t0 + Duration::from_millis(ms))
        );
        assert_eq!(s.next(), t0 + Duration::from_millis(40));
        assert_eq!(s.take_due(late), None);
    }
}
