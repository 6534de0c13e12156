//! Descriptors: taking ownership of the sockets systemd passed, and the
//! flags of a descriptor (close-on-exec, nonblocking).

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::OFlags;
use rustix::io::FdFlags;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Whether [`take_listen_fds`] has run: the passed descriptors can be
/// owned only once.
static LISTEN_FDS_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the descriptors that systemd passed to this process
/// by socket activation: `LISTEN_FDS` of them from descriptor 3, if
/// `LISTEN_PID` names this process (else none), each set to close-on-exec
/// so that no child inherits it. Only the first call takes them; any
/// later call returns an empty list. Entry `i` is descriptor `3 + i`, or
/// the error met when examining it (a descriptor that is not open is
/// `EBADF`, and is not taken). `Err` holds `LISTEN_FDS` when it is not a
/// number. The environment is left as it is: the caller removes the
/// variables once it has read `LISTEN_FDNAMES`.
pub fn take_listen_fds() -> Result<Vec<io::Result<OwnedFd>>, String> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let Some(count) = std::env::var("LISTEN_FDS").ok().filter(|_| ours) else {
        return Ok(Vec::new());
    };
    let count: RawFd = count.trim().parse().map_err(|_| count.clone())?;
    if LISTEN_FDS_TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    Ok(
        (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count.max(0)))
            .map(|fd| {
                // SAFETY: F_GETFD reads a flag of the descriptor table and
                // passes no memory; on a descriptor that is not open it fails
                // with EBADF and changes nothing.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` is open (checked above) and belongs to this
                // process by systemd's socket-activation protocol: systemd
                // opened descriptors 3..3+LISTEN_FDS for the process that
                // LISTEN_PID names, which is us (checked above). Nothing
                // else in the process owns them: std and our code never adopt
                // a descriptor they did not open, the kernel does not hand out
                // a number that is already open, and LISTEN_FDS_TAKEN makes
                // this the only place that ever takes them, once.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                set_cloexec(&owned)?;
                Ok(owned)
            })
            .collect(),
    )
}

/// Sets close-on-exec on `fd`, so that no child process inherits it.
pub fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(&fd)?;
    rustix::io::fcntl_setfd(&fd, flags | FdFlags::CLOEXEC)?;
    Ok(())
}

/// Turns `O_NONBLOCK` on or off on the open file behind `fd` (shared with
/// every process that holds it: put it back when done). Returns whether it
/// was on before.
pub fn set_nonblocking(fd: impl AsFd, on: bool) -> io::Result<bool> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    let was = flags.contains(OFlags::NONBLOCK);
    if was != on {
        rustix::fs::fcntl_setfl(&fd, flags ^ OFlags::NONBLOCK)?;
    }
    Ok(was)
}

/// One `read(2)` from `fd` into `buf`, without buffering (so that
/// readiness and what was read agree): the number of bytes read, 0 at end
/// of input.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonblocking_is_set_and_put_back() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!set_nonblocking(&a, true).unwrap());
        assert!(set_nonblocking(&a, false).unwrap());
        let mut buf = [0u8; 4];
        drop(_b);
        assert_eq!(read(&a, &mut buf).unwrap(), 0);
    }

    #[test]
    fn cloexec_is_set() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        set_cloexec(&a).unwrap();
        assert!(rustix::io::fcntl_getfd(&a)
            .unwrap()
            .contains(FdFlags::CLOEXEC));
    }
}
