//! Datagrams: serving the UDP sockets, within their per-wake-up budget.

use crate::server::datagram::{DatagramEndpoint, DatagramStop};
use crate::server::trace;

use super::{datagram_token, Server};

/// The UDP sockets.
pub(super) struct Datagrams {
    pub(super) endpoints: Vec<DatagramEndpoint>,
    /// Sockets that stopped on their per-wake-up budget: served again next
    /// wake-up without waiting for an event.
    pub(super) ready: Vec<usize>,
}

impl Server {
    /// Answers the datagrams waiting on UDP socket `index` (and sends the
    /// replies it had queued), then makes its interest match its queue.
    pub(super) fn serve_datagrams(&mut self, index: usize) {
        if self.shutdown_at.is_some() {
            return;
        }
        let Some(endpoint) = self.datagrams.endpoints.get_mut(index) else {
            return;
        };
        let max_line = self.config.max_line;
        let cut_before = endpoint.counts.cut;
        let stop = endpoint.serve(&mut self.reading.scratch, max_line);
        self.shared.counts.udp_replies_cut += endpoint.counts.cut - cut_before;
        if stop == DatagramStop::Budget && !self.datagrams.ready.contains(&index) {
            self.datagrams.ready.push(index);
        }
        if let Err(e) = endpoint.settle(self.poll.registry(), datagram_token(index)) {
            let dropped = endpoint.discard_pending();
            log::warn!(
                "{} udp {}: reregister: {e}; dropped {dropped} queued replies",
                endpoint.protocol,
                endpoint.addr
            );
        }
    }

    pub(super) fn resume_datagrams(&mut self) {
        for index in std::mem::take(&mut self.datagrams.ready) {
            let _trace = trace::Scope::step("resume", || self.trace_name(datagram_token(index)));
            self.serve_datagrams(index);
        }
    }
}
