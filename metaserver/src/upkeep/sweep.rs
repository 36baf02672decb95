//! The orphan sweep: shards on a chunkserver that no stripe records at that server, and that
//! have not been put for `orphan_grace`, are deleted. They come from uploads whose commit
//! never came (a client died between put and commit), from a server that returns after its
//! shards were rebuilt elsewhere, and from GC deletes that found a server down.
//!
//! Order matters: each server's old shards are listed first, the stripe table is read after,
//! so a shard committed before the listing is seen as referenced. A commit after it names a
//! shard put within the upload window, far younger than the grace, and the chunkserver
//! re-checks the age under the id's lock when deleting.

use super::{Ctx, Leadership, referenced_places};
use std::collections::HashSet;
use std::time::Duration;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    DeleteOutcome, DeleteShard, DeleteShardRequest, ListShards, ListShardsRequest, MAX_LIST_PAGE,
};
use tessera_proto::meta::ChunkserverState;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn run(ctx: Ctx) {
    let mut leadership = Leadership::default();
    loop {
        tokio::time::sleep(ctx.cfg.sweep_interval).await;
        if leadership.check(&ctx.replica).is_none() {
            continue;
        }
        match sweep(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(shards = n, "sweep: deleted orphan shards"),
            Err(e) => tracing::warn!("sweep stopped: {e}"),
        }
    }
}

/// One sweep over every live chunkserver; returns the number of shards deleted.
pub(super) async fn sweep(ctx: &Ctx) -> Result<usize, String> {
    let grace = ctx.cfg.orphan_grace.max(ctx.cfg.upload_window);
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let servers: Vec<(u64, String)> = ctx
        .registry
        .list()
        .into_iter()
        .filter(|s| s.state == ChunkserverState::Up)
        .map(|s| (s.id, s.addr))
        .collect();
    let mut candidates: Vec<(u64, String, Vec<ShardId>)> = Vec::new();
    for (id, addr) in servers {
        match old_shards(ctx, &addr, grace_ms).await {
            Ok(old) if !old.is_empty() => candidates.push((id, addr, old)),
            Ok(_) => {}
            Err(e) => tracing::warn!(%addr, "sweep: cannot list shards: {e}"),
        }
    }
    if candidates.is_empty() {
        return Ok(0);
    }
    let named = ctx
        .replica
        .local_read(|store| referenced_places(store, &HashSet::new()))
        .await
        .map_err(|e| e.to_string())?;
    let mut deleted = 0;
    for (server, addr, old) in candidates {
        let peer = ctx.chunks.peer(&addr);
        for id in old.into_iter().filter(|id| !named.contains(&(server, *id))) {
            let req = DeleteShardRequest {
                id,
                min_age_ms: Some(grace_ms),
            };
            match peer
                .call_with::<DeleteShard>(&req, bytes::Bytes::new(), CALL_TIMEOUT)
                .await
            {
                Ok((Ok(DeleteOutcome::Deleted), _)) => deleted += 1,
                Ok((Ok(_), _)) => {}
                Ok((Err(e), _)) => tracing::warn!(%addr, shard = %id, "sweep: delete refused: {e}"),
                Err(e) => {
                    tracing::warn!(%addr, "sweep: delete failed: {e}; next sweep retries");
                    break;
                }
            }
        }
    }
    Ok(deleted)
}

/// Every shard on the server not put for `grace_ms`.
async fn old_shards(ctx: &Ctx, addr: &str, grace_ms: u64) -> Result<Vec<ShardId>, String> {
    let peer = ctx.chunks.peer(addr);
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let req = ListShardsRequest {
            after,
            limit: MAX_LIST_PAGE,
            older_than_ms: Some(grace_ms),
        };
        let page = match peer
            .call_with::<ListShards>(&req, bytes::Bytes::new(), CALL_TIMEOUT)
            .await
        {
            Ok((Ok(page), _)) => page,
            Ok((Err(e), _)) => return Err(e.to_string()),
            Err(e) => return Err(e.to_string()),
        };
        out.extend(page.shards.iter().map(|s| s.id));
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}
