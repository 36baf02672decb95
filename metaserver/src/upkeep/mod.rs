//! Background work the metadata leader does on the chunkservers' behalf: repair lost and
//! damaged shards, delete the shards of unreferenced stripes (GC), sweep shards that no
//! stripe names (uploads whose commit never came, stale copies on a returning server), and
//! rebalance shards between fuller and emptier servers.
//!
//! Each task loops on every metaserver and acts only while its node leads. It keeps no
//! durable state of its own: every round re-derives its work from the replicated stripe
//! table and the leader's chunkserver table, so a new leader simply carries on. Every change
//! to the namespace is an ordinary replicated command (`MoveShard`, `GcClaim`, `GcDone`).

mod gc;
mod rebalance;
mod repair;
mod sweep;

use crate::chunk_registry::ChunkRegistry;
use crate::replica::Replica;
use crate::store::RedbStore;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_proto::ShardId;
use tessera_proto::fs::FsError;
use tessera_proto::meta::{ChunkserverInfo, ChunkserverState, Op, Response};
use tessera_stripe::{ChunkClient, ChunkClientConfig};
use tokio::task::JoinHandle;

pub use rebalance::{RebalanceConfig, Rebalancer};
pub use repair::RepairProgress;

/// Timing and rate settings of the leader's background work.
#[derive(Debug, Clone)]
pub struct UpkeepConfig {
    /// Pause between repair rounds.
    pub repair_interval: Duration,
    /// Shard rebuilds in flight at once, cluster-wide.
    pub repair_parallel: usize,
    /// How long an unreferenced stripe waits before its shards are deleted. A commit of the
    /// same content within the grace revives it for free.
    pub gc_grace: Duration,
    /// Pause between GC rounds.
    pub gc_interval: Duration,
    /// The longest a client may take from putting a stripe's shards to committing it. GC
    /// and the sweep never delete a shard put more recently than this, so a dedup hit or an
    /// upload racing a delete keeps its shards.
    pub upload_window: Duration,
    /// A shard no stripe names is deleted once it is this old.
    pub orphan_grace: Duration,
    /// Pause between sweeps.
    pub sweep_interval: Duration,
    /// After becoming leader, a chunkserver that has not registered yet is not considered
    /// lost until this long has passed (it re-registers within one heartbeat if alive).
    pub dead_after: Duration,
    /// When and how fast shards move between fuller and emptier servers.
    pub rebalance: RebalanceConfig,
}

impl Default for UpkeepConfig {
    fn default() -> Self {
        Self {
            repair_interval: Duration::from_secs(2),
            repair_parallel: 4,
            gc_grace: Duration::from_secs(60),
            gc_interval: Duration::from_secs(2),
            upload_window: Duration::from_secs(120),
            orphan_grace: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(600),
            dead_after: Duration::from_secs(60),
            rebalance: RebalanceConfig::default(),
        }
    }
}

/// What the background tasks share.
#[derive(Clone)]
struct Ctx {
    replica: Replica,
    registry: Arc<ChunkRegistry>,
    chunks: Arc<ChunkClient>,
    cfg: UpkeepConfig,
    repair: Arc<RepairProgress>,
}

/// The running tasks; dropping this does not stop them, [`Upkeep::abort`] does.
#[derive(Debug)]
pub struct Upkeep {
    tasks: Vec<JoinHandle<()>>,
    /// Repair counters, for status and metrics.
    pub repair: Arc<RepairProgress>,
}

impl Upkeep {
    /// Starts repair, GC, sweep and rebalance on this metaserver (each acts only while it
    /// leads); `rebalancer` is shared with the service, which starts rounds on request.
    pub fn start(
        replica: Replica,
        registry: Arc<ChunkRegistry>,
        secret: tessera_rpc::Secret,
        rpc: tessera_rpc::RpcConfig,
        cfg: UpkeepConfig,
        rebalancer: Arc<Rebalancer>,
    ) -> Upkeep {
        let chunks = Arc::new(ChunkClient::new(
            secret,
            ChunkClientConfig {
                rpc,
                ..ChunkClientConfig::default()
            },
        ));
        let repair = Arc::new(RepairProgress::default());
        let ctx = Ctx {
            replica,
            registry,
            chunks,
            cfg,
            repair: repair.clone(),
        };
        let tasks = vec![
            tokio::spawn(repair::run(ctx.clone(), repair.clone())),
            tokio::spawn(gc::run(ctx.clone())),
            tokio::spawn(rebalance::run(ctx.clone(), rebalancer)),
            tokio::spawn(sweep::run(ctx)),
        ];
        Upkeep { tasks, repair }
    }

    /// Stops every task.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Ctx {
    /// Proposes a system command and returns its POSIX outcome (`Err(None)`: not applied,
    /// e.g. leadership lost; the next round retries).
    async fn propose(&self, op: Op) -> Result<Response, Option<FsError>> {
        match self.replica.propose_system(op).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Some(e)),
            Err(e) => {
                tracing::debug!("upkeep command not applied: {e}");
                Err(None)
            }
        }
    }

    /// Repair's last round found stripes missing shards.
    fn repair_pending(&self) -> bool {
        self.repair
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }

    /// The chunkserver table as one round sees it.
    fn servers(&self, leading_for: Duration) -> Servers {
        Servers {
            by_id: self
                .registry
                .list()
                .into_iter()
                .map(|s| (s.id, s))
                .collect(),
            unknown_lost: leading_for >= self.cfg.dead_after,
            draining: self.registry.draining(),
        }
    }
}

/// A snapshot of the chunkserver table for one round of work.
struct Servers {
    by_id: HashMap<u64, ChunkserverInfo>,
    /// Whether a server this leader has never heard from counts as lost: only once the
    /// leader has led for longer than the dead-after time.
    unknown_lost: bool,
    /// Servers being drained: their shards move elsewhere, nothing new goes there.
    draining: HashSet<u64>,
}

impl Servers {
    /// The server is gone as far as its shards are concerned.
    fn lost(&self, id: u64) -> bool {
        match self.by_id.get(&id) {
            Some(s) => s.state == ChunkserverState::Down,
            None => self.unknown_lost,
        }
    }

    /// Address of a server that is not lost.
    fn addr(&self, id: u64) -> Option<String> {
        self.by_id
            .get(&id)
            .filter(|s| s.state != ChunkserverState::Down)
            .map(|s| s.addr.clone())
    }

    /// Servers that may receive a new shard: up and not full.
    fn writable(&self) -> impl Iterator<Item = &ChunkserverInfo> {
        self.by_id
            .values()
            .filter(|s| s.state == ChunkserverState::Up && !s.full)
            .filter(|s| !self.draining.contains(&s.id))
    }
}

/// Tracks how long this node has been leader, for [`Servers::unknown_lost`].
#[derive(Default)]
struct Leadership {
    since: Option<Instant>,
}

impl Leadership {
    /// `Some(time leading)` while this node leads.
    fn check(&mut self, replica: &Replica) -> Option<Duration> {
        if replica.is_leader() {
            Some(self.since.get_or_insert_with(Instant::now).elapsed())
        } else {
            self.since = None;
            None
        }
    }
}

/// Every `(server, shard)` pair the stripe table names, live or being deleted, except the
/// stripes in `skip`.
fn referenced_places(
    store: &RedbStore,
    skip: &HashSet<tessera_proto::fs::StripeId>,
) -> Result<HashSet<(u64, ShardId)>, tessera_namespace::NamespaceError> {
    let view = store.read_view()?;
    let mut out = HashSet::new();
    let mut after = None;
    loop {
        let page = tessera_namespace::all_stripes(&view, after.as_ref(), 4096)?;
        for (id, layout) in &page.stripes {
            if !skip.contains(id) {
                out.extend(layout.shards.iter().map(|p| (p.server, p.shard)));
            }
        }
        match page.next {
            Some(id) => after = Some(id),
            None => return Ok(out),
        }
    }
}
