//! Rebalance: when some chunkservers hold a larger fraction of their capacity than others
//! (new servers joined empty, or placement drifted), move shards from the fullest to the
//! emptiest until every server's used fraction is within the band of the mean.
//!
//! A move never lowers a stripe's redundancy: the new server copies the shard from the old
//! one and checks it against its id (`RebuildShard` naming the holder among its sources),
//! the new place is committed (`MoveShard`, applied only if the shard is still recorded on
//! the old server), and only then is the old copy deleted, under the same guards as GC (not
//! while another stripe records the same shard there, not if it was put again within the
//! upload window). A leader that dies between the commit and the delete leaves the old copy
//! unreferenced: the orphan sweep deletes it (it is older than the grace). A mover that dies
//! before the commit leaves a young, unreferenced copy: the sweep deletes that too, later.
//! Like every upkeep task, rounds re-derive their work from the stripe table, so a new
//! leader carries on.
//!
//! Moves are paced to `--rebalance-rate-mb` over the whole cluster, and a round waits while
//! repair has work (a stripe missing a shard comes first).

mod plan;

use super::repair::{commit_move, rebuild_on};
use super::{Ctx, Leadership, referenced_places};
use plan::{Load, Move};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tessera_proto::chunk::{DeleteOutcome, DeleteShard, DeleteShardRequest};
use tessera_proto::meta::{ChunkserverInfo, ChunkserverState, RebalanceStatus};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Moves in flight at once.
const PARALLEL: usize = 4;
/// Stripes one round looks at; the next round looks again.
const ROUND_STRIPES: usize = 65_536;
/// A round plans at most this many seconds of moves at the set rate.
const ROUND_SECONDS: u64 = 30;
const DELETE_TIMEOUT: Duration = Duration::from_secs(10);
/// A new leader's chunkserver table fills as the servers' heartbeats find it; until then
/// the servers' use is not known and the cluster could look balanced (or not) wrongly.
const SETTLE: Duration = Duration::from_secs(5);

/// How the leader rebalances.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceConfig {
    /// Start rounds by itself when a server leaves the band (else only on request).
    pub auto: bool,
    /// Servers within this distance of the mean used fraction are balanced (0.05: five
    /// percentage points of capacity).
    pub band: f64,
    /// Bytes per second moved at most, cluster-wide.
    pub rate: u64,
    /// Pause between automatic checks.
    pub interval: Duration,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        Self {
            auto: true,
            band: 0.05,
            rate: 64_000_000,
            interval: Duration::from_secs(30),
        }
    }
}

/// What the service and the task share: the request flag and the progress counters.
#[derive(Debug)]
pub struct Rebalancer {
    cfg: RebalanceConfig,
    requested: AtomicBool,
    wake: Notify,
    running: AtomicBool,
    /// This member has led long enough to know every server's use (see [`SETTLE`]).
    settled: AtomicBool,
    planned_bytes: AtomicU64,
    moved_bytes: AtomicU64,
    moved_shards: AtomicU64,
    failed_moves: AtomicU64,
}

impl Rebalancer {
    pub fn new(cfg: RebalanceConfig) -> Arc<Rebalancer> {
        Arc::new(Rebalancer {
            cfg,
            requested: AtomicBool::new(false),
            wake: Notify::new(),
            running: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            planned_bytes: AtomicU64::new(0),
            moved_bytes: AtomicU64::new(0),
            moved_shards: AtomicU64::new(0),
            failed_moves: AtomicU64::new(0),
        })
    }

    /// Asks for a round now (`tessera rebalance`).
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Where rebalancing stands against the given chunkserver table.
    pub fn status(&self, servers: &[ChunkserverInfo]) -> RebalanceStatus {
        let (_, spread) = plan::spread(&loads(servers));
        // A leader that has not heard from every server yet knows nothing for sure: it
        // answers "starting", never "balanced".
        let settled = self.settled.load(Ordering::SeqCst);
        let running = self.running.load(Ordering::SeqCst)
            || self.requested.load(Ordering::SeqCst)
            || !settled;
        RebalanceStatus {
            auto: self.cfg.auto,
            running,
            balanced: settled && spread <= self.cfg.band,
            band: self.cfg.band,
            spread,
            planned_bytes: self.planned_bytes.load(Ordering::Relaxed),
            moved_bytes: self.moved_bytes.load(Ordering::Relaxed),
            moved_shards: self.moved_shards.load(Ordering::Relaxed),
            failed_moves: self.failed_moves.load(Ordering::Relaxed),
        }
    }
}

/// The servers that take part: up (reachable) and not being drained.
fn loads(servers: &[ChunkserverInfo]) -> Vec<Load> {
    servers
        .iter()
        .filter(|s| s.state == ChunkserverState::Up && !s.draining && s.capacity > 0)
        .map(|s| Load {
            id: s.id,
            capacity: s.capacity,
            used: s.used,
            writable: !s.full,
        })
        .collect()
}

pub(super) async fn run(ctx: Ctx, state: Arc<Rebalancer>) {
    let mut leadership = Leadership::default();
    let mut last_auto = Instant::now();
    // A round moved shards: the next one follows (after heartbeats show the new use).
    let mut more = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = state.wake.notified() => {}
        }
        let Some(leading_for) = leadership.check(&ctx.replica) else {
            state.settled.store(false, Ordering::SeqCst);
            more = false;
            continue;
        };
        let settled = leading_for >= SETTLE;
        state.settled.store(settled, Ordering::SeqCst);
        if !settled {
            continue;
        }
        let due = state.cfg.auto && last_auto.elapsed() >= state.cfg.interval;
        if !(more || due || state.requested.load(Ordering::SeqCst)) {
            continue;
        }
        if due {
            last_auto = Instant::now();
        }
        let moved = match round(&ctx, &state, leading_for).await {
            Ok(moved) => moved,
            Err(e) => {
                tracing::warn!("rebalance round stopped: {e}");
                0
            }
        };
        state.running.store(false, Ordering::SeqCst);
        more = moved > 0;
        if more {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

/// One round: plan against the current table, move, delete the old copies. Returns the
/// number of shards moved. Leaves `requested` set while repair has work or the cluster is
/// not balanced yet, clears it once balanced.
async fn round(ctx: &Ctx, state: &Rebalancer, leading_for: Duration) -> Result<usize, String> {
    let servers = ctx.servers(leading_for);
    let table: Vec<ChunkserverInfo> = servers.by_id.values().cloned().collect();
    let loads = loads(&table);
    let (mean, spread) = plan::spread(&loads);
    if spread <= state.cfg.band {
        state.requested.store(false, Ordering::SeqCst);
        return Ok(0);
    }
    if ctx.repair_pending() {
        tracing::debug!("rebalance waits for repair");
        return Ok(0);
    }
    state.running.store(true, Ordering::SeqCst);
    let stripes = ctx
        .replica
        .local_read(|store| {
            let view = store.read_view()?;
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = tessera_namespace::live_stripes(&view, after.as_ref(), 4096)?;
                out.extend(
                    page.stripes
                        .into_iter()
                        .map(|(id, layout)| tessera_proto::fs::StripeInfo { id, layout }),
                );
                match page.next {
                    Some(next) if out.len() < ROUND_STRIPES => after = Some(next),
                    _ => return Ok(out),
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let budget = state.cfg.rate.saturating_mul(ROUND_SECONDS);
    let moves = plan::plan(&loads, &stripes, state.cfg.band, budget);
    if moves.is_empty() {
        tracing::info!(
            spread = format!("{:.1}%", spread * 100.0),
            "rebalance: out of band but no shard can move (every candidate stripe already has a shard on each emptier server)"
        );
        state.requested.store(false, Ordering::SeqCst);
        return Ok(0);
    }
    let planned: u64 = moves.iter().map(|m| m.bytes).sum();
    state.planned_bytes.store(planned, Ordering::Relaxed);
    state.moved_bytes.store(0, Ordering::Relaxed);
    tracing::info!(
        moves = moves.len(),
        bytes = planned,
        mean = format!("{:.1}%", mean * 100.0),
        spread = format!("{:.1}%", spread * 100.0),
        "rebalance round"
    );
    let servers = Arc::new(servers);
    let started = Instant::now();
    let mut done: Vec<Move> = Vec::new();
    let mut running = JoinSet::new();
    let mut queue = moves.into_iter();
    let mut sent = 0u64;
    loop {
        while running.len() < PARALLEL {
            let Some(m) = queue.next() else { break };
            // Pace: the bytes started so far may not run ahead of the rate.
            sent += m.bytes;
            let due = Duration::from_secs_f64(sent as f64 / state.cfg.rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            running.spawn(move_shard(ctx.clone(), servers.clone(), m));
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok((m, true)) => {
                state.moved_shards.fetch_add(1, Ordering::Relaxed);
                state.moved_bytes.fetch_add(m.bytes, Ordering::Relaxed);
                done.push(m);
            }
            Ok((_, false)) | Err(_) => {
                state.failed_moves.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !ctx.replica.is_leader() {
            running.abort_all();
            break;
        }
    }
    let moved = done.len();
    delete_old_copies(ctx, &servers, done).await?;
    tracing::info!(moved, "rebalance round done");
    Ok(moved)
}

/// Copies one shard to its new server and commits the new place. `true` once committed.
async fn move_shard(ctx: Ctx, servers: Arc<super::Servers>, m: Move) -> (Move, bool) {
    let (Some(from_addr), Some(to_addr)) = (servers.addr(m.from), servers.addr(m.to)) else {
        return (m, false);
    };
    // The holder among the sources makes the new server copy instead of decode; the other
    // shards' servers are there for the fallback.
    let mut sources: Vec<(u64, String)> = vec![(m.from, from_addr)];
    sources.extend(
        m.stripe
            .layout
            .shards
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != m.index)
            .filter_map(|(_, p)| servers.addr(p.server).map(|a| (p.server, a))),
    );
    let ok = rebuild_on(&ctx, &to_addr, &m.stripe, m.index, sources).await
        && commit_move(&ctx, &m.stripe, m.index, m.from, m.to, "rebalance").await;
    (m, ok)
}

/// Deletes the moved shards' old copies, unless another stripe records the same shard on
/// the same server (checked against a fresh read of the stripe table) or the server got a
/// put of it within the upload window.
async fn delete_old_copies(
    ctx: &Ctx,
    servers: &super::Servers,
    done: Vec<Move>,
) -> Result<(), String> {
    if done.is_empty() {
        return Ok(());
    }
    let named = ctx
        .replica
        .local_read(|store| referenced_places(store, &HashSet::new()))
        .await
        .map_err(|e| e.to_string())?;
    let min_age_ms = u64::try_from(ctx.cfg.upload_window.as_millis()).unwrap_or(u64::MAX);
    for m in done {
        let shard = m.stripe.layout.shards[m.index].shard;
        if named.contains(&(m.from, shard)) {
            continue;
        }
        let Some(addr) = servers.addr(m.from) else {
            continue; // gone meanwhile: the sweep deletes it if it returns
        };
        let req = DeleteShardRequest {
            id: shard,
            min_age_ms: Some(min_age_ms),
        };
        match ctx
            .chunks
            .peer(&addr)
            .call_with::<DeleteShard>(&req, bytes::Bytes::new(), DELETE_TIMEOUT)
            .await
        {
            Ok((
                Ok(DeleteOutcome::Deleted | DeleteOutcome::NotPresent | DeleteOutcome::Young),
                _,
            )) => {}
            Ok((Err(e), _)) => {
                tracing::warn!(%shard, %addr, "rebalance: delete refused: {e}; the sweep retries")
            }
            Err(e) => {
                tracing::warn!(%shard, %addr, "rebalance: delete failed: {e}; the sweep retries")
            }
        }
    }
    Ok(())
}
