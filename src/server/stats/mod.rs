//! What the stats listener answers (spec section 6), rendered by the loop:
//! the stats core ([`crate::proto::stats`]) asks for a [`Report`], and the
//! loop, which alone sees every connection and counter, lends a [`View`]
//! of them to [`render`]. Nothing here does I/O but reading `/proc/self`
//! for the `process_*` figures.
//!
//! - [`prometheus`]: the text exposition format 0.0.4;
//! - [`info`]: the Redis-style `INFO` and `CLIENTS` texts;
//! - [`process`]: resident memory, descriptors, CPU time from the kernel.

pub mod info;
pub mod process;
pub mod prometheus;

use slab::Slab;

use crate::config::{Config, Protocol};
use crate::proto::stats::{http_head, Report, METRICS_CONTENT_TYPE};
use crate::proto::{Shared, Transport};

use super::conn::Conn;
use super::metrics::Metrics;

/// Everything a report is drawn from, lent by the loop for one render.
pub struct View<'a> {
    /// The loop's own figures.
    pub metrics: &'a Metrics,
    /// The cores' counters and the broadcast group.
    pub shared: &'a Shared,
    /// Every open connection.
    pub conns: &'a Slab<Conn>,
    /// The limits the server runs with.
    pub config: &'a Config,
    /// Datagrams answered (UDP requests), all sockets.
    pub udp_requests: u64,
    /// UDP replies dropped on a send error, all sockets.
    pub udp_dropped: u64,
    /// Loop milliseconds now.
    pub now: u64,
}

impl View<'_> {
    /// The protocols served, in the order they were named (stats too).
    pub fn protocols(&self) -> impl Iterator<Item = Protocol> + '_ {
        Protocol::EVERY
            .into_iter()
            .filter(|p| self.config.listeners.iter().any(|(q, _)| q == p))
    }

    /// Requests of `protocol`: a protocol served over UDP too counts its
    /// datagrams.
    pub fn requests(&self, protocol: Protocol) -> u64 {
        let tcp = at(&self.shared.counts.requests, protocol);
        if let Transport::TcpAndUdp(_) = protocol.declaration().transport {
            tcp + self.udp_requests
        } else {
            tcp
        }
    }
}

/// The value of a per-protocol counter.
pub fn at(values: &[u64; Protocol::COUNT], protocol: Protocol) -> u64 {
    values.get(protocol.index()).copied().unwrap_or(0)
}

/// The bytes `report` puts on the asking connection.
pub fn render(report: Report, view: &View<'_>) -> Vec<u8> {
    match report {
        Report::Info => info::info(view).into_bytes(),
        Report::Clients => info::clients(view).into_bytes(),
        Report::Metrics => {
            let body = prometheus::exposition(view);
            let mut out = http_head(200, METRICS_CONTENT_TYPE, body.len()).into_bytes();
            out.extend_from_slice(body.as_bytes());
            out
        }
        Report::NotFound => http_text(404, "not found; the metrics are at /metrics\n"),
        Report::BadRequest => http_text(400, "bad request\n"),
        Report::Line(text) => text.as_bytes().to_vec(),
    }
}

fn http_text(status: u16, body: &str) -> Vec<u8> {
    let mut out = http_head(status, "text/plain; charset=utf-8", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}
