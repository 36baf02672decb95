//! Stripe health: every live stripe's shards checked against the leader's chunkserver table.

use crate::chunk_registry::ChunkRegistry;
use crate::store::RedbStore;
use std::collections::HashSet;
use tessera_namespace::{NamespaceError, live_stripes};
use tessera_proto::meta::{ChunkserverState, StripeHealth};

/// Stripes read per page of the scan.
const PAGE: usize = 4096;

/// Counts healthy, degraded and lost stripes. A shard is unavailable when its server is down
/// or unknown to this leader; a suspect server still counts as holding its shards.
pub fn stripe_health(
    store: &RedbStore,
    registry: &ChunkRegistry,
) -> Result<StripeHealth, NamespaceError> {
    let available: HashSet<u64> = registry
        .list()
        .into_iter()
        .filter(|s| s.state != ChunkserverState::Down)
        .map(|s| s.id)
        .collect();
    let view = store.read_view()?;
    let mut health = StripeHealth::default();
    let mut after = None;
    loop {
        let page = live_stripes(&view, after.as_ref(), PAGE)?;
        for (_, layout) in &page.stripes {
            let missing = layout
                .shards
                .iter()
                .filter(|p| !available.contains(&p.server))
                .count();
            match missing {
                0 => health.healthy += 1,
                n if n <= usize::from(layout.m) => health.degraded += 1,
                _ => health.lost += 1,
            }
        }
        match page.next {
            Some(id) => after = Some(id),
            None => return Ok(health),
        }
    }
}
