//! The machine's cross-CPU wake-up cost, timed just before and just after
//! a run, so that a comparison can tell which runs saw the same machine.
//!
//! On a small VM the cost of waking a task on the other CPU is not fixed:
//! this project's 2-vCPU VM flips, for seconds to minutes at a time,
//! between a loopback round trip across CPUs of ~7 µs and one of ~20 µs,
//! whatever is running. Every request a server answers is such a wake-up
//! (the load generator sleeps on the other CPU), so in the slow mode the
//! same server costs 2.5 times as much per request. A same-CPU round trip
//! does not change: the hypervisor's handling of the cross-CPU interrupt
//! does.
//!
//! The probe: a thread pinned to the server's CPU echoes 64-byte messages
//! over a loopback TCP connection to the calling thread (which stays on
//! the load generator's CPU); the figure is the median over a few batches
//! of the microseconds per round trip. It takes 20-60 ms, while the server
//! is idle: after the run, once the server has gone quiet.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::procfs;

/// Bytes per probe message.
const MESSAGE: usize = 64;

/// Round trips before timing starts (connection and caches warm).
const WARM_UP: usize = 200;

/// Timed batches; the figure is their median.
const BATCHES: usize = 5;

/// Round trips per batch.
const TRIPS: usize = 400;

/// The longest one round trip may take before the probe gives up.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The cross-CPU wake-up cost measured around one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WakeProbe {
    /// Microseconds per round trip just before the run.
    pub before_us: f64,
    /// Microseconds per round trip just after it.
    pub after_us: f64,
}

/// Microseconds per loopback round trip between the calling thread and a
/// thread pinned to `cpu` (the median of a few timed batches).
pub fn round_trip_us(cpu: usize) -> io::Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut near = TcpStream::connect(listener.local_addr()?)?;
    let (far, _) = listener.accept()?;
    near.set_nodelay(true)?;
    far.set_nodelay(true)?;
    near.set_read_timeout(Some(TIMEOUT))?;
    let echo = thread::spawn(move || echo_on(cpu, far));
    let timed = time_trips(&mut near);
    drop(near);
    // The echo side's error (a CPU it could not be pinned to) is the
    // reason a trip failed.
    echo.join()
        .map_err(|_| io::Error::other("probe echo thread panicked"))??;
    timed
}

/// Warms up, then times [`BATCHES`] batches of round trips; the median
/// batch's microseconds per trip.
fn time_trips(near: &mut TcpStream) -> io::Result<f64> {
    let mut message = [b'p'; MESSAGE];
    let mut trip = || -> io::Result<()> {
        near.write_all(&message)?;
        near.read_exact(&mut message)
    };
    for _ in 0..WARM_UP {
        trip()?;
    }
    let mut batches = [0f64; BATCHES];
    for batch in &mut batches {
        let start = Instant::now();
        for _ in 0..TRIPS {
            trip()?;
        }
        *batch = start.elapsed().as_secs_f64() * 1e6 / TRIPS as f64;
    }
    batches.sort_by(f64::total_cmp);
    Ok(batches[BATCHES / 2])
}

/// How long the server may take to settle after a run before the second
/// probe runs anyway.
const QUIET_MAX: Duration = Duration::from_secs(3);

/// The window over which the server must be nearly idle.
const QUIET_WINDOW: Duration = Duration::from_millis(20);

/// Waits, at most 3 s, until process `pid` has used less than a
/// tenth of a CPU over 20 ms: a probe pinned to the server's
/// CPU then times the machine, not the server's teardown competing with
/// it (a chat room's thousand LEAVE broadcasts, ten thousand idle
/// connections closing). Returns at once if the process cannot be read.
pub fn wait_for_quiet(pid: u32) {
    let start = Instant::now();
    let Some(mut last) = procfs::process_cpu_clock(pid) else {
        return;
    };
    while start.elapsed() < QUIET_MAX {
        thread::sleep(QUIET_WINDOW);
        let Some(now) = procfs::process_cpu_clock(pid) else {
            return;
        };
        if now.saturating_sub(last) < QUIET_WINDOW / 10 {
            return;
        }
        last = now;
    }
}

/// The far end: pinned to `cpu`, echoes every message until EOF.
fn echo_on(cpu: usize, mut far: TcpStream) -> io::Result<()> {
    pin_current_thread(cpu)?;
    let mut message = [0u8; MESSAGE];
    loop {
        match far.read_exact(&mut message) {
            Ok(()) => far.write_all(&message)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Restricts the calling thread to CPU `cpu`.
fn pin_current_thread(cpu: usize) -> io::Result<()> {
    crate::sys::process::pin_current_thread(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_is_timed_on_a_cpu_this_process_may_use() {
        // Not CPU 0 by name: CI may not allow every CPU.
        let cpu = crate::sys::process::current_cpu();
        let us = round_trip_us(cpu).expect("probe");
        assert!(us > 0.0 && us < 100_000.0, "{us} µs per round trip");
    }

    #[test]
    fn a_cpu_the_machine_cannot_have_is_an_error() {
        assert!(round_trip_us(libc::CPU_SETSIZE as usize).is_err());
    }
}
