//! Routing deliveries between connections (broadcasts and private
//! messages), and the slow-consumer rule enforced at the push.
//!
//! A core names receivers by connection id; [`ConnIndex`] maps ids to slab
//! keys for the connections that can receive. [`SlabSink`] is the loop's
//! [`Deliver`]: it appends one shared copy of a message to each receiver's
//! output and, when that leaves a receiver's unsent output above
//! `--max-sendq` (counted as memory: bytes plus each message's slot in the
//! queue, see `Output::footprint`), marks it as a slow consumer and takes
//! nothing more for it. The loop then ends each marked connection (see `proto::effects` for the
//! whole routing contract). No receiver is ever waited for.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use slab::Slab;

use crate::proto::Deliver;

use super::conn::Conn;
use super::memory_budget::MemoryBudget;

/// A hasher for connection ids, which are already unique small integers:
/// one multiply spreads them over the table (no SipHash per delivery).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Connection id to slab key, for the connections that receive deliveries.
#[derive(Default)]
pub struct ConnIndex {
    keys: HashMap<u64, usize, BuildHasherDefault<IdHasher>>,
}

impl ConnIndex {
    /// Records that connection `id` lives at slab `key`.
    pub fn insert(&mut self, id: u64, key: usize) {
        self.keys.insert(id, key);
    }

    /// Forgets connection `id`.
    pub fn remove(&mut self, id: u64) {
        self.keys.remove(&id);
    }

    /// The slab key of connection `id`.
    pub fn key(&self, id: u64) -> Option<usize> {
        self.keys.get(&id).copied()
    }
}

/// The loop's delivery sink over its slab of connections.
pub struct SlabSink<'a> {
    /// The connections.
    pub conns: &'a mut Slab<Conn>,
    /// Id to key.
    pub index: &'a ConnIndex,
    /// `--max-sendq`.
    pub max_sendq: usize,
    /// Receivers to flush at the end of the wake-up.
    pub flush_list: &'a mut Vec<usize>,
    /// Receivers that just became slow consumers.
    pub slow: &'a mut Vec<usize>,
    /// Deliveries queued (`onepoll_chat_deliveries_total`).
    pub delivered: u64,
    /// The memory budget: each delivery is counted as it is queued.
    pub memory: &'a mut MemoryBudget,
}

impl Deliver for SlabSink<'_> {
    fn deliver(&mut self, to: u64, msg: &Rc<[u8]>) {
        self.push(to, msg, false);
    }

    fn deliver_private(&mut self, to: u64, msg: &Rc<[u8]>) {
        self.push(to, msg, true);
    }
}

impl SlabSink<'_> {
    /// Queues `msg` on `to`: shared, or copied if `private`.
    #[inline(always)]
    fn push(&mut self, to: u64, msg: &Rc<[u8]>, private: bool) {
        let Some(key) = self.index.key(to) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.deliver(msg, private) {
            return;
        }
        self.delivered += 1;
        self.memory.recount(conn);
        conn.marks_mut().enlist_flush(key, self.flush_list);
        conn.check_sendq(key, self.max_sendq, self.slow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_maps_ids_to_keys() {
        let mut index = ConnIndex::default();
        index.insert(7, 3);
        index.insert(8, 4);
        assert_eq!(index.key(7), Some(3));
        index.remove(7);
        assert_eq!(index.key(7), None);
        assert_eq!(index.key(8), Some(4));
    }
}
