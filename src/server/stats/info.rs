//! The line protocol's texts, in the style of Redis `INFO` and `CLIENT
//! LIST`: `key:value` lines under `# Section` headers ended by an empty
//! line, and one `key=value ...` line per connection.

use std::fmt::Write;

use crate::config::Protocol;

use super::process::Process;
use super::{at, View};
use crate::server::metrics::{Closed, Refusal};

/// The `INFO` reply: sections Server, Clients, Stats, Memory, Loop.
pub fn info(view: &View<'_>) -> String {
    let mut out = String::with_capacity(2048);
    let m = view.metrics;
    let c = view.config;
    let counts = &view.shared.counts;
    let protocols: Vec<Protocol> = view.protocols().collect();
    let process = Process::read();

    let _ = writeln!(out, "# Server");
    let _ = writeln!(out, "onepoll_version:{}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "process_id:{}", std::process::id());
    let _ = writeln!(out, "uptime_in_seconds:{}", m.started.elapsed().as_secs());
    let served: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(out, "protocols:{}", served.join(","));
    let _ = writeln!(out, "max_conns:{}", c.max_conns);
    let idle = c.idle_timeout.map_or(0, |d| d.as_secs());
    let _ = writeln!(out, "idle_timeout:{idle}");
    let _ = writeln!(out, "max_line:{}", c.max_line);
    let _ = writeln!(out, "max_sendq:{}", c.max_sendq);
    let _ = writeln!(out, "max_upload:{}", c.max_upload);
    let _ = writeln!(out, "max_buffer:{}", c.max_buffer);
    let _ = writeln!(out, "max_files:{}", c.max_files);
    let _ = writeln!(out, "max_memory:{}", c.max_memory);
    let _ = writeln!(out, "chat_rate:{}", c.chat_rate);
    let _ = writeln!(out, "chat_burst:{}", c.chat_burst);
    let _ = writeln!(out, "max_conns_per_ip:{}", c.max_conns_per_ip);
    let _ = writeln!(out, "conn_rate_per_ip:{}", c.conn_rate_per_ip);
    let _ = writeln!(out, "transform_table:{}", c.transform_table);
    let _ = writeln!(out, "max_fds:{}", process.max_fds);

    let _ = writeln!(out, "# Clients");
    let _ = writeln!(out, "connected_clients:{}", m.open_total());
    for &p in &protocols {
        let _ = writeln!(out, "connected_{p}:{}", at(&m.open, p));
    }
    let _ = writeln!(
        out,
        "chat_members:{}",
        crate::proto::Group::member_count(view.shared.group())
    );

    let _ = writeln!(out, "# Stats");
    let accepted: u64 = m.accepted.iter().sum();
    let _ = writeln!(out, "total_connections_received:{accepted}");
    let refused: u64 = m.refused.iter().flatten().sum();
    let _ = writeln!(out, "rejected_connections:{refused}");
    for &p in &protocols {
        let _ = writeln!(out, "accepted_{p}:{}", at(&m.accepted, p));
    }
    for &p in &protocols {
        let _ = writeln!(out, "requests_{p}:{}", view.requests(p));
    }
    for &p in &protocols {
        let _ = writeln!(out, "received_bytes_{p}:{}", at(&counts.received, p));
        let _ = writeln!(out, "sent_bytes_{p}:{}", at(&counts.sent, p));
    }
    for (i, reason) in Refusal::ALL.iter().enumerate() {
        let n: u64 = m.refused.iter().filter_map(|row| row.get(i)).sum();
        let _ = writeln!(out, "rejected_{}:{n}", reason.label());
    }
    for (i, reason) in Closed::ALL.iter().enumerate() {
        let n: u64 = m.closed.iter().filter_map(|row| row.get(i)).sum();
        let _ = writeln!(out, "closed_{}:{n}", reason.label());
    }
    let _ = writeln!(out, "udp_replies_cut:{}", counts.udp_replies_cut);
    let _ = writeln!(out, "udp_replies_dropped:{}", view.udp_dropped);
    let _ = writeln!(out, "chat_deliveries:{}", counts.chat_deliveries);
    let _ = writeln!(out, "upload_files_saved:{}", counts.upload_files_saved);
    let _ = writeln!(out, "upload_files_refused:{}", counts.upload_files_refused);

    let _ = writeln!(out, "# Memory");
    let _ = writeln!(out, "buffered_bytes:{}", m.buffered_bytes);
    let _ = writeln!(out, "memory_limit_bytes:{}", m.memory_limit);
    let _ = writeln!(out, "used_memory_rss:{}", process.resident_bytes);

    let _ = writeln!(out, "# Loop");
    let _ = writeln!(out, "eventloop_cycles:{}", m.wakeups);
    let _ = writeln!(out, "eventloop_events:{}", m.events);
    let _ = writeln!(
        out,
        "eventloop_duration_sum:{}",
        m.wakeup_duration.sum_ns / 1000
    );
    let _ = writeln!(out, "used_cpu_seconds:{:.3}", process.cpu_seconds);
    out.push('\n');
    out
}

/// The `CLIENTS` reply: one line per open connection, ended by an empty
/// line.
pub fn clients(view: &View<'_>) -> String {
    let mut out = String::with_capacity(96 * view.conns.len() + 1);
    for (_, conn) in view.conns.iter() {
        let p = conn.protocol();
        let _ = write!(
            out,
            "id={} proto={p} addr={} age={} idle={} inbuf={} outbuf={}",
            conn.id(),
            conn.peer(),
            (view.now / 1000).saturating_sub(u64::from(conn.opened_secs())),
            view.now.saturating_sub(conn.last_active()) / 1000,
            conn.carried(),
            conn.pending_output(),
        );
        if let Some(name) = conn.display_name(view.shared) {
            let _ = write!(out, " nick={name}");
        }
        out.push('\n');
    }
    out.push('\n');
    out
}
