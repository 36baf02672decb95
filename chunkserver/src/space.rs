//! The space a chunkserver reports to the metadata leader, which places shards by free space.

use std::path::Path;

use crate::health::Health;
use crate::store::Usage;

/// Below this much free space the server reports itself full: no useful shard fits in less.
pub const FULL_MARGIN: u64 = 1 << 20;

/// Space figures for a registration or heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes the server may fill with shards: the configured capacity, but never more than
    /// what the disk can still hold on top of what is stored.
    pub capacity: u64,
    pub used: u64,
    pub shards: u64,
    /// Puts are failing (or would) for lack of space.
    pub full: bool,
}

/// Measures the space of the store in `dir`. Blocking (one `statvfs`).
pub fn measure(dir: &Path, usage: Usage, health: &Health) -> Space {
    let on_disk = match rustix::fs::statvfs(dir) {
        Ok(st) => Some(
            usage
                .used_bytes
                .saturating_add(st.f_bavail.saturating_mul(st.f_frsize)),
        ),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read free disk space");
            None
        }
    };
    let capacity = match (usage.capacity, on_disk) {
        (Some(c), Some(d)) => c.min(d),
        (Some(c), None) => c,
        (None, Some(d)) => d,
        // Unknown: report what is used, so the leader sees no free space rather than a guess.
        (None, None) => usage.used_bytes,
    };
    Space {
        capacity,
        used: usage.used_bytes,
        shards: usage.shards,
        full: health.out_of_space() || capacity.saturating_sub(usage.used_bytes) < FULL_MARGIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_capped_by_the_disk() {
        let dir = std::env::temp_dir();
        let health = Health::new();
        let usage = |capacity| Usage {
            shards: 3,
            used_bytes: 100,
            capacity,
        };
        let unlimited = measure(&dir, usage(None), &health);
        assert!(unlimited.capacity > 100);
        let small = measure(&dir, usage(Some(1 << 30)), &health);
        assert_eq!(small.capacity, (1 << 30u64).min(unlimited.capacity));
        assert_eq!((small.used, small.shards), (100, 3));
        let tight = measure(&dir, usage(Some(150)), &health);
        assert!(tight.full);
        health.set_out_of_space(true);
        assert!(measure(&dir, usage(None), &health).full);
    }
}
