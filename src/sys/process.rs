//! This process and the machine: the open-files limit, CPU time, clocks,
//! page size, clock ticks, host name, CPU affinity, and the heap.

use std::io;
use std::time::Duration;

use rustix::process::{Resource, Rlimit};

/// The soft and hard `RLIMIT_NOFILE` (open descriptors); `u64::MAX` for
/// no limit (`RLIM_INFINITY`).
pub fn nofile_limit() -> (u64, u64) {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    )
}

/// Sets the soft `RLIMIT_NOFILE` to `soft` and the hard one to `hard`
/// (`u64::MAX` for no limit). Only a privileged process may raise `hard`.
pub fn set_nofile_limit(soft: u64, hard: u64) -> io::Result<()> {
    let unlimited = |v: u64| (v != u64::MAX).then_some(v);
    let limit = Rlimit {
        current: unlimited(soft),
        maximum: unlimited(hard),
    };
    Ok(rustix::process::setrlimit(Resource::Nofile, limit)?)
}

/// The size of a memory page in bytes.
pub fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE)
}

/// Clock ticks per second (`_SC_CLK_TCK`), the unit of `/proc` CPU times.
pub fn clock_ticks_per_second() -> u64 {
    sysconf(libc::_SC_CLK_TCK)
}

/// A `sysconf` value; 0 if the system does not say. (Through libc, not
/// rustix: rustix reads these from the auxiliary vector, and its reader
/// dies under valgrind, which the project profiles with.)
fn sysconf(name: libc::c_int) -> u64 {
    // SAFETY: sysconf takes a plain integer and reads no memory of ours.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).unwrap_or(0)
}

/// The time on `clock`; zero if the kernel refuses it (it does not, for
/// the clocks below). Through libc, whose vDSO call valgrind supports:
/// rustix's own vDSO lookup dies under valgrind.
fn clock_now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, a local that
    // lives for the whole call; an unknown clock id is an error return.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, nanos.min(999_999_999))
}

/// Linux's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`): advanced at
/// each scheduler tick, read from a page the kernel shares, never going
/// back. The origin is arbitrary (boot).
pub fn monotonic_coarse() -> Duration {
    clock_now(libc::CLOCK_MONOTONIC_COARSE)
}

/// Linux's coarse wall clock (`CLOCK_REALTIME_COARSE`), since the Unix
/// epoch.
pub fn realtime_coarse() -> Duration {
    clock_now(libc::CLOCK_REALTIME_COARSE)
}

/// CPU time this process has used, user and system, over all its threads
/// (`CLOCK_PROCESS_CPUTIME_ID`).
pub fn own_cpu_time() -> Duration {
    clock_now(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of every thread of process `pid`, living or exited, from its
/// CPU-time clock (`clock_getcpuclockid`): the scheduler's own account.
/// An error if there is no such process or the kernel refuses.
pub fn process_cpu_time(pid: libc::pid_t) -> io::Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t into `clock`, a
    // local that lives for the whole call; `pid` is a plain integer. It
    // returns the error number instead of setting errno.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, a local that
    // lives for the whole call; an unknown clock id is an error return.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(ts.tv_sec).map_err(|_| io::ErrorKind::InvalidData)?;
    let nanos = u64::try_from(ts.tv_nsec).map_err(|_| io::ErrorKind::InvalidData)?;
    Ok(Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// This machine's host name (`uname`'s node name), as bytes.
pub fn hostname() -> Vec<u8> {
    rustix::system::uname().nodename().to_bytes().to_vec()
}

/// Restricts the calling thread to CPU `cpu`; `EINVAL` if the machine
/// cannot have such a CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// The CPU the calling thread is running on.
pub fn current_cpu() -> usize {
    rustix::thread::sched_getcpu()
}

/// Asks the allocator to give free memory back to the kernel: glibc's
/// `malloc_trim(0)` returns every free page of every arena (not only the
/// top of the heap), so the resident size falls back towards its idle
/// figure after a load. Costs a walk of the allocator's free lists (about a
/// millisecond after a large load): the loop calls it rarely (see
/// `server::memory_budget`). Does nothing where the C library is not glibc.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, touches only the
    // allocator's own state under its own locks, and is documented safe to
    // call at any time from any thread; it frees nothing that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Buffers of this size and up are mapped on their own and unmapped when
/// freed (see [`give_back_large_frees`]).
pub const OWN_MAPPING_BYTES: usize = 128 * 1024;

/// Makes the allocator hand buffers of [`OWN_MAPPING_BYTES`] and up their
/// own mapping, returned to the kernel the moment they are freed. glibc
/// starts there too, but raises the threshold each time such a buffer is
/// freed (up to 32 MiB), after which large buffers come from the heap and
/// their pages stay resident once freed: under a surge the budget closes
/// connections and frees their buffers, yet the resident size kept rising
/// well past `--max-memory`. Setting the threshold fixes it where it
/// starts. Does nothing where the C library is not glibc.
pub fn give_back_large_frees() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two plain integers and changes only the
    // allocator's tuning under its own lock; buffers already allocated are
    // unaffected (each is freed the way it was allocated).
    unsafe {
        let bytes = libc::c_int::try_from(OWN_MAPPING_BYTES).unwrap_or(libc::c_int::MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_clocks_and_names_are_read() {
        let (soft, hard) = nofile_limit();
        assert!(soft >= 3 && hard >= soft);
        set_nofile_limit(soft, hard).unwrap();
        assert_eq!(nofile_limit(), (soft, hard));
        assert!(page_size() >= 4096);
        assert!(clock_ticks_per_second() > 0);
        assert!(monotonic_coarse() > Duration::ZERO);
        assert!(realtime_coarse() > Duration::from_secs(1_600_000_000));
        let pid = libc::pid_t::try_from(std::process::id()).unwrap();
        assert!(process_cpu_time(pid).is_ok());
        assert!(!hostname().is_empty());
        assert!(pin_current_thread(rustix::thread::CpuSet::MAX_CPU).is_err());
    }
}
