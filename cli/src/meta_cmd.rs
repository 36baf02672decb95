//! `tessera meta`: runs a metadata server (one member of the Raft group).

use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tessera_metaserver::MetaConfig;
use tessera_metaserver::chunk_registry::Liveness;
use tessera_metaserver::raft::node::RaftTuning;
use tessera_metaserver::upkeep::{RebalanceConfig, UpkeepConfig};

use crate::membership_cmd::MembershipCmd;
use crate::tls_args::TlsArgs;

/// Flags of `tessera meta` (run a member), or one of its membership subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MetaArgs {
    #[command(subcommand)]
    action: Option<MembershipCmd>,

    /// This member's node id, a positive integer. Bound to --data on first start and never
    /// reused for another node (required).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), required = true)]
    id: Option<u64>,

    /// Address to listen on, HOST:PORT (required); other members, chunkservers and clients
    /// reach this member at the address given for it in --peers.
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Option<String>,

    /// Data directory: Raft log, namespace database and node id file (required). Created if
    /// missing. A restart on the same directory resumes with all state.
    #[arg(long, value_name = "DIR", required = true)]
    data: Option<PathBuf>,

    /// Every member of the group as ID=HOST:PORT, comma-separated, including this one
    /// (required), e.g. 1=10.0.0.1:7000,2=10.0.0.2:7000,3=10.0.0.3:7000.
    #[arg(long, value_name = "PEERS", value_delimiter = ',', required = true)]
    peers: Vec<String>,

    /// File holding the cluster secret (required; create one with `tessera gen-secret`).
    #[arg(long, value_name = "F", env = "TESSERA_SECRET_FILE", required = true)]
    secret_file: Option<PathBuf>,

    #[command(flatten)]
    tls: TlsArgs,

    /// Form the group from --peers. Give it to ONE member, once, when the cluster is new;
    /// a member that already belongs to a group ignores it.
    #[arg(long)]
    init: bool,

    /// Leader heartbeat period in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 150)]
    heartbeat_ms: u64,

    /// Minimum election timeout in milliseconds (the maximum is twice this). A new leader is
    /// elected roughly this long after the old one stops answering.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    election_ms: u64,

    /// Take a snapshot (and let the Raft log be compacted behind it) every N log entries.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    snapshot_every: u64,

    /// Log entries kept behind the last snapshot for followers that are only a little behind.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    keep_logs: u64,

    /// A chunkserver silent this long (milliseconds) is marked down and its shards are
    /// rebuilt elsewhere. It counts as suspect (no new data) after a twelfth of this, at
    /// least 3 s.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    dead_after_ms: u64,

    /// A stripe is written once k + N of its k + m shards are stored (the rest are rebuilt
    /// by repair), so one unreachable chunkserver does not stop writes; fsync promises
    /// k + N. At most m (then every shard is needed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    write_spare: u8,

    /// How often the leader looks for client sessions whose lease ran out, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    session_check_ms: u64,

    /// Seconds a deleted file stays in the trash (restorable with `tessera trash`) before
    /// its space returns; 0 frees at once. Applied once, to a cluster where no one has set
    /// it yet (a new one); change it later with `tessera trash --retention`.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    trash_retention: u64,

    /// Pause between repair rounds (looking for lost or damaged shards), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    repair_interval_ms: u64,

    /// Shard rebuilds in flight at once across the cluster.
    #[arg(long, value_name = "N", default_value_t = 4)]
    repair_parallel: usize,

    /// How long a stripe no file references waits before its shards are deleted, in
    /// milliseconds. Writing the same content again within it reuses the stripe.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    gc_grace_ms: u64,

    /// The longest a client may take between storing a stripe's shards and committing it, in
    /// milliseconds: no shard stored more recently is ever deleted by GC or the sweep.
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    upload_window_ms: u64,

    /// A shard that no stripe references is deleted by the sweep once it is this old, in
    /// milliseconds (uploads whose commit never came, stale copies of a returning server).
    #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
    orphan_grace_ms: u64,

    /// Pause between orphan sweeps over every chunkserver, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 600_000)]
    sweep_interval_ms: u64,

    /// Rebalance shards between chunkservers by itself (auto) whenever a server's used
    /// fraction leaves the band around the mean, or only when `tessera rebalance` asks.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "manual"])]
    rebalance: String,

    /// A chunkserver within this many percentage points of the mean used fraction is
    /// balanced.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    rebalance_band: f64,

    /// Most megabytes per second that rebalancing moves, across the whole cluster.
    #[arg(long, value_name = "MB", default_value_t = 64)]
    rebalance_rate_mb: u64,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
}

/// The band as a fraction, from percentage points.
fn rebalance_band(percent: f64) -> anyhow::Result<f64> {
    if !(0.0..=100.0).contains(&percent) {
        bail!("--rebalance-band {percent} is not a percentage between 0 and 100");
    }
    Ok(percent / 100.0)
}

fn parse_peers(items: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in items {
        let Some((id, addr)) = item.split_once('=') else {
            bail!("--peers entry {item:?} is not ID=HOST:PORT");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers entry {item:?}: {id:?} is not a node id"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            bail!("--peers names node {id} twice");
        }
    }
    Ok(peers)
}

pub fn run(args: MetaArgs) -> anyhow::Result<()> {
    if let Some(action) = args.action {
        return crate::membership_cmd::run(action);
    }
    let missing = |flag: &str| anyhow::anyhow!("{flag} is required to run a metaserver");
    let config = MetaConfig {
        id: args.id.ok_or_else(|| missing("--id"))?,
        listen: args.listen.ok_or_else(|| missing("--listen"))?,
        data: args.data.ok_or_else(|| missing("--data"))?,
        peers: parse_peers(&args.peers)?,
        secret_file: args.secret_file.ok_or_else(|| missing("--secret-file"))?,
        init: args.init,
        tuning: RaftTuning {
            heartbeat: Duration::from_millis(args.heartbeat_ms),
            election_min: Duration::from_millis(args.election_ms),
            election_max: Duration::from_millis(args.election_ms * 2),
            snapshot_every: args.snapshot_every,
            keep_after_snapshot: args.keep_logs,
        },
        rpc: args.tls.rpc_config()?,
        liveness: Liveness {
            suspect_after: Duration::from_millis((args.dead_after_ms / 12).max(3_000))
                .min(Duration::from_millis(args.dead_after_ms)),
            dead_after: Duration::from_millis(args.dead_after_ms),
        },
        write_spare: args.write_spare,
        session_check: Duration::from_millis(args.session_check_ms),
        trash_retention_s: args.trash_retention,
        upkeep: UpkeepConfig {
            repair_interval: Duration::from_millis(args.repair_interval_ms),
            repair_parallel: args.repair_parallel,
            gc_grace: Duration::from_millis(args.gc_grace_ms),
            gc_interval: Duration::from_millis(args.gc_grace_ms.clamp(200, 2_000)),
            upload_window: Duration::from_millis(args.upload_window_ms),
            orphan_grace: Duration::from_millis(args.orphan_grace_ms),
            sweep_interval: Duration::from_millis(args.sweep_interval_ms),
            dead_after: Duration::from_millis(args.dead_after_ms),
            rebalance: RebalanceConfig {
                auto: args.rebalance == "auto",
                band: rebalance_band(args.rebalance_band)?,
                rate: args.rebalance_rate_mb.max(1) * 1_000_000,
                ..RebalanceConfig::default()
            },
        },
        metrics_addr: args.metrics_addr,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera-meta")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tessera_metaserver::run(config))?;
    Ok(())
}
