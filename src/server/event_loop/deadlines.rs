//! Deadlines: idle timeouts, close grace periods and pacing refills that
//! came due.

use mio::Token;

use crate::proto::CloseReason;
use crate::server::timers::{millis, TimerKind, Timers};
use crate::server::trace;

use super::Server;

/// The deadlines of every connection.
pub(super) struct Deadlines {
    pub(super) timers: Timers,
}

impl Server {
    pub(super) fn fire_timers(&mut self) {
        while let Some(due) = self.deadlines.timers.pop_due(self.clock.now) {
            let _trace = trace::Scope::step("timer", || self.trace_name(Token(due.key())));
            let Some(conn) = self.conns.get_mut(due.key()) else {
                continue;
            };
            if conn.id() != due.id {
                continue;
            }
            match due.kind {
                TimerKind::Idle => {
                    let Some(idle) = self.config.idle_timeout else {
                        continue;
                    };
                    let deadline = conn.last_active().saturating_add(millis(idle));
                    if deadline > self.clock.now {
                        self.deadlines
                            .timers
                            .arm(deadline, due.key(), due.id, TimerKind::Idle);
                        continue;
                    }
                    if conn.is_open() {
                        log::debug!("idle timeout on #{} {}", conn.id(), conn.peer());
                        let (_, conns, mut io, _) = self.io_parts();
                        if let Some(conn) = conns.get_mut(due.key()) {
                            conn.end_session(&mut io, CloseReason::IdleTimeout);
                        }
                        self.route();
                    }
                }
                TimerKind::Refill => {
                    self.pump(due.key());
                }
                TimerKind::CloseGrace => {
                    log::debug!(
                        "#{} {}: close grace over, dropping {} unsent byte(s)",
                        conn.id(),
                        conn.peer(),
                        conn.pending_output()
                    );
                    conn.kill();
                }
            }
            self.queue_flush(due.key());
        }
    }
}
