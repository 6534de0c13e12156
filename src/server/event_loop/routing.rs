//! Routing: the deliveries a core asked for, to their receivers, and the
//! slow consumers found at the push ended (see `proto::effects`).

use super::*;

impl Server {
    /// Routes the deliveries the last core call asked for, then ends every
    /// receiver that became a slow consumer (whose `on_close` may ask for
    /// more deliveries: route again until none is left). Called after every
    /// read, and most reads ask for none: that case is two loads, inlined.
    #[inline(always)]
    pub(super) fn route(&mut self) {
        if !self.effects.is_empty() || !self.slow.is_empty() {
            self.route_pending();
        }
    }

    #[inline(never)]
    pub(super) fn route_pending(&mut self) {
        // A stats session asks for reports only, and no other core does.
        if let Some(Effect::Report { .. }) = self.effects.first() {
            self.serve_reports();
        }
        while !self.effects.is_empty() || !self.slow.is_empty() {
            let mut sink = SlabSink {
                conns: &mut self.conns,
                index: &self.index,
                max_sendq: self.config.max_sendq,
                flush_list: &mut self.flush_list,
                slow: &mut self.slow,
                delivered: 0,
                memory: &mut self.memory,
            };
            effects::route(&mut self.effects, &self.shared, &mut sink);
            self.shared.counts.chat_deliveries += sink.delivered;
            let slow = std::mem::take(&mut self.slow);
            let max_sendq = self.config.max_sendq;
            for key in slow {
                let (_, conns, mut io) = self.io_parts();
                if let Some(conn) = conns.get_mut(key) {
                    log::info!(
                        "{} #{} from {}: unsent output passed --max-sendq {}; disconnecting",
                        conn.protocol(),
                        conn.id,
                        conn.peer,
                        max_sendq
                    );
                    // Over the limit is the reason it goes, even if it was
                    // already closing (a backlog behind its `/quit`).
                    conn.reason = Some(CloseReason::SendqExceeded);
                    conn.end_session(&mut io, CloseReason::SendqExceeded);
                    conn.kill();
                }
                self.queue_flush(key);
            }
        }
    }

    /// Renders the reports the stats session asked for into its output,
    /// in order (see [`crate::proto::stats`]).
    #[cold]
    pub(super) fn serve_reports(&mut self) {
        let udp_requests = self.datagrams.iter().map(|d| d.counts.received).sum();
        let udp_dropped = self.datagrams.iter().map(|d| d.counts.dropped).sum();
        self.metrics.buffered_bytes = self.memory.buffered_bytes as u64;
        self.metrics.memory_limit = self.memory.limit as u64;
        for effect in std::mem::take(&mut self.effects) {
            let Effect::Report { to, report } = effect else {
                self.effects.push(effect);
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
            if let Some((_, conn)) = self.conns.iter_mut().find(|(_, c)| c.id == to) {
                conn.put_report(&bytes);
            }
        }
    }
}
