//! What a metaserver needs to start.

use crate::chunk_registry::Liveness;
use crate::raft::node::RaftTuning;
use crate::raft::types::NodeId;
use crate::upkeep::UpkeepConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tessera_rpc::RpcConfig;

/// Configuration of one metaserver process (built by `tessera meta` from its flags).
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// This member's node id; never reused for another node.
    pub id: NodeId,
    /// Address to listen on for clients, chunkservers and other members.
    pub listen: String,
    /// Directory holding the Raft log, the namespace and the node id file.
    pub data: PathBuf,
    /// Every member of the group (including this one), by node id.
    pub peers: BTreeMap<NodeId, String>,
    /// The cluster secret file.
    pub secret_file: PathBuf,
    /// Form the group with `peers` as voters if this node has never been initialized.
    pub init: bool,
    /// Raft timing and compaction.
    pub tuning: RaftTuning,
    /// RPC limits and timeouts.
    pub rpc: RpcConfig,
    /// When a silent chunkserver counts as suspect and as down.
    pub liveness: Liveness,
    /// A stripe is committed once `k + write_spare` of its shards are stored (at most
    /// `k + m`); mounts learn it from the leader.
    pub write_spare: u8,
    /// How often the leader looks for client sessions whose lease ran out (and for files
    /// whose time in the trash ran out).
    pub session_check: Duration,
    /// Seconds files stay in the trash, set by the leader on a namespace where no one has
    /// set it yet (a new one); `tessera trash --retention` changes it afterwards.
    pub trash_retention_s: u64,
    /// Repair, GC and sweep settings.
    pub upkeep: UpkeepConfig,
    /// Serve Prometheus metrics on this address ("HOST:PORT"); `None`: no endpoint.
    pub metrics_addr: Option<String>,
}
