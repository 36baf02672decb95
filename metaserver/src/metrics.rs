//! The metaserver's `/metrics`: RPC traffic, Raft position and leadership, and (on the
//! leader) the chunkserver table and stripe health.

use crate::chunk_registry::ChunkRegistry;
use crate::raft::Role;
use crate::replica::Replica;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_metrics::{Counter, Kind, MetricsServer, Registry};
use tessera_proto::meta::{ChunkserverState, StripeHealth};
use tessera_rpc::ServerHandle;

/// A stripe health scan older than this is redone on the next scrape.
const HEALTH_MAX_AGE: Duration = Duration::from_secs(10);
/// Longest a scrape waits for a stripe health scan; a slower scan keeps running and its
/// result serves the next scrape.
const HEALTH_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct HealthCache {
    last: Mutex<Option<(Instant, StripeHealth)>>,
    running: std::sync::atomic::AtomicBool,
    scans: Counter,
    scan_nanos: AtomicU64,
}

/// Starts the endpoint on `addr`; it stops when the returned server is dropped.
pub async fn start(
    addr: &str,
    server: &ServerHandle,
    replica: Replica,
    registry: Arc<ChunkRegistry>,
) -> std::io::Result<MetricsServer> {
    let metrics = Registry::new("meta");
    let stats = server.stats_shared();
    metrics.register(move |e| stats.render(e));
    metrics.register(|e| tessera_rpc::client_metrics().render(e, "client"));

    let leader_changes = Arc::new(Counter::new());
    tokio::spawn(count_leader_changes(
        replica.clone(),
        leader_changes.clone(),
    ));
    let r = replica.clone();
    metrics.register(move |e| render_raft(e, &r, &leader_changes));
    metrics.register(crate::raft::timings::render);

    let cache = Arc::new(HealthCache::default());
    let (c, r, chunks) = (cache.clone(), replica.clone(), registry.clone());
    metrics.on_scrape(move || refresh_health(c.clone(), r.clone(), chunks.clone()));
    metrics.register(move |e| render_cluster(e, &replica, &registry, &cache));

    tessera_metrics::serve(addr, metrics).await
}

async fn count_leader_changes(replica: Replica, changes: Arc<Counter>) {
    let mut last = None;
    replica
        .raft()
        .follow_leader(|leader| {
            if leader.is_some() && leader != last {
                changes.inc();
            }
            last = leader;
        })
        .await;
}

fn render_raft(e: &mut tessera_metrics::Encoder, replica: &Replica, leader_changes: &Counter) {
    let m = replica.status();
    e.gauge(
        "tessera_raft_term",
        "Current Raft term of this member.",
        m.term,
    );
    e.gauge(
        "tessera_raft_last_log_index",
        "Index of the last entry in this member's Raft log (0 when empty).",
        m.last_log_index.unwrap_or(0),
    );
    e.gauge(
        "tessera_raft_commit_index",
        "Index of the last log entry this member knows to be committed.",
        m.committed_index.unwrap_or(0),
    );
    e.gauge(
        "tessera_raft_applied_index",
        "Index of the last log entry applied to this member's namespace.",
        m.applied_index.unwrap_or(0),
    );
    e.gauge(
        "tessera_raft_snapshot_index",
        "Index of the last log entry included in this member's latest snapshot.",
        m.snapshot_index.unwrap_or(0),
    );
    e.gauge(
        "tessera_raft_leader_id",
        "Node id of the leader this member knows of (0: none known).",
        m.leader_id.unwrap_or(0),
    );
    e.gauge(
        "tessera_raft_is_leader",
        "1 if this member is the leader.",
        m.role == Role::Leader,
    );
    e.family(
        "tessera_raft_state",
        Kind::Gauge,
        "Raft role of this member: 1 for the current one, 0 for the others.",
    );
    for role in Role::ALL {
        e.sample(
            "tessera_raft_state",
            &[("state", role.name())],
            m.role == role,
        );
    }
    e.gauge(
        "tessera_raft_members",
        "Voters and learners in this member's view of the group.",
        m.members.len(),
    );
    e.counter(
        "tessera_raft_leader_changes_total",
        "Times this member saw a new leader (the first election counts).",
        leader_changes.get(),
    );
}

/// Rescans stripe health if this member leads and the last scan is stale.
async fn refresh_health(cache: Arc<HealthCache>, replica: Replica, registry: Arc<ChunkRegistry>) {
    if !replica.is_leader() {
        *lock(&cache.last) = None;
        return;
    }
    let fresh = lock(&cache.last)
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < HEALTH_MAX_AGE);
    if fresh || cache.running.swap(true, Ordering::AcqRel) {
        return;
    }
    let c = cache.clone();
    let scan = replica.local_read(move |store| {
        let started = Instant::now();
        let r = crate::health::stripe_health(store, &registry);
        c.scans.inc();
        c.scan_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match r {
            Ok(h) => *lock(&c.last) = Some((Instant::now(), h)),
            Err(e) => tracing::warn!("metrics: stripe health scan failed: {e}"),
        }
        c.running.store(false, Ordering::Release);
        Ok(())
    });
    let _ = tokio::time::timeout(HEALTH_WAIT, scan).await;
}

fn render_cluster(
    e: &mut tessera_metrics::Encoder,
    replica: &Replica,
    registry: &ChunkRegistry,
    cache: &HealthCache,
) {
    let leader = replica.is_leader();
    e.family(
        "tessera_stripes",
        Kind::Gauge,
        "Live stripes by health (leader only; rescanned at most every 10 s): healthy, \
         degraded (1 to m shards unavailable) or lost (more than m).",
    );
    if let Some((_, h)) = lock(&cache.last).as_ref().filter(|_| leader) {
        e.sample("tessera_stripes", &[("health", "healthy")], h.healthy);
        e.sample("tessera_stripes", &[("health", "degraded")], h.degraded);
        e.sample("tessera_stripes", &[("health", "lost")], h.lost);
    }
    e.counter(
        "tessera_stripe_health_scans_total",
        "Stripe health scans run for scrapes.",
        cache.scans.get(),
    );
    e.counter(
        "tessera_stripe_health_scan_seconds_total",
        "Time spent in stripe health scans, in seconds.",
        cache.scan_nanos.load(Ordering::Relaxed) as f64 / 1e9,
    );

    let servers = if leader { registry.list() } else { Vec::new() };
    e.family(
        "tessera_chunkservers",
        Kind::Gauge,
        "Chunkservers in the leader's table by state (leader only).",
    );
    if leader {
        for (state, name) in [
            (ChunkserverState::Up, "up"),
            (ChunkserverState::Suspect, "suspect"),
            (ChunkserverState::Down, "down"),
            (ChunkserverState::Unreachable, "unreachable"),
        ] {
            let n = servers.iter().filter(|s| s.state == state).count();
            e.sample("tessera_chunkservers", &[("state", name)], n);
        }
    }
    let live = servers.iter().filter(|s| s.state != ChunkserverState::Down);
    let (capacity, used) = live.fold((0u64, 0u64), |(c, u), s| (c + s.capacity, u + s.used));
    e.family(
        "tessera_cluster_capacity_bytes",
        Kind::Gauge,
        "Sum of the capacity reported by chunkservers that are not down (leader only).",
    );
    if leader {
        e.sample("tessera_cluster_capacity_bytes", &[], capacity);
    }
    e.family(
        "tessera_cluster_used_bytes",
        Kind::Gauge,
        "Sum of the shard bytes reported by chunkservers that are not down (leader only).",
    );
    if leader {
        e.sample("tessera_cluster_used_bytes", &[], used);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
