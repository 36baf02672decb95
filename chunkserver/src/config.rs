//! Settings of a chunkserver process, as the `tessera chunk` flags fill them in.

use std::path::PathBuf;
use std::time::Duration;

use tessera_rpc::RpcConfig;

use crate::scrub::ScrubConfig;

/// Everything [`crate::run`] needs. Defaults match the documented flag defaults.
#[derive(Debug, Clone)]
pub struct ChunkConfig {
    /// Address the chunk service listens on ("host:port"; port 0 picks a free one).
    pub listen: String,
    /// Address other machines reach this server at; `None`: the bound listen address, which
    /// must then not be a wildcard such as 0.0.0.0.
    pub advertise: Option<String>,
    /// The data directory.
    pub data: PathBuf,
    /// Metadata servers to find the leader among. Empty: serve without registering.
    pub meta: Vec<String>,
    /// File holding the cluster secret.
    pub secret_file: PathBuf,
    /// Most bytes of shard files to store; `None`: the disk is the limit.
    pub capacity: Option<u64>,
    /// Scrubber settings (read rate, pause between passes).
    pub scrub: ScrubConfig,
    /// Time between heartbeats to the metadata leader.
    pub heartbeat_interval: Duration,
    /// Timeout of one call to a metaserver; `None`: one heartbeat interval, within 0.5-5 s.
    pub meta_timeout: Option<Duration>,
    /// RPC limits and timeouts, shared by the server and the heartbeat client.
    pub rpc: RpcConfig,
    /// Serve Prometheus metrics on this address ("HOST:PORT"); `None`: no endpoint.
    pub metrics_addr: Option<String>,
}

impl ChunkConfig {
    /// A configuration with the documented defaults for everything but the four required
    /// settings.
    pub fn new(
        listen: impl Into<String>,
        data: impl Into<PathBuf>,
        meta: Vec<String>,
        secret_file: impl Into<PathBuf>,
    ) -> ChunkConfig {
        ChunkConfig {
            listen: listen.into(),
            advertise: None,
            data: data.into(),
            meta,
            secret_file: secret_file.into(),
            capacity: None,
            scrub: ScrubConfig::default(),
            heartbeat_interval: DEFAULT_HEARTBEAT,
            meta_timeout: None,
            rpc: RpcConfig::default(),
            metrics_addr: None,
        }
    }
}

/// Default time between heartbeats: the leader declares a server dead after several missed
/// ones, so this sets how quickly repair of a lost server starts.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
