//! The Prometheus text exposition format, version 0.0.4, written by hand.
//!
//! Why not `prometheus-client` or `metrics-exporter-prometheus`: the
//! figures already live in plain integers the loop owns, and the format
//! is a page of `# HELP`/`# TYPE` lines and `name{labels} value` lines.
//! A registry crate would hold its own copy of every counter (behind
//! atomics, to be `Sync`) that the loop would have to keep in step; the
//! exporter crate needs tokio and hyper. Writing the text from the
//! loop's integers at scrape time costs the hot path nothing.

use std::fmt::Write;

use crate::config::Protocol;

use super::process::Process;
use super::{at, View};
use crate::server::metrics::{Closed, Refusal, WAKEUP_BUCKETS_NS};

/// The `le` label of each bucket bound of [`WAKEUP_BUCKETS_NS`].
const WAKEUP_BUCKETS_LE: [&str; 16] = [
    "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1",
];

/// Writes one metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One family with one sample per protocol served.
fn per_protocol(
    out: &mut String,
    view: &View<'_>,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(Protocol) -> u64,
) {
    family(out, name, kind, help);
    for p in view.protocols() {
        let _ = writeln!(out, "{name}{{protocol=\"{p}\"}} {}", value(p));
    }
}

/// One family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The whole exposition: every figure of spec section 6.
pub fn exposition(view: &View<'_>) -> String {
    let mut out = String::with_capacity(8192);
    let m = view.metrics;
    let counts = &view.shared.counts;
    per_protocol(
        &mut out,
        view,
        "onepoll_connections",
        "gauge",
        "TCP connections open now.",
        |p| at(&m.open, p),
    );
    per_protocol(
        &mut out,
        view,
        "onepoll_connections_accepted_total",
        "counter",
        "TCP connections accepted and served.",
        |p| at(&m.accepted, p),
    );
    family(
        &mut out,
        "onepoll_connections_refused_total",
        "counter",
        "TCP connections refused at accept, by reason.",
    );
    for p in view.protocols() {
        let row = m.refused.get(p.index());
        for (i, reason) in Refusal::ALL.iter().enumerate() {
            let n = row.and_then(|r| r.get(i)).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "onepoll_connections_refused_total{{protocol=\"{p}\",reason=\"{}\"}} {n}",
                reason.label()
            );
        }
    }
    family(
        &mut out,
        "onepoll_connections_closed_total",
        "counter",
        "TCP connections closed, by reason.",
    );
    for p in view.protocols() {
        let row = m.closed.get(p.index());
        for (i, reason) in Closed::ALL.iter().enumerate() {
            let n = row.and_then(|r| r.get(i)).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "onepoll_connections_closed_total{{protocol=\"{p}\",reason=\"{}\"}} {n}",
                reason.label()
            );
        }
    }
    per_protocol(
        &mut out,
        view,
        "onepoll_received_bytes_total",
        "counter",
        "Bytes read from TCP connections.",
        |p| at(&counts.received, p),
    );
    per_protocol(
        &mut out,
        view,
        "onepoll_sent_bytes_total",
        "counter",
        "Bytes written to TCP connections.",
        |p| at(&counts.sent, p),
    );
    per_protocol(
        &mut out,
        view,
        "onepoll_requests_total",
        "counter",
        "Requests: messages, lines, files or commands, as each protocol counts them (docs/PROTOCOLS.md).",
        |p| view.requests(p),
    );
    single(
        &mut out,
        "onepoll_udp_replies_cut_total",
        "counter",
        "UDP replies cut to fit one datagram.",
        counts.udp_replies_cut,
    );
    single(
        &mut out,
        "onepoll_chat_deliveries_total",
        "counter",
        "Broadcast messages queued to receivers.",
        counts.chat_deliveries,
    );
    single(
        &mut out,
        "onepoll_chat_members",
        "gauge",
        "Members of the broadcast group.",
        crate::proto::Group::member_count(view.shared.group()),
    );
    single(
        &mut out,
        "onepoll_upload_files_saved_total",
        "counter",
        "Files saved whole (renamed into place).",
        counts.upload_files_saved,
    );
    single(
        &mut out,
        "onepoll_upload_files_refused_total",
        "counter",
        "Files refused past --max-files.",
        counts.upload_files_refused,
    );
    single(
        &mut out,
        "onepoll_buffered_bytes",
        "gauge",
        "Bytes every client buffer holds together.",
        m.buffered_bytes,
    );
    single(
        &mut out,
        "onepoll_memory_limit_bytes",
        "gauge",
        "The --max-memory budget of client buffers.",
        m.memory_limit,
    );
    single(
        &mut out,
        "onepoll_loop_wakeups_total",
        "counter",
        "Event loop wake-ups.",
        m.wakeups,
    );
    single(
        &mut out,
        "onepoll_loop_events_total",
        "counter",
        "Events the event loop handled.",
        m.events,
    );
    let h = &m.wakeup_duration;
    let name = "onepoll_loop_wakeup_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time one wake-up of the event loop spent working (not waiting).",
    );
    let mut cumulative = 0;
    for (le, n) in WAKEUP_BUCKETS_LE.iter().zip(h.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count {}", h.count);
    debug_assert_eq!(WAKEUP_BUCKETS_LE.len(), WAKEUP_BUCKETS_NS.len());

    let process = Process::read();
    single(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        process.resident_bytes,
    );
    single(
        &mut out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        process.virtual_bytes,
    );
    single(
        &mut out,
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        process.open_fds,
    );
    single(
        &mut out,
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        process.max_fds,
    );
    single(
        &mut out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        process.cpu_seconds,
    );
    let start = m
        .started_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    single(
        &mut out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        start,
    );
    out
}
