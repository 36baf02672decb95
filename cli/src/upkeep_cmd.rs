//! `tessera repair`, `tessera gc` and `tessera drain`: the leader does repair and garbage
//! collection by itself; these commands show their progress, wait for them, and start a
//! drain (every shard moved off a server before it is decommissioned).

use anyhow::bail;
use clap::Args;
use std::time::{Duration, Instant};
use tessera_client::MetaClient;
use tessera_client::cluster::Retry;
use tessera_proto::meta::{
    ClusterHealth, DrainChunkserver, DrainRequest, Query, Response, StripeHealth,
};

use crate::cluster::{ClusterArgs, runtime};
use crate::progress::Progress;
use crate::units;

/// Flags of `tessera repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Wait until every stripe has all its shards (repair runs by itself after a chunkserver
    /// has been silent for the metaservers' --dead-after-ms), at most this long, in ms.
    /// 0 only reports.
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    wait_ms: u64,
}

/// Flags of `tessera gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Wait until the GC queue is empty (stripes wait the metaservers' --gc-grace-ms first),
    /// at most this long, in ms. 0 only reports.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    wait_ms: u64,
}

/// Flags of `tessera drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The chunkserver: its id (16 hex digits, as `tessera status` shows) or its address.
    #[arg(value_name = "CHUNKSERVER")]
    server: String,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Stop draining (new shards may go to the server again).
    #[arg(long)]
    cancel: bool,
    /// Give up waiting after this long, in ms (the drain itself continues on the leader
    /// until it changes; run the command again to resume it).
    #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
    wait_ms: u64,
}

/// A metadata client that keeps trying for `--timeout-ms` (at least 1 s) across leader
/// changes: progress is polled for minutes, and an election must not end the command.
fn meta_client(args: &ClusterArgs) -> anyhow::Result<MetaClient> {
    args.meta_client(Retry {
        deadline: args.timeout(5_000).max(Duration::from_secs(1)),
        ..Retry::default()
    })
}

pub fn repair(args: RepairArgs) -> anyhow::Result<bool> {
    let meta = args.cluster.admin_client()?;
    let once = Retry::once(args.cluster.timeout(5_000));
    runtime()?.block_on(async {
        let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
        let mut bar = Progress::lines();
        loop {
            let h: StripeHealth = meta
                .cluster()
                .call::<ClusterHealth, _, _>(&(), &once)
                .await?;
            let total = h.healthy + h.degraded + h.lost;
            bar.show(
                &format!(
                    "stripes: {} healthy, {} degraded, {} lost",
                    h.healthy, h.degraded, h.lost
                ),
                Some((h.healthy, total)),
            );
            if h.degraded == 0 && h.lost == 0 {
                bar.finish();
                println!("every stripe has all its shards");
                return Ok(true);
            }
            if Instant::now() >= deadline {
                bar.finish();
                println!("not fully repaired yet (repair continues on the leader)");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

pub fn gc(args: GcArgs) -> anyhow::Result<bool> {
    let meta = meta_client(&args.cluster)?;
    runtime()?.block_on(async {
        let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
        let mut bar = Progress::lines();
        // The queue's length at the start is the bar's whole (it may grow meanwhile).
        let mut first = None;
        loop {
            let items = match meta.read(Query::GcQueue { limit: 1_000_000 }).await {
                Ok(Ok(Response::Gc(items))) => items,
                Ok(other) => bail!("unexpected reply to a GC queue read: {other:?}"),
                Err(e) => bail!("cannot reach the metadata leader: {e}"),
            };
            let claimed = items.iter().filter(|i| i.claimed).count();
            let bytes: u64 = items
                .iter()
                .map(|i| {
                    i.stripe.layout.shard_len
                        * (u64::from(i.stripe.layout.k) + u64::from(i.stripe.layout.m))
                })
                .sum();
            let left = items.len() as u64;
            let whole = *first.get_or_insert(left);
            bar.show(
                &format!(
                    "GC queue: {left} stripes ({claimed} being deleted), {} of shards",
                    units::bytes(bytes)
                ),
                Some((whole.saturating_sub(left), whole.max(left))),
            );
            if items.is_empty() {
                bar.finish();
                return Ok(true);
            }
            if Instant::now() >= deadline {
                bar.finish();
                return Ok(args.wait_ms == 0);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

pub fn drain(args: DrainArgs) -> anyhow::Result<bool> {
    let meta = meta_client(&args.cluster)?;
    let once = Retry::once(args.cluster.timeout(5_000));
    runtime()?.block_on(async {
        let servers = meta
            .list_chunkservers()
            .await
            .map_err(|e| anyhow::anyhow!("cannot list chunkservers: {e}"))?;
        let wanted = args.server.trim_start_matches("0x").to_lowercase();
        let Some(server) = servers
            .iter()
            .find(|s| format!("{:016x}", s.id) == wanted || s.addr == args.server)
        else {
            bail!(
                "no chunkserver {} is known to the leader; see `tessera status` for ids and addresses",
                args.server
            );
        };
        let id = server.id;
        let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
        let mut bar = Progress::lines();
        let mut first = None;
        loop {
            // Repeated every round: the drain is soft state on the leader, so this also
            // carries it over a leader change.
            let req = DrainRequest {
                id,
                drain: !args.cancel,
            };
            meta.cluster()
                .call::<DrainChunkserver, _, _>(&req, &once)
                .await?;
            if args.cancel {
                println!("drain of {id:016x} cancelled");
                return Ok(true);
            }
            let left = shards_on(&meta, id).await? as u64;
            let whole = *first.get_or_insert(left);
            bar.show(
                &format!("{id:016x}: {left} shards left"),
                Some((whole.saturating_sub(left), whole.max(left))),
            );
            if left == 0 {
                bar.finish();
                println!("{id:016x} holds no referenced shard any more: it can be stopped");
                return Ok(true);
            }
            if Instant::now() >= deadline {
                bar.finish();
                println!("gave up waiting; run the command again to resume");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Shards the stripe table records on server `id`.
async fn shards_on(meta: &MetaClient, id: u64) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut after = None;
    loop {
        let page = match meta.read(Query::Stripes { after, limit: 1024 }).await {
            Ok(Ok(Response::Stripes(page))) => page,
            Ok(other) => bail!("unexpected reply to a stripe listing: {other:?}"),
            Err(e) => bail!("cannot reach the metadata leader: {e}"),
        };
        count += page
            .iter()
            .filter(|e| !e.deleting)
            .flat_map(|e| e.stripe.layout.shards.iter())
            .filter(|p| p.server == id)
            .count();
        if page.len() < 1024 {
            return Ok(count);
        }
        after = page.last().map(|e| e.stripe.id);
    }
}
