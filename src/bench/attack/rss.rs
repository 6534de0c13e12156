//! The server's resident memory while an attack runs: a thread reads
//! `VmRSS` of `/proc/PID/status` every 100 ms and keeps the peak, from the
//! start of the attack until the reading after it (a server still working
//! off an attack's backlog after the attack ended peaks then).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::bench::procfs;

/// How often the RSS is read.
pub const PERIOD: Duration = Duration::from_millis(100);

fn read(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    procfs::parse_rss(&status)
}

#[derive(Debug, Default)]
struct Shared {
    peak: AtomicU64,
    last: AtomicU64,
    stop: AtomicBool,
}

/// A running sampler.
#[derive(Debug)]
pub struct Sampler {
    /// RSS before the attack, bytes.
    pub idle: u64,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Reads `pid` once (the idle figure) and starts sampling, counting
    /// the peak from now on. `None` if the process cannot be read.
    pub fn start(pid: u32) -> Option<Sampler> {
        let idle = read(pid)?;
        let shared = Arc::new(Shared::default());
        shared.peak.store(idle, Ordering::Relaxed);
        shared.last.store(idle, Ordering::Relaxed);
        let s = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("rss".to_owned())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    if let Some(rss) = read(pid) {
                        s.last.store(rss, Ordering::Relaxed);
                        s.peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(PERIOD);
                }
            })
            .ok()?;
        Some(Sampler {
            idle,
            shared,
            thread: Some(thread),
        })
    }

    /// Stops sampling; returns the peak and the last reading, bytes.
    pub fn finish(mut self, pid: u32) -> (u64, u64) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let last = read(pid).unwrap_or_else(|| self.shared.last.load(Ordering::Relaxed));
        (self.shared.peak.load(Ordering::Relaxed).max(last), last)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
