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
    crate::sys::process::page_size()
}

fn max_fds() -> u64 {
    crate::sys::process::nofile_limit().0
}

fn cpu_seconds() -> f64 {
    crate::sys::process::own_cpu_time().as_secs_f64()
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
