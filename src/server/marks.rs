//! The loop's own marks on a connection: which of the loop's lists it is
//! in, what the loop has decided about it, and what the memory budget last
//! charged it. The connection carries them (an idle connection's size
//! counts: four flags and a `u32`), but only the loop writes them, each
//! through one method here.

/// The loop's marks on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// In the flush list of this wake-up.
    queued: bool,
    /// In the list of connections to serve again without an event.
    still_ready: bool,
    /// A close-grace deadline is armed.
    grace_armed: bool,
    /// A slow consumer: ended after routing, takes no more deliveries.
    slow_consumer: bool,
    /// What the memory budget last counted for this connection (see
    /// `server::memory_budget`; 4 bytes: a connection holding 4 GiB is
    /// counted as that).
    charged: u32,
}

impl Marks {
    /// Adds `key` to the flush list `list`, unless it is there already.
    #[inline(always)]
    pub fn enlist_flush(&mut self, key: usize, list: &mut Vec<usize>) {
        if !self.queued {
            self.queued = true;
            list.push(key);
        }
    }

    /// Taken off the flush list: it is being flushed.
    #[inline(always)]
    pub fn flushed(&mut self) {
        self.queued = false;
    }

    /// Adds `key` to the list `list` of connections served again next
    /// wake-up, unless it is there already (a connection that spends its
    /// budget and gets another event in the same wake-up must not earn a
    /// second share).
    pub fn enlist_still_ready(&mut self, key: usize, list: &mut Vec<usize>) {
        if !self.still_ready {
            self.still_ready = true;
            list.push(key);
        }
    }

    /// Taken off the still-ready list: it is being served.
    pub fn resumed(&mut self) {
        self.still_ready = false;
    }

    /// Whether it is listed to be served again next wake-up.
    pub fn is_still_ready(&self) -> bool {
        self.still_ready
    }

    /// Whether the close-grace deadline is still to be armed; true once.
    pub fn arm_grace(&mut self) -> bool {
        !std::mem::replace(&mut self.grace_armed, true)
    }

    /// Marks it a slow consumer and adds `key` to `slow`, the first time.
    pub fn mark_slow_consumer(&mut self, key: usize, slow: &mut Vec<usize>) {
        if !self.slow_consumer {
            self.slow_consumer = true;
            slow.push(key);
        }
    }

    /// Whether it was marked a slow consumer.
    #[inline(always)]
    pub fn is_slow_consumer(&self) -> bool {
        self.slow_consumer
    }

    /// What the memory budget last charged it.
    #[inline(always)]
    pub fn charged(&self) -> u32 {
        self.charged
    }

    /// The memory budget charges it `bytes` now; returns what it was
    /// charged before.
    #[inline(always)]
    pub fn charge(&mut self, bytes: u32) -> u32 {
        std::mem::replace(&mut self.charged, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_gets_a_connection_once() {
        let mut marks = Marks::default();
        let (mut flush, mut ready, mut slow) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            marks.enlist_flush(7, &mut flush);
            marks.enlist_still_ready(7, &mut ready);
            marks.mark_slow_consumer(7, &mut slow);
        }
        assert_eq!((flush, ready, slow), (vec![7], vec![7], vec![7]));
        marks.flushed();
        let mut again = Vec::new();
        marks.enlist_flush(7, &mut again);
        assert_eq!(again, vec![7]);
        assert!(marks.arm_grace());
        assert!(!marks.arm_grace());
        assert_eq!(marks.charge(10), 0);
        assert_eq!(marks.charged(), 10);
    }
}
