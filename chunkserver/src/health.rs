//! What the next heartbeat must tell the metadata leader: shards found corrupt or missing
//! (by client reads or the scrubber) and whether puts are failing for lack of space.
//!
//! Findings stay pending until a heartbeat that carried them is acknowledged, so a leader
//! that is unreachable for a while still learns of every damaged shard afterwards.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tessera_proto::ShardId;
use tessera_proto::cluster::MAX_REPORTED_SHARDS;

/// Most pending findings of each kind kept in memory. Past it new ones are dropped with a
/// warning: the scrubber finds them again on its next pass.
const MAX_PENDING: usize = 100_000;

/// Shared between the RPC handlers, the scrubber and the heartbeat task.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    corrupt: BTreeSet<ShardId>,
    missing: BTreeSet<ShardId>,
    /// A put failed for lack of space, and nothing has been freed or stored since.
    out_of_space: bool,
    dropped: u64,
}

/// Findings to send in one heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub corrupt: Vec<ShardId>,
    pub missing: Vec<ShardId>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a single insert or flag write: still consistent after a panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A shard failed verification and was quarantined.
    pub fn corrupt(&self, id: ShardId) {
        let mut h = self.lock();
        if h.corrupt.len() < MAX_PENDING {
            h.corrupt.insert(id);
        } else {
            h.note_dropped();
        }
    }

    /// A listed shard was gone when read.
    pub fn missing(&self, id: ShardId) {
        let mut h = self.lock();
        if h.missing.len() < MAX_PENDING {
            h.missing.insert(id);
        } else {
            h.note_dropped();
        }
    }

    /// Records whether the last put that could have failed for space did.
    pub fn set_out_of_space(&self, full: bool) {
        self.lock().out_of_space = full;
    }

    pub fn out_of_space(&self) -> bool {
        self.lock().out_of_space
    }

    /// Up to [`MAX_REPORTED_SHARDS`] pending findings of each kind, still pending until
    /// [`Health::acknowledged`] is called with them.
    pub fn pending(&self) -> Findings {
        let h = self.lock();
        Findings {
            corrupt: h
                .corrupt
                .iter()
                .take(MAX_REPORTED_SHARDS)
                .copied()
                .collect(),
            missing: h
                .missing
                .iter()
                .take(MAX_REPORTED_SHARDS)
                .copied()
                .collect(),
        }
    }

    /// The leader has these findings: stop reporting them.
    pub fn acknowledged(&self, sent: &Findings) {
        let mut h = self.lock();
        for id in &sent.corrupt {
            h.corrupt.remove(id);
        }
        for id in &sent.missing {
            h.missing.remove(id);
        }
    }
}

impl Inner {
    fn note_dropped(&mut self) {
        self.dropped += 1;
        if self.dropped == 1 || self.dropped.is_power_of_two() {
            tracing::warn!(
                dropped = self.dropped,
                "too many unreported damaged shards; the scrubber will report the rest again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_stay_until_acknowledged() {
        let h = Health::new();
        let (a, b) = (ShardId::of(b"a"), ShardId::of(b"b"));
        h.corrupt(a);
        h.missing(b);
        let sent = h.pending();
        assert_eq!(sent.corrupt, vec![a]);
        assert_eq!(sent.missing, vec![b]);
        // A heartbeat that failed: the same findings go again.
        assert_eq!(h.pending(), sent);
        let c = ShardId::of(b"c");
        h.corrupt(c);
        h.acknowledged(&sent);
        assert_eq!(h.pending().corrupt, vec![c]);
        assert!(h.pending().missing.is_empty());
    }

    #[test]
    fn one_heartbeat_carries_a_bounded_number() {
        let h = Health::new();
        for i in 0..(MAX_REPORTED_SHARDS as u32 + 10) {
            h.corrupt(ShardId::of(&i.to_le_bytes()));
        }
        let sent = h.pending();
        assert_eq!(sent.corrupt.len(), MAX_REPORTED_SHARDS);
        h.acknowledged(&sent);
        assert_eq!(h.pending().corrupt.len(), 10);
    }
}
