//! `tessera chunk`: runs a chunkserver.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tessera_chunkserver::ChunkConfig;
use tessera_chunkserver::scrub::ScrubConfig;

use crate::cluster::ClusterArgs;

/// Flags of `tessera chunk`.
#[derive(Debug, Args)]
pub struct ChunkArgs {
    /// Address to serve the chunk service on, HOST:PORT (required). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: String,

    /// Address clients and the metadata leader use to reach this server
    /// [default: the --listen address, which must then not be a wildcard like 0.0.0.0].
    #[arg(long, value_name = "ADDR")]
    advertise: Option<String>,

    /// Data directory holding the shards, the chunkserver id and the format marker
    /// (required). Created if missing; a directory holding anything else is refused.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// Most bytes of shard files to store, e.g. 500G. Suffixes K, M, G, T are powers of 1024
    /// [default: no limit but the disk's free space].
    #[arg(long, value_name = "BYTES", value_parser = crate::units::parse_bytes)]
    capacity: Option<u64>,

    /// Read rate of the background scrubber in bytes per second (suffixes as for
    /// --capacity); 0 means unthrottled.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value = "32M", value_parser = crate::units::parse_bytes)]
    scrub_rate: u64,

    /// Pause between the end of one scrub pass and the start of the next, in milliseconds
    /// (86400000 = one day). A pass also starts at every startup.
    #[arg(long, value_name = "N", default_value_t = 86_400_000)]
    scrub_interval_ms: u64,

    /// Time between heartbeats to the metadata leader, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    heartbeat_ms: u64,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,

    /// Most bytes of incoming requests (shard uploads) held in memory at once, across all
    /// connections; a large request waits for room before it is read (backpressure).
    #[arg(long, value_name = "BYTES", default_value = "512M", value_parser = crate::units::parse_bytes)]
    buffer_budget: u64,

    /// Close a connection whose request is not complete this long (milliseconds) after its
    /// header arrived: a stalled sender holds no buffer for longer.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    frame_timeout_ms: u64,
}

pub fn run(args: ChunkArgs) -> anyhow::Result<()> {
    let rpc = args.cluster.rpc()?;
    let mut config = ChunkConfig::new(
        args.listen,
        args.data,
        args.cluster.meta,
        args.cluster.secret_file,
    );
    config.rpc = rpc;
    config.meta_timeout = args.cluster.timeout_ms.map(Duration::from_millis);
    config.advertise = args.advertise;
    config.capacity = args.capacity;
    config.scrub = ScrubConfig {
        bytes_per_sec: args.scrub_rate,
        pass_interval: Duration::from_millis(args.scrub_interval_ms),
        ..ScrubConfig::default()
    };
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.metrics_addr = args.metrics_addr;
    config.rpc.max_buffered_bytes = args.buffer_budget;
    config.rpc.frame_timeout = Duration::from_millis(args.frame_timeout_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera-chunk")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tessera_chunkserver::run(config))?;
    Ok(())
}
