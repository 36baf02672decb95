//! Repair: every round, find each live stripe's unavailable shards (on a lost server, never
//! stored because a degraded write went ahead without them, or reported corrupt or missing
//! by the server that holds them), most endangered stripes first,
//! and have a chunkserver rebuild each one from the other shards. A server being drained is
//! treated like a lost one, so its shards move away. A shard whose server is
//! gone is rebuilt on a live server that holds no other shard of the stripe, then its new
//! place is committed (`MoveShard`); a damaged shard on a live server is rebuilt in place.
//! A shard a server served wrong bytes of (a "bad reply", reported by a mount or by the
//! server rebuilding another shard, which returns them with its answer) moves like a lost
//! server's: rebuilt in place it would stay with the server that lied about it.

use super::{Ctx, Leadership, Servers};
use crate::chunk_registry::ShardReport;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tessera_proto::ShardId;
use tessera_proto::chunk::{RebuildShard, RebuildShardRequest};
use tessera_proto::fs::{FsError, StripeInfo};
use tessera_proto::meta::{DamagedShard, Op};
use tokio::task::JoinSet;

/// Deadline of one rebuild: reading k shards, decoding, and one fsynced put.
const REBUILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Most stripes one round schedules; the next round picks up the rest.
const ROUND_STRIPES: usize = 4096;

/// Repair counters, readable by status and metrics.
#[derive(Debug, Default)]
pub struct RepairProgress {
    /// Stripes with at least one unavailable shard, as of the last round.
    pub pending: AtomicU64,
    /// Shards rebuilt since this process started.
    pub rebuilt: AtomicU64,
    /// Rebuilds that failed (retried in a later round).
    pub failed: AtomicU64,
}

/// One stripe needing repair: the shard indexes to rebuild, and whether each is damaged in
/// place (its server is alive) rather than on a lost server.
struct Job {
    stripe: StripeInfo,
    bad: Vec<(usize, bool)>,
}

pub(super) async fn run(ctx: Ctx, progress: Arc<RepairProgress>) {
    let mut leadership = Leadership::default();
    // Damaged-shard reports not yet repaired, with whether the shard must move (a bad
    // reply); they survive rounds (not leader changes: a new leader learns them again from
    // the next scrub, fsck or read).
    let mut reported: HashMap<(u64, ShardId), bool> = HashMap::new();
    loop {
        tokio::time::sleep(ctx.cfg.repair_interval).await;
        let Some(leading_for) = leadership.check(&ctx.replica) else {
            reported.clear();
            continue;
        };
        for ShardReport {
            server,
            shard,
            bad_reply,
            ..
        } in ctx.registry.take_reports()
        {
            *reported.entry((server, shard)).or_default() |= bad_reply;
        }
        let servers = ctx.servers(leading_for);
        let jobs = match find_jobs(&ctx, &servers, &reported).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!("repair: cannot scan the stripe table: {e}");
                continue;
            }
        };
        progress.pending.store(jobs.len() as u64, Ordering::Relaxed);
        if jobs.is_empty() {
            reported.clear();
            continue;
        }
        tracing::info!(stripes = jobs.len(), "repair round");
        let servers = Arc::new(servers);
        let mut running = JoinSet::new();
        let mut queue = jobs.into_iter();
        loop {
            while running.len() < ctx.cfg.repair_parallel.max(1) {
                let Some(job) = queue.next() else { break };
                running.spawn(repair_stripe(ctx.clone(), servers.clone(), job));
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let Ok(results) = done else { continue };
            for (place, ok) in results {
                if ok {
                    progress.rebuilt.fetch_add(1, Ordering::Relaxed);
                    reported.remove(&place);
                } else {
                    progress.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !ctx.replica.is_leader() {
                running.abort_all();
                break;
            }
        }
    }
}

/// Scans the live stripes for unavailable shards; the most endangered stripes first.
async fn find_jobs(
    ctx: &Ctx,
    servers: &Servers,
    reported: &HashMap<(u64, ShardId), bool>,
) -> Result<Vec<Job>, String> {
    let lost: HashSet<u64> = {
        let mut ids: HashSet<u64> = servers.by_id.keys().copied().collect();
        ids.retain(|id| servers.lost(*id));
        ids
    };
    let unknown_lost = servers.unknown_lost;
    let draining = servers.draining.clone();
    let known: HashSet<u64> = servers.by_id.keys().copied().collect();
    let reported = reported.clone();
    let scan = ctx.replica.local_read(move |store| {
        let view = store.read_view()?;
        let mut jobs = Vec::new();
        let mut after = None;
        loop {
            let page = tessera_namespace::live_stripes(&view, after.as_ref(), 4096)?;
            for (id, layout) in page.stripes {
                let bad: Vec<(usize, bool)> = layout
                    .shards
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        // A draining server's shards move like a lost server's.
                        let gone = !p.is_stored()
                            || lost.contains(&p.server)
                            || draining.contains(&p.server)
                            || (unknown_lost && !known.contains(&p.server));
                        match reported.get(&(p.server, p.shard)) {
                            _ if gone => Some((i, false)),
                            Some(bad_reply) => Some((i, !bad_reply)),
                            None => None,
                        }
                    })
                    .collect();
                if !bad.is_empty() {
                    jobs.push(Job {
                        stripe: StripeInfo { id, layout },
                        bad,
                    });
                }
            }
            match page.next {
                Some(next) if jobs.len() < ROUND_STRIPES => after = Some(next),
                _ => break,
            }
        }
        Ok(jobs)
    });
    let mut jobs = scan.await.map_err(|e| e.to_string())?;
    // Closest to loss first: the more shards a stripe misses, the sooner it is rebuilt.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.bad.len()));
    Ok(jobs)
}

/// Rebuilds every bad shard of one stripe, one at a time (each rebuild may pick a new
/// server, which the next must avoid). Returns `((old server, shard), succeeded)` per shard.
async fn repair_stripe(ctx: Ctx, servers: Arc<Servers>, job: Job) -> Vec<((u64, ShardId), bool)> {
    tracing::info!(stripe = %job.stripe.id, bad = ?job.bad, "repairing a stripe (index, in place)");
    let mut stripe = job.stripe;
    let bad_indexes: HashSet<usize> = job.bad.iter().map(|(i, _)| *i).collect();
    let mut out = Vec::new();
    for (index, in_place) in job.bad {
        let place = stripe.layout.shards[index];
        let key = (place.server, place.shard);
        let target = if in_place {
            servers.addr(place.server).map(|a| (place.server, a))
        } else {
            pick_target(&servers, &stripe)
        };
        let Some((target, target_addr)) = target else {
            tracing::warn!(
                stripe = %stripe.id, index,
                "repair: no live chunkserver without a shard of this stripe; waiting for one"
            );
            out.push((key, false));
            continue;
        };
        // Sources: every other shard on a server that is not lost and not itself bad.
        let sources: Vec<(u64, String)> = stripe
            .layout
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index && !bad_indexes.contains(i))
            .filter_map(|(_, p)| servers.addr(p.server).map(|a| (p.server, a)))
            .collect();
        let ok = rebuild_on(&ctx, &target_addr, &stripe, index, sources).await
            && (in_place
                || commit_move(&ctx, &stripe, index, place.server, target, "repair").await);
        if ok && !in_place {
            stripe.layout.shards[index].server = target;
        }
        out.push((key, ok));
    }
    out
}

/// A writable server holding no shard of the stripe, the one with most free space.
fn pick_target(servers: &Servers, stripe: &StripeInfo) -> Option<(u64, String)> {
    let holding: HashSet<u64> = stripe
        .layout
        .shards
        .iter()
        .filter(|p| p.is_stored())
        .map(|p| p.server)
        .collect();
    servers
        .writable()
        .filter(|s| !holding.contains(&s.id))
        .max_by_key(|s| (s.capacity.saturating_sub(s.used), s.id))
        .map(|s| (s.id, s.addr.clone()))
}

pub(super) async fn rebuild_on(
    ctx: &Ctx,
    addr: &str,
    stripe: &StripeInfo,
    index: usize,
    sources: Vec<(u64, String)>,
) -> bool {
    let client = ctx.chunks.peer(addr);
    let req = RebuildShardRequest {
        stripe: stripe.clone(),
        index: index as u32,
        sources,
    };
    match client
        .call_with::<RebuildShard>(&req, bytes::Bytes::new(), REBUILD_TIMEOUT)
        .await
    {
        Ok((Ok(rebuilt), _)) => {
            if !rebuilt.bad_replies.is_empty() {
                tracing::warn!(stripe = %stripe.id, index, %addr, bad = ?rebuilt.bad_replies,
                    "repair: sources sent bytes that fail verification; moving those shards");
                let moves = rebuilt.bad_replies.into_iter().map(DamagedShard::from);
                ctx.registry.add_reports(moves.collect());
            }
            true
        }
        Ok((Err(e), _)) => {
            tracing::warn!(stripe = %stripe.id, index, %addr, "repair: rebuild failed: {e}");
            false
        }
        Err(e) => {
            tracing::warn!(stripe = %stripe.id, index, %addr, "repair: rebuild call failed: {e}");
            false
        }
    }
}

/// Records shard `index`'s new place; `why` names the task in logs. `true` when recorded,
/// or when the stripe changed meanwhile (nothing left to do).
pub(super) async fn commit_move(
    ctx: &Ctx,
    stripe: &StripeInfo,
    index: usize,
    from: u64,
    to: u64,
    why: &str,
) -> bool {
    let op = Op::MoveShard {
        stripe: stripe.id,
        index: index as u32,
        from,
        to,
    };
    match ctx.propose(op).await {
        Ok(_) => {
            tracing::info!(stripe = %stripe.id, index, from = %format!("{from:#018x}"),
                to = %format!("{to:#018x}"), "{why}: shard moved");
            true
        }
        // Someone else (another round, GC) changed the stripe first: nothing to do.
        Err(Some(FsError::Stale | FsError::NotFound)) => true,
        Err(e) => {
            tracing::warn!(stripe = %stripe.id, index, "{why}: cannot record the new place: {e:?}");
            false
        }
    }
}
