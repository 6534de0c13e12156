//! What the server process costs: CPU time (the process's CPU-time clock,
//! to the nanosecond; `utime + stime` of `/proc/PID/stat` where that clock
//! cannot be read) and resident memory (`VmRSS` of `/proc/PID/status`),
//! sampled before and after a run; and the bench's own CPU time, to show
//! when the load generator is the bottleneck.
//!
//! Why the clock: `/proc/PID/stat` counts in ticks of 10 ms, and a 2-second
//! run of a server using 0.25 s of CPU is then measured to +-4%, which is
//! the size of the differences the matrix is there to show.

use std::io;
use std::time::Duration;

use crate::sys;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident memory, bytes.
    pub rss: u64,
}

/// Reads process `pid` now.
pub fn sample(pid: u32) -> io::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let bad = |what| io::Error::new(io::ErrorKind::InvalidData, what);
    let cpu = match process_cpu_clock(pid) {
        Some(cpu) => cpu,
        None => {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
            parse_cpu(&stat, clock_ticks()).ok_or_else(|| bad("unreadable /proc/PID/stat"))?
        }
    };
    Ok(Sample {
        cpu,
        rss: parse_rss(&status).ok_or_else(|| bad("no VmRSS in /proc/PID/status"))?,
    })
}

/// CPU time of every thread of process `pid`, living or exited, from its
/// CPU-time clock (`clock_getcpuclockid`): the scheduler's own account, in
/// nanoseconds. `None` if the clock cannot be read (no such process, or a
/// kernel that refuses).
pub fn process_cpu_clock(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    sys::process::process_cpu_time(pid).ok()
}

fn clock_ticks() -> u64 {
    sys::process::clock_ticks_per_second().max(1)
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may hold spaces or parentheses itself, so the
/// fields are counted from the last `)`.
pub fn parse_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after.split_ascii_whitespace();
    // Fields after the name start at 3 (state); utime is 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_sec.max(1);
    Some(
        Duration::from_secs(ticks / tps)
            + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps),
    )
}

/// VmRSS in bytes from the text of `/proc/PID/status`.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_ascii_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// CPU time this process has used (user + system).
pub fn own_cpu() -> Duration {
    sys::process::own_cpu_time()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_counted_after_the_last_parenthesis() {
        let stat = "1234 (odd) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 1000 50";
        assert_eq!(parse_cpu(stat, 100), Some(Duration::from_millis(3250)));
        assert_eq!(parse_cpu("1234 (x) S 1", 100), None);
    }

    #[test]
    fn rss_is_read_in_kilobytes() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1532 kB\nThreads:\t1\n";
        assert_eq!(parse_rss(status), Some(1532 * 1024));
        assert_eq!(parse_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss > 0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(own_cpu() > Duration::ZERO);
    }

    #[test]
    fn another_process_cpu_clock_counts_its_work_finer_than_ticks() {
        // A child that spins some 100 ms of CPU, then sleeps so it can be read.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut last = Duration::ZERO;
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(10));
            last = process_cpu_clock(pid).expect("the child's CPU clock");
            if last > Duration::from_millis(20) {
                break;
            }
        }
        let via_sample = sample(pid).unwrap().cpu;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(last > Duration::from_millis(20), "child used {last:?}");
        assert!(via_sample >= last);
        // Not a multiple of a 10 ms tick, as /proc/PID/stat would give.
        assert_ne!(via_sample.as_nanos() % 10_000_000, 0);
        assert_eq!(process_cpu_clock(u32::MAX), None);
    }
}
