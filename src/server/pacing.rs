//! Flood control as a line-pacing policy (spec 1.3; `Config::chat_rate`
//! and `Config::chat_burst`): a token bucket per client of a protocol that declares
//! [`Pacing::Lines`](crate::proto::Pacing::Lines), one token per line.
//!
//! Lines beyond the bucket are neither refused nor lost: the loop lets the
//! core consume only as many complete lines as there are tokens (the
//! rest stays in the connection's carried input), and does not read that
//! client again until a token is due, a deadline in
//! [`Timers`](super::timers::Timers) (`TimerKind::Refill`), not a busy
//! loop. The client's socket fills and TCP pushes back on the sender: a
//! flooder slows itself down instead of making the group's receivers slow
//! consumers. With a rate of 0 none of this runs (one branch per paced
//! read).
//!
//! Integer arithmetic on the loop's millisecond clock. The tokens are the
//! core's own line allowance (`Session::set_line_allowance`: it
//! counts them down as it consumes lines), so a connection adds only the
//! bucket's clock, 4 bytes: the low 32 bits of the loop's milliseconds,
//! compared with wrapping arithmetic (a client idle for 49 days may find
//! fewer tokens than its burst, once).

/// The server's flood-control setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacingLimit {
    /// Lines per second; 0 = no limit.
    pub rate: u32,
    /// Lines at once before the rate applies (the bucket's size).
    pub burst: u32,
}

impl PacingLimit {
    /// Whether there is a limit at all.
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// Milliseconds between two tokens, rounded up (at least 1).
    fn period_ms(&self) -> u64 {
        1000u64.div_ceil(u64::from(self.rate.max(1))).max(1)
    }
}

/// One client's bucket, as the loop works on it: the tokens come from the
/// session and go back to it, and so does the clock (its `LoopSlots`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Lines the client may send now.
    pub tokens: u32,
    /// Loop milliseconds (low 32 bits) up to which tokens have been
    /// credited.
    pub credited_at: u32,
}

/// The low 32 bits of a loop time: the bucket's clock.
fn low(now: u64) -> u32 {
    // Truncation intended: times are compared with wrapping arithmetic.
    now as u32
}

impl TokenBucket {
    /// A full bucket at loop time `now`: a new client may send a burst.
    pub fn full(limit: PacingLimit, now: u64) -> TokenBucket {
        TokenBucket {
            tokens: limit.burst,
            credited_at: low(now),
        }
    }

    /// Credits the tokens earned since the last refill, up to the burst.
    /// The fraction of a token not yet earned is kept.
    pub fn refill(&mut self, limit: PacingLimit, now: u64) {
        if self.tokens >= limit.burst {
            self.credited_at = low(now);
            return;
        }
        let rate = u64::from(limit.rate.max(1));
        let elapsed = u64::from(low(now).wrapping_sub(self.credited_at));
        let earned = elapsed.saturating_mul(rate) / 1000;
        if earned == 0 {
            return;
        }
        let tokens = u64::from(self.tokens).saturating_add(earned);
        if tokens >= u64::from(limit.burst) {
            self.tokens = limit.burst;
            self.credited_at = low(now);
        } else {
            // Below the burst, so it fits a u32; and what is credited is at
            // most `elapsed`, which fits one too.
            self.tokens = u32::try_from(tokens).unwrap_or(limit.burst);
            let credited = u32::try_from(earned * 1000 / rate).unwrap_or(u32::MAX);
            self.credited_at = self.credited_at.wrapping_add(credited);
        }
    }

    /// When the next token is due, in loop milliseconds (`now`: the loop's
    /// time).
    pub fn next_token_at(&self, limit: PacingLimit, now: u64) -> u64 {
        let since = u64::from(low(now).wrapping_sub(self.credited_at));
        now.saturating_add(limit.period_ms().saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: PacingLimit = PacingLimit {
        rate: 10,
        burst: 20,
    };

    #[test]
    fn a_new_client_has_its_burst_then_the_rate() {
        let mut b = TokenBucket::full(TEN, 1_000);
        assert_eq!(b.tokens, 20);
        b.tokens = 0;
        b.refill(TEN, 1_050);
        assert_eq!(b.tokens, 0, "half a token is not a token");
        assert_eq!(b.next_token_at(TEN, 1_050), 1_100);
        b.refill(TEN, 1_100);
        assert_eq!(b.tokens, 1);
        b.refill(TEN, 1_350);
        assert_eq!(b.tokens, 3, "the fraction earned before is kept");
        b.refill(TEN, 60_000);
        assert_eq!(b.tokens, 20, "never more than the burst");
    }

    #[test]
    fn n_lines_take_n_minus_burst_over_rate_seconds() {
        // Take every token as soon as it is due: 120 lines at 10/s with a
        // burst of 20 take 10 s.
        let mut b = TokenBucket::full(TEN, 0);
        let (mut now, mut sent) = (0, 0u32);
        while sent < 120 {
            b.refill(TEN, now);
            sent += b.tokens;
            b.tokens = 0;
            now = b.next_token_at(TEN, now);
        }
        assert_eq!(sent, 120);
        assert!((9_900..=10_100).contains(&now), "{now}");
    }

    #[test]
    fn high_rates_earn_several_tokens_a_millisecond() {
        let fast = PacingLimit {
            rate: 5_000,
            burst: 100,
        };
        let mut b = TokenBucket::full(fast, 0);
        b.tokens = 0;
        assert_eq!(b.next_token_at(fast, 0), 1);
        b.refill(fast, 3);
        assert_eq!(b.tokens, 15);
    }

    #[test]
    fn the_clock_may_wrap() {
        let start = u64::from(u32::MAX) - 50;
        let mut b = TokenBucket::full(TEN, start);
        b.tokens = 0;
        b.refill(TEN, start + 250);
        assert_eq!(b.tokens, 2);
        assert_eq!(b.next_token_at(TEN, start + 250), start + 300);
    }
}
