//! Routing: the deliveries a core asked for, to their receivers, and the
//! slow consumers found at the push ended (see `proto::effects`).

use crate::proto::{effects, CloseReason, Effect};
use crate::server::delivery::{ConnIndex, SlabSink};
use crate::server::stats::{self, View};

use super::Server;

/// Routing's state.
pub(super) struct Routing {
    /// Deliveries the cores asked for, routed after each call.
    pub(super) effects: Vec<Effect>,
    /// Id to slab key of the connections that receive deliveries.
    pub(super) index: ConnIndex,
    /// Receivers found over `--max-sendq` while routing.
    pub(super) slow: Vec<usize>,
}

impl Server {
    /// Routes the deliveries the last core call asked for, then ends every
    /// receiver that became a slow consumer (whose `on_close` may ask for
    /// more deliveries: route again until none is left). Called after every
    /// read, and most reads ask for none: that case is two loads, inlined.
    #[inline(always)]
    pub(super) fn route(&mut self) {
        if !self.routing.effects.is_empty() || !self.routing.slow.is_empty() {
            self.route_pending();
        }
    }

    #[inline(never)]
    pub(super) fn route_pending(&mut self) {
        // A stats session asks for reports only, and no other core does.
        if let Some(Effect::Report { .. }) = self.routing.effects.first() {
            self.serve_reports();
        }
        while !self.routing.effects.is_empty() || !self.routing.slow.is_empty() {
            let mut sink = SlabSink {
                conns: &mut self.conns,
                index: &self.routing.index,
                max_sendq: self.config.max_sendq,
                flush_list: &mut self.flushing.list,
                slow: &mut self.routing.slow,
                delivered: 0,
                memory: &mut self.memory,
            };
            effects::route(&mut self.routing.effects, &self.shared, &mut sink);
            self.shared.counts.chat_deliveries += sink.delivered;
            let slow = std::mem::take(&mut self.routing.slow);
            let max_sendq = self.config.max_sendq;
            for key in slow {
                let (_, conns, mut io, _) = self.io_parts();
                if let Some(conn) = conns.get_mut(key) {
                    log::info!(
                        "{} #{} from {}: unsent output passed --max-sendq {}; disconnecting",
                        conn.protocol(),
                        conn.id(),
                        conn.peer(),
                        max_sendq
                    );
                    // Over the limit is the reason it goes, even if it was
                    // already closing (a backlog behind its `/quit`).
                    conn.drop_for(&mut io, CloseReason::SendqExceeded);
                }
                self.queue_flush(key);
            }
        }
    }

    /// Renders the reports the stats session asked for into its output,
    /// in order (see [`crate::proto::stats`]).
    #[cold]
    pub(super) fn serve_reports(&mut self) {
        let udp_requests = self
            .datagrams
            .endpoints
            .iter()
            .map(|d| d.counts.received)
            .sum();
        let udp_dropped = self
            .datagrams
            .endpoints
            .iter()
            .map(|d| d.counts.dropped)
            .sum();
        self.metrics.buffered_bytes = self.memory.buffered_bytes as u64;
        self.metrics.memory_limit = self.memory.limit as u64;
        for effect in std::mem::take(&mut self.routing.effects) {
            let Effect::Report { to, report } = effect else {
                self.routing.effects.push(effect);
                continue;
            };
            let view = View {
                metrics: &self.metrics,
                shared: &self.shared,
                conns: &self.conns,
                config: &self.config,
                udp_requests,
                udp_dropped,
                now: self.clock.now,
            };
            let bytes = stats::render(report, &view);
            if let Some((_, conn)) = self.conns.iter_mut().find(|(_, c)| c.id() == to) {
                conn.put_report(&bytes);
            }
        }
    }
}
