//! SIGINT and SIGTERM, delivered into the loop as an ordinary readable
//! event (signal-hook's self-pipe, registered with the poll).
//!
//! The first signal starts a graceful shutdown in the loop. A second one
//! exits at once, from inside the signal handler itself, so it works even if
//! the loop were stuck: the exit status is 128 + the signal number, as a
//! shell reports a death by signal.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The shutdown signals, as a poll source.
pub struct ShutdownSignals {
    signals: Signals,
}

impl ShutdownSignals {
    /// Installs the handlers.
    pub fn install() -> io::Result<ShutdownSignals> {
        let seen = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Order matters: the exit check runs before the flag is set, so
            // it fires on the second signal, not the first.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                Arc::clone(&seen),
            )?;
            signal_hook::flag::register(signal, Arc::clone(&seen))?;
        }
        Ok(ShutdownSignals {
            signals: Signals::new([SIGINT, SIGTERM])?,
        })
    }

    /// Registers the self-pipe with the poll.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signals, token, Interest::READABLE)
    }

    /// Drains the pending signals; returns whether any arrived.
    pub fn take_pending(&mut self) -> bool {
        self.signals.pending().count() > 0
    }
}
