//! Counters of what the protocol cores (and the loop's read and write
//! paths) see as it happens, kept in [`Shared`](super::Shared) so that a
//! core can count without knowing who reads the figures. Plain integers:
//! one thread owns them, so a count is one add, no atomics, no locks. The
//! stats listener (spec section 6) reads them through the loop.

use crate::config::Protocol;

/// Event counters, per protocol where the spec names a protocol label.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Requests per protocol: tne messages (TCP and UDP), cmd lines, chat
    /// lines, upload files, transform requests, stats commands.
    pub requests: [u64; Protocol::COUNT],
    /// Bytes read from connections, per protocol.
    pub received: [u64; Protocol::COUNT],
    /// Bytes written to connections, per protocol.
    pub sent: [u64; Protocol::COUNT],
    /// upload: files saved and answered `A`.
    pub upload_files_saved: u64,
    /// upload: files refused past `--max-files` (wired by the
    /// upload --max-files branch; 0 until then).
    pub upload_files_refused: u64,
    /// chat: messages queued to receivers (wired by the chat branch; 0
    /// until then).
    pub chat_deliveries: u64,
    /// tne UDP: replies cut to fit a datagram (wired by the UDP branch; 0
    /// until then).
    pub udp_replies_cut: u64,
}

impl Counts {
    /// One more request of `protocol`.
    #[inline(always)]
    pub fn request(&mut self, protocol: Protocol) {
        if let Some(n) = self.requests.get_mut(protocol.index()) {
            *n += 1;
        }
    }

    /// `n` more bytes read from a `protocol` connection.
    #[inline(always)]
    pub fn received(&mut self, protocol: Protocol, n: usize) {
        if let Some(total) = self.received.get_mut(protocol.index()) {
            *total += n as u64;
        }
    }

    /// Bytes received so far from `protocol` connections.
    #[inline(always)]
    pub fn received_by(&self, protocol: Protocol) -> u64 {
        self.received.get(protocol.index()).copied().unwrap_or(0)
    }

    /// `n` more bytes written to a `protocol` connection.
    #[inline(always)]
    pub fn sent(&mut self, protocol: Protocol, n: usize) {
        if let Some(total) = self.sent.get_mut(protocol.index()) {
            *total += n as u64;
        }
    }
}
