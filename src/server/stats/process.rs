//! The `process_*` figures every Prometheus exporter gives, read from the
//! kernel for this process: resident memory, open descriptors, CPU time,
//! the descriptor limit.

use std::fs;

/// One reading of the process figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Process {
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The open-files soft limit.
    pub max_fds: u64,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
}

impl Process {
    /// Reads the figures now; one that cannot be read is 0.
    pub fn read() -> Process {
        let page = page_size();
        let (virtual_pages, resident_pages) = fs::read_to_string("/proc/self/statm")
            .ok()
            .map(|text| {
                let mut fields = text
                    .split_whitespace()
                    .map(|f| f.parse::<u64>().unwrap_or(0));
                (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
            })
            .unwrap_or((0, 0));
        let open_fds = fs::read_dir("/proc/self/fd")
            .map(|dir| dir.count().saturating_sub(1) as u64)
            .unwrap_or(0);
        Process {
            resident_bytes: resident_pages * page,
            virtual_bytes: virtual_pages * page,
            open_fds,
            max_fds: max_fds(),
            cpu_seconds: cpu_seconds(),
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

fn max_fds() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur
}

fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`, which we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_descriptors_and_a_limit() {
        let p = Process::read();
        assert!(p.resident_bytes > 0);
        assert!(p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3);
        assert!(p.max_fds >= p.open_fds);
    }
}
