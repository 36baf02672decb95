//! Starting a Raft node: its configuration, its two redb files, and forming a cluster.

use super::handle::RaftNode;
use super::log_store::LogStore;
use super::network::NetworkFactory;
use super::state_machine::StateMachine;
use super::types::{NodeId, Raft};
use crate::store::RedbStore;
use openraft::{BasicNode, Config, SnapshotPolicy};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tessera_rpc::{RpcConfig, Secret};

/// File names inside a metaserver's data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// The namespace state machine.
pub const STATE_FILE: &str = "namespace.redb";

/// Raft timing and log compaction.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in `election_min..election_max` starts
    /// an election. Failover takes about this long plus one round trip.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Build a snapshot (and allow purging the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// Entries kept behind the last snapshot, so a briefly lagging follower catches up from
    /// the log rather than by snapshot.
    pub keep_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(150),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            snapshot_every: 20_000,
            keep_after_snapshot: 5_000,
        }
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A started Raft node and the store its state machine writes.
#[derive(Debug, Clone)]
pub struct Node {
    /// The Raft member.
    pub raft: RaftNode,
    /// The namespace store (for reads after leadership is confirmed).
    pub store: Arc<RedbStore>,
}

/// Opens the node's files under `dir` and starts Raft. Raft messages use `secret`.
pub async fn start(
    id: NodeId,
    dir: &Path,
    secret: Secret,
    rpc: RpcConfig,
    tuning: &RaftTuning,
) -> io::Result<Node> {
    let config = Config {
        cluster_name: "tessera-meta".into(),
        heartbeat_interval: tuning.heartbeat.as_millis() as u64,
        election_timeout_min: tuning.election_min.as_millis() as u64,
        election_timeout_max: tuning.election_max.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(tuning.snapshot_every),
        max_in_snapshot_log_to_keep: tuning.keep_after_snapshot,
        // A node cut off and rejoining must not force a new election with an inflated term.
        enable_pre_vote: Some(true),
        // A leader restarted must win an election again. Restored at once (openraft's
        // default), it would serve reads from a state machine that, like the committed index,
        // is not flushed per commit, so entries committed just before the crash could be
        // missing from them: a file whose fsync had returned would not be found.
        enable_leader_restore: Some(false),
        install_snapshot_timeout: 60_000,
        ..Config::default()
    };
    let config = Arc::new(config.validate().map_err(io_err)?);
    let log = LogStore::open(&dir.join(LOG_FILE))?;
    let store = Arc::new(RedbStore::open(&dir.join(STATE_FILE)).map_err(io_err)?);
    let sm = StateMachine::new(store.clone())?;
    let network = NetworkFactory::new(secret, rpc);
    let raft = Raft::new(id, config, network, log, sm)
        .await
        .map_err(io_err)?;
    Ok(Node {
        raft: RaftNode::new(id, raft),
        store,
    })
}

/// Forms the cluster with `members` as voters (see [`RaftNode::initialize`]).
pub(super) async fn initialize(
    raft: &Raft,
    members: &BTreeMap<NodeId, String>,
) -> io::Result<bool> {
    if raft.is_initialized().await.map_err(io_err)? {
        return Ok(false);
    }
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    raft.initialize(nodes).await.map_err(io_err)?;
    Ok(true)
}
