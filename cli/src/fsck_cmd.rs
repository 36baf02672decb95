//! `tessera fsck`: checks that every shard the metadata records is where it says, that
//! stripe reference counts match the slices naming them, and which stored shards nothing
//! references (orphans). `--deep` also re-reads every referenced shard (the chunkserver
//! verifies it against its id before serving); `--repair` hands missing and corrupt shards
//! to the leader's repair scheduler, deletes old orphans, and checks again until clean.
//!
//! Exit status: 0 clean, 1 problems found (or left after `--repair`), 2 cluster unreachable.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tessera_client::MetaClient;
use tessera_client::cluster::Retry;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    ChunkError, DeleteShard, DeleteShardRequest, GetShard, GetShardRequest, ListShards,
    ListShardsRequest, MAX_LIST_PAGE,
};
use tessera_proto::fs::StripeId;
use tessera_proto::meta::{
    ChunkserverInfo, ChunkserverState, DamagedShard, Query, RefcountMismatch, ReportShards,
    Response, StripeEntry,
};
use tessera_rpc::{Client, RpcConfig, Secret};

use crate::cluster::{ClusterArgs, runtime};
use crate::progress::Progress;

/// Flags of `tessera fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// Also read every referenced shard in full; the chunkserver verifies its hash before
    /// serving, so bit rot shows up as a corrupt shard. Reads every stored byte once.
    #[arg(long)]
    deep: bool,

    /// Queue missing and corrupt shards for repair, delete orphans older than
    /// --orphan-age-ms, then check again until clean or --repair-timeout-ms passes.
    #[arg(long)]
    repair: bool,

    /// A shard no stripe references counts as an orphan (a problem) once it is this old, in
    /// milliseconds; younger ones are uploads whose commit may still come.
    #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
    orphan_age_ms: u64,

    /// How long --repair waits for the cluster to become clean, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 300_000)]
    repair_timeout_ms: u64,
}

/// One referenced shard and where the metadata says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Place {
    stripe: StripeId,
    index: usize,
    server: u64,
    shard: ShardId,
}

/// What one pass found.
#[derive(Debug, Default)]
struct Findings {
    stripes: usize,
    shards: usize,
    missing: Vec<Place>,
    corrupt: Vec<Place>,
    /// On a server that is down or unknown.
    unavailable: Vec<Place>,
    /// (server, shard, age ms) stored but referenced by no stripe at that server.
    orphans: Vec<(u64, ShardId, u64)>,
    young_orphans: usize,
    refcounts: Vec<RefcountMismatch>,
}

impl Findings {
    fn clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.unavailable.is_empty()
            && self.orphans.is_empty()
            && self.refcounts.is_empty()
    }
}

/// The cluster as fsck talks to it.
struct Cluster {
    meta: MetaClient,
    secret: Secret,
    rpc: RpcConfig,
    peers: HashMap<String, Client>,
}

impl Cluster {
    fn peer(&mut self, addr: &str) -> &Client {
        let secret = self.secret.clone();
        let rpc = self.rpc.clone();
        self.peers
            .entry(addr.to_string())
            .or_insert_with(|| Client::new(addr, secret, rpc))
    }

    async fn query(&self, q: Query) -> anyhow::Result<Response> {
        match self.meta.read(q).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => anyhow::bail!("the metadata service refused the query: {e}"),
            Err(e) => anyhow::bail!("cannot reach the metadata leader: {e}"),
        }
    }

    async fn stripes(&self) -> anyhow::Result<Vec<StripeEntry>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let Response::Stripes(page) = self.query(Query::Stripes { after, limit: 1024 }).await?
            else {
                anyhow::bail!("unexpected reply to a stripe listing");
            };
            let more = page.len() == 1024;
            after = page.last().map(|e| e.stripe.id);
            out.extend(page);
            if !more {
                return Ok(out);
            }
        }
    }

    /// Every shard on a server with its age in milliseconds.
    async fn inventory(&mut self, addr: &str) -> anyhow::Result<HashMap<ShardId, u64>> {
        let peer = self.peer(addr);
        let mut out = HashMap::new();
        let mut after = None;
        loop {
            let req = ListShardsRequest {
                after,
                limit: MAX_LIST_PAGE,
                older_than_ms: None,
            };
            let (reply, _) = peer
                .call_with::<ListShards>(&req, Bytes::new(), Duration::from_secs(30))
                .await
                .with_context(|| format!("cannot list the shards of chunkserver {addr}"))?;
            let page = reply.with_context(|| format!("chunkserver {addr} refused the listing"))?;
            out.extend(page.shards.iter().map(|s| (s.id, s.age_ms)));
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    /// Reads a shard in full; `Ok(false)` when the server reports it corrupt or absent, or
    /// sends bytes that do not hash to the id.
    async fn verify(&mut self, addr: &str, id: ShardId) -> anyhow::Result<bool> {
        let req = GetShardRequest { id, range: None };
        let (reply, bytes) = self
            .peer(addr)
            .call_with::<GetShard>(&req, Bytes::new(), Duration::from_secs(60))
            .await
            .with_context(|| format!("cannot read shard {id} from {addr}"))?;
        match reply {
            Ok(_) => Ok(ShardId::of(&bytes) == id),
            Err(ChunkError::Corrupt { .. } | ChunkError::NotFound { .. }) => Ok(false),
            Err(e) => anyhow::bail!("chunkserver {addr}: {e}"),
        }
    }

    /// Sends damaged shards to whichever metaserver leads.
    async fn report(&self, damaged: Vec<DamagedShard>, timeout: Duration) -> anyhow::Result<()> {
        self.meta
            .cluster()
            .call::<ReportShards, _, _>(&damaged, &Retry::once(timeout))
            .await
            .map_err(|e| anyhow::anyhow!("the leader did not take the repair request: {e}"))
    }
}

/// One full check.
async fn check(c: &mut Cluster, args: &FsckArgs, deep: bool) -> anyhow::Result<Findings> {
    let servers: HashMap<u64, ChunkserverInfo> = c
        .meta
        .list_chunkservers()
        .await
        .map_err(|e| anyhow::anyhow!("cannot list chunkservers: {e}"))?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let stripes = c.stripes().await?;
    let mut inventories: HashMap<u64, HashMap<ShardId, u64>> = HashMap::new();
    for s in servers.values() {
        if s.state != ChunkserverState::Down {
            match c.inventory(&s.addr).await {
                Ok(inv) => {
                    inventories.insert(s.id, inv);
                }
                // Not yet marked down but not answering: its shards count as unavailable.
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
    }
    let mut f = Findings {
        stripes: stripes.len(),
        ..Findings::default()
    };
    let mut named: HashSet<(u64, ShardId)> = HashSet::new();
    let mut to_verify = Vec::new();
    for entry in &stripes {
        for (index, p) in entry.stripe.layout.shards.iter().enumerate() {
            named.insert((p.server, p.shard));
            if entry.deleting {
                continue;
            }
            f.shards += 1;
            let place = Place {
                stripe: entry.stripe.id,
                index,
                server: p.server,
                shard: p.shard,
            };
            match inventories.get(&p.server) {
                None => f.unavailable.push(place),
                Some(inv) if !inv.contains_key(&p.shard) => f.missing.push(place),
                Some(_) => to_verify.push(place),
            }
        }
    }
    if deep {
        let mut bar = Progress::terminal_only();
        let total = to_verify.len() as u64;
        for (i, place) in to_verify.iter().enumerate() {
            let addr = servers[&place.server].addr.clone();
            if !c.verify(&addr, place.shard).await? {
                f.corrupt.push(*place);
            }
            let done = i as u64 + 1;
            if done.is_multiple_of(64) || done == total {
                bar.show(
                    &format!("verifying shards {done}/{total}"),
                    Some((done, total)),
                );
            }
        }
        bar.finish();
    }
    for (server, inv) in &inventories {
        for (id, age) in inv {
            if !named.contains(&(*server, *id)) {
                if *age >= args.orphan_age_ms {
                    f.orphans.push((*server, *id, *age));
                } else {
                    f.young_orphans += 1;
                }
            }
        }
    }
    let Response::RefcountMismatches(m) = c.query(Query::RefcountCheck { limit: 1000 }).await?
    else {
        anyhow::bail!("unexpected reply to the refcount check");
    };
    f.refcounts = m;
    Ok(f)
}

fn print(f: &Findings, servers: &HashMap<u64, String>) {
    let addr = |id: &u64| servers.get(id).cloned().unwrap_or_else(|| "?".into());
    const SHOW: usize = 50;
    for (what, list) in [
        ("missing", &f.missing),
        ("corrupt", &f.corrupt),
        ("unavailable (server down)", &f.unavailable),
    ] {
        for p in list.iter().take(SHOW) {
            println!(
                "{what} shard {} (stripe {} index {}) on chunkserver {:016x} {}",
                p.shard,
                p.stripe,
                p.index,
                p.server,
                addr(&p.server)
            );
        }
        if list.len() > SHOW {
            println!("... and {} more {what} shards", list.len() - SHOW);
        }
    }
    for (server, id, age) in f.orphans.iter().take(SHOW) {
        println!(
            "orphan shard {id} on chunkserver {server:016x} {} ({} s old, referenced by no stripe)",
            addr(server),
            age / 1000
        );
    }
    for m in &f.refcounts {
        match m.recorded {
            Some(r) => println!(
                "refcount of stripe {} is {r} but {} slices name it",
                m.stripe, m.counted
            ),
            None => println!(
                "{} slices name stripe {}, which has no record",
                m.counted, m.stripe
            ),
        }
    }
    println!(
        "checked {} stripes, {} shards: {} missing, {} corrupt, {} unavailable, {} orphans \
         ({} younger uploads not counted), {} refcount mismatches",
        f.stripes,
        f.shards,
        f.missing.len(),
        f.corrupt.len(),
        f.unavailable.len(),
        f.orphans.len(),
        f.young_orphans,
        f.refcounts.len()
    );
    println!(
        "fsck: {}",
        if f.clean() { "clean" } else { "PROBLEMS FOUND" }
    );
}

async fn repair(c: &mut Cluster, args: &FsckArgs, f: &Findings) -> anyhow::Result<()> {
    let damaged: Vec<DamagedShard> = f
        .missing
        .iter()
        .map(|p| (p, false))
        .chain(f.corrupt.iter().map(|p| (p, true)))
        .map(|(p, corrupt)| DamagedShard {
            server: p.server,
            shard: p.shard,
            corrupt,
            bad_reply: false,
        })
        .collect();
    if !damaged.is_empty() {
        println!("queued {} shards for repair", damaged.len());
        c.report(damaged, args.cluster.timeout(5_000)).await?;
    }
    let servers: HashMap<u64, String> = c
        .meta
        .list_chunkservers()
        .await
        .map_err(|e| anyhow::anyhow!("cannot list chunkservers: {e}"))?
        .into_iter()
        .map(|s| (s.id, s.addr))
        .collect();
    let mut deleted = 0;
    for (server, id, _) in &f.orphans {
        let Some(addr) = servers.get(server) else {
            continue;
        };
        let req = DeleteShardRequest {
            id: *id,
            min_age_ms: Some(args.orphan_age_ms),
        };
        if let Ok((Ok(_), _)) = c
            .peer(addr)
            .call_with::<DeleteShard>(&req, Bytes::new(), Duration::from_secs(10))
            .await
        {
            deleted += 1;
        }
    }
    if deleted > 0 {
        println!("deleted {deleted} orphan shards");
    }
    Ok(())
}

async fn fsck(args: &FsckArgs) -> anyhow::Result<bool> {
    let meta = args.cluster.meta_client(Retry {
        deadline: Duration::from_secs(10),
        attempt_timeout: args.cluster.timeout(5_000),
        ..Retry::default()
    })?;
    let secret = args.cluster.secret()?;
    let mut c = Cluster {
        meta,
        secret,
        rpc: args.cluster.rpc()?,
        peers: HashMap::new(),
    };
    let names = |list: Vec<ChunkserverInfo>| -> HashMap<u64, String> {
        list.into_iter().map(|s| (s.id, s.addr)).collect()
    };
    let mut f = check(&mut c, args, args.deep).await?;
    let servers = names(c.meta.list_chunkservers().await.unwrap_or_default());
    print(&f, &servers);
    if !args.repair || f.clean() {
        return Ok(f.clean());
    }
    let deadline = Instant::now() + Duration::from_millis(args.repair_timeout_ms);
    // Corrupt shards are re-verified in later passes only if the first pass was deep.
    loop {
        repair(&mut c, args, &f).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        f = check(&mut c, args, args.deep).await?;
        if f.clean() || Instant::now() >= deadline {
            break;
        }
    }
    println!("after repair:");
    let servers = names(c.meta.list_chunkservers().await.unwrap_or_default());
    print(&f, &servers);
    Ok(f.clean())
}

pub fn run(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let clean = runtime()?.block_on(fsck(&args))?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
