//! Garbage collection: a stripe whose last reference went away waits `gc_grace` in the GC
//! queue (a commit of the same content revives it), then is claimed (`GcClaim`: from then on
//! a commit naming it gets `EAGAIN` and retries), its shards are deleted, and its row is
//! dropped (`GcDone`). A claim left by a previous leader is simply finished.
//!
//! Two guards keep referenced bytes safe. A shard is deleted only from a server where no
//! other stripe records the same shard (identical content can appear in two stripes). And a
//! shard put within `upload_window` is kept (the chunkserver checks its age under the id's
//! lock): a client that just stored the same content, about to commit it, keeps its shard.

use super::{Ctx, Leadership, referenced_places};
use crate::replica::clock;
use std::collections::HashSet;
use std::time::Duration;
use tessera_proto::chunk::{DeleteOutcome, DeleteShard, DeleteShardRequest};
use tessera_proto::fs::{FsError, StripeId};
use tessera_proto::meta::{GcItem, Op, Query, Response};

/// Stripes one round handles.
const ROUND: u32 = 512;
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(ctx: Ctx) {
    let mut leadership = Leadership::default();
    loop {
        tokio::time::sleep(ctx.cfg.gc_interval).await;
        let Some(leading_for) = leadership.check(&ctx.replica) else {
            continue;
        };
        if let Err(e) = round(&ctx, leading_for).await {
            tracing::warn!("gc round stopped: {e}");
        }
    }
}

async fn round(ctx: &Ctx, leading_for: Duration) -> Result<(), String> {
    let items = match ctx.replica.read(Query::GcQueue { limit: ROUND }).await {
        Ok(Ok(Response::Gc(items))) => items,
        other => return Err(format!("cannot read the GC queue: {other:?}")),
    };
    let now = clock::now_ns();
    let grace = i64::try_from(ctx.cfg.gc_grace.as_nanos()).unwrap_or(i64::MAX);
    let mut claimed: Vec<GcItem> = Vec::new();
    for item in items {
        if item.claimed {
            claimed.push(item);
            continue;
        }
        if now.saturating_sub(item.queued_at) < grace {
            // The queue is oldest first: nothing after this is due either.
            break;
        }
        match ctx
            .propose(Op::GcClaim {
                stripe: item.stripe.id,
            })
            .await
        {
            Ok(_) => claimed.push(item),
            // Referenced again (a dedup hit) or already gone.
            Err(Some(FsError::Busy | FsError::NotFound)) => {}
            Err(e) => return Err(format!("claim failed: {e:?}")),
        }
    }
    if claimed.is_empty() {
        return Ok(());
    }
    let skip: HashSet<StripeId> = claimed.iter().map(|i| i.stripe.id).collect();
    let still_named = ctx
        .replica
        .local_read(move |store| referenced_places(store, &skip))
        .await
        .map_err(|e| e.to_string())?;
    let servers = ctx.servers(leading_for);
    let min_age_ms = u64::try_from(ctx.cfg.upload_window.as_millis()).unwrap_or(u64::MAX);
    let mut freed = 0usize;
    for item in claimed {
        let mut complete = true;
        for place in &item.stripe.layout.shards {
            if still_named.contains(&(place.server, place.shard)) {
                continue;
            }
            let Some(addr) = servers.addr(place.server) else {
                // A lost server: its copy, if it ever returns, is left to the sweep.
                continue;
            };
            let req = DeleteShardRequest {
                id: place.shard,
                min_age_ms: Some(min_age_ms),
            };
            let reply = ctx
                .chunks
                .peer(&addr)
                .call_with::<DeleteShard>(&req, bytes::Bytes::new(), DELETE_TIMEOUT)
                .await;
            match reply {
                Ok((Ok(DeleteOutcome::Deleted | DeleteOutcome::NotPresent), _)) => {}
                // Put again just now: a client is about to commit it; keep it. If that
                // commit never comes, the sweep deletes it later.
                Ok((Ok(DeleteOutcome::Young), _)) => {}
                Ok((Err(e), _)) => {
                    tracing::warn!(shard = %place.shard, %addr, "gc: delete refused: {e}");
                    complete = false;
                }
                Err(e) => {
                    tracing::warn!(shard = %place.shard, %addr, "gc: delete failed: {e}");
                    complete = false;
                }
            }
        }
        if !complete {
            // Retried next round; the claim stays, so no commit can reuse it meanwhile.
            continue;
        }
        match ctx
            .propose(Op::GcDone {
                stripe: item.stripe.id,
            })
            .await
        {
            Ok(_) | Err(Some(FsError::NotFound)) => freed += 1,
            Err(e) => return Err(format!("gc-done failed: {e:?}")),
        }
    }
    if freed > 0 {
        tracing::info!(stripes = freed, "gc: deleted unreferenced stripes");
    }
    Ok(())
}
