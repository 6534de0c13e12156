//! Shutdown: a signal stops accepting, lets sessions say their last words,
//! and drains what the kernel already holds.

use crate::config::SHUTDOWN_GRACE;
use crate::server::trace;

use super::Server;

impl Server {
    pub(super) fn begin_shutdown(&mut self) {
        if self.shutdown_at.is_some() {
            return;
        }
        log::info!(
            "shutting down: {} connection(s) open, up to {SHUTDOWN_GRACE:?} for their replies",
            self.conns.len()
        );
        self.shutdown_at = Some(self.clock.after(SHUTDOWN_GRACE));
        if let Some(notifier) = &self.notifier {
            notifier.notify(&format!(
                "STOPPING=1\nSTATUS=shutting down, {} connection(s) open",
                self.conns.len()
            ));
        }
        trace::shutdown();
        for mut listener in self.accepting.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener.socket);
        }
        // A UDP socket has no connection to drain: it sends the replies it
        // holds if the kernel takes them now, and closes.
        self.datagrams.ready.clear();
        self.accepting.ready.clear();
        for mut endpoint in self.datagrams.endpoints.drain(..) {
            if endpoint.counts.cut > 0 {
                log::info!(
                    "{} udp {}: {} error replies cut to 3x their datagram",
                    endpoint.protocol,
                    endpoint.addr,
                    endpoint.counts.cut
                );
            }
            endpoint.flush();
            let dropped = endpoint.discard_pending();
            if dropped > 0 {
                log::warn!(
                    "{} udp {}: {dropped} queued replies dropped at shutdown",
                    endpoint.protocol,
                    endpoint.addr
                );
            }
            endpoint.deregister(self.poll.registry());
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let (_, conns, mut io, _) = self.io_parts();
            if let Some(conn) = conns.get_mut(key) {
                conn.begin_shutdown(&mut io);
            }
            self.route();
            // What the kernel already holds counts as received: read it,
            // stopping at the first message boundary.
            self.pump(key);
            if let Some(conn) = self.conns.get_mut(key) {
                // Unless the kernel may hold more (the read budget ran
                // out, or a read was cut short): the read path stops it
                // once the socket is drained.
                if !conn.marks().is_still_ready() {
                    conn.stop_if_between_messages();
                }
            }
            self.queue_flush(key);
        }
    }

    /// During a shutdown, whether the loop should stop: every connection is
    /// gone, or the grace is over (the rest are dropped, and said so).
    pub(super) fn shutdown_finished(&self) -> bool {
        let Some(deadline) = self.shutdown_at else {
            return false;
        };
        if self.conns.is_empty() {
            #[cfg(feature = "fault-injection")]
            super::super::faults::log_totals();
            log::info!("shutdown complete");
            return true;
        }
        if self.clock.now >= deadline {
            log::warn!(
                "shutdown grace over: dropping {} connection(s) with replies unsent",
                self.conns.len()
            );
            #[cfg(feature = "fault-injection")]
            super::super::faults::log_totals();
            return true;
        }
        false
    }
}
