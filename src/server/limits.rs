//! Fitting `--max-conns` to the process's descriptor limit at start.
//!
//! Every connection costs a descriptor, and the server needs a few more of
//! its own (the standard streams, the poll, the signal pipe, listeners, the
//! spare kept for EMFILE, a file a core's store holds open). At start the soft
//! RLIMIT_NOFILE is raised toward `--max-conns` + [`RESERVED_FDS`], up to
//! the hard limit. Where even the hard limit is too low, the server warns
//! once and lowers its effective `--max-conns` so that refusing a client
//! (`server full`) happens before descriptors run out — as Redis does with
//! `maxclients`. Running out can still happen (files opened by uploads,
//! ENFILE system-wide); the accept path cures that case on its own.

use crate::sys::process::{nofile_limit, set_nofile_limit};

/// Descriptors kept for the server's own use beyond one per connection.
pub const RESERVED_FDS: u64 = 32;

/// The `--max-conns` that descriptors allow: `wanted` if the soft limit is
/// (or can be raised to) at least `wanted` + [`RESERVED_FDS`], else what
/// the limit leaves, at least 1.
pub fn fit_max_conns(wanted: usize) -> usize {
    let (soft, hard) = nofile_limit();
    let needed = (wanted as u64).saturating_add(RESERVED_FDS);
    let mut have = soft;
    if soft < needed {
        let target = needed.min(hard);
        match set_nofile_limit(target, hard) {
            Ok(()) => {
                log::debug!("raised the descriptor limit from {soft} to {target}");
                have = target;
            }
            Err(e) => log::debug!("cannot raise the descriptor limit to {target}: {e}"),
        }
    }
    if have >= needed {
        return wanted;
    }
    let fits = usize::try_from(have.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(1);
    log::warn!(
        "descriptor limit {have} (hard {hard}) is too low for --max-conns {wanted}: \
         serving at most {fits} connections (raise it with ulimit -n {needed})"
    );
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modest_max_conns_fits_the_usual_limit() {
        // The soft limit of a test process is at least a few hundred.
        assert_eq!(fit_max_conns(10), 10);
        let (soft, _) = nofile_limit();
        assert!(soft >= 10 + RESERVED_FDS);
    }
}
