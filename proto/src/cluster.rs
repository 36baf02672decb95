//! Cluster membership: what a chunkserver tells the metadata leader about itself.
//!
//! A chunkserver registers once per leader it finds, then heartbeats. Both calls go to the
//! leader; a follower answers `NotLeader` with the leader's address when it knows it, and the
//! chunkserver follows that hint. The leader marks a server dead after missed heartbeats and
//! uses the reported space and health for placement and repair.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::body::Rpc;
use crate::method::Method;
use crate::shard::ShardId;

/// A chunkserver's identity: a random nonzero number chosen once and kept in its data
/// directory, so the same disk is the same server across restarts and address changes.
pub type ChunkserverId = u64;

/// Most ids of each kind (`corrupt`, `missing`) one heartbeat carries; the rest wait for the
/// next one. 4096 ids are 128 KiB of body.
pub const MAX_REPORTED_SHARDS: usize = 4096;

/// Announce a chunkserver to the metadata leader. Idempotent: a server registers again after
/// every restart and whenever it finds a new leader.
#[derive(Debug)]
pub struct RegisterChunkserver;

/// Body of a [`RegisterChunkserver`] request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: ChunkserverId,
    /// Where clients reach its chunk service ("host:port").
    pub addr: String,
    /// Bytes it may fill with shards: its `--capacity`, or else used plus free disk space.
    pub capacity: u64,
    /// Bytes of shard files it holds.
    pub used: u64,
    /// Number of shards it holds.
    pub shards: u64,
}

impl Rpc for RegisterChunkserver {
    const METHOD: Method = Method::REGISTER_CHUNKSERVER;
    type Request = Registration;
    type Reply = Result<(), ClusterError>;
}

/// A chunkserver's periodic report to the metadata leader.
#[derive(Debug)]
pub struct ChunkHeartbeat;

/// Body of a [`ChunkHeartbeat`] request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub id: ChunkserverId,
    pub addr: String,
    /// As in [`Registration::capacity`].
    pub capacity: u64,
    pub used: u64,
    pub shards: u64,
    /// The server refuses puts for lack of space: place nothing new on it.
    pub full: bool,
    /// Shards found corrupt (by a read or the scrubber) since the last acknowledged heartbeat.
    /// They are quarantined and need repair elsewhere.
    pub corrupt: Vec<ShardId>,
    /// Shards the scrubber listed but could not find when it read them. The leader tells a
    /// concurrent delete from a loss by its own records.
    pub missing: Vec<ShardId>,
}

impl Rpc for ChunkHeartbeat {
    const METHOD: Method = Method::CHUNK_HEARTBEAT;
    type Request = Heartbeat;
    type Reply = Result<(), ClusterError>;
}

/// Why the metadata service refused a membership call.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Error)]
pub enum ClusterError {
    /// This metaserver is not the leader. `leader` is the leader's address when known; call it
    /// instead (otherwise try the other metaservers).
    #[error("not the metadata leader{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
    /// A heartbeat from a chunkserver the leader does not know (e.g. a new leader that has
    /// not seen its registration): register again.
    #[error("chunkserver {id:#018x} is not registered with this leader; register again")]
    UnknownChunkserver { id: ChunkserverId },
    /// The metadata service cannot take the call now (no quorum, shutting down): retry later.
    #[error("metadata service unavailable: {reason}")]
    Unavailable { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_body, encode_body};

    #[test]
    fn not_leader_names_the_hint() {
        let e = ClusterError::NotLeader {
            leader: Some("10.0.0.2:7000".into()),
        };
        assert!(e.to_string().contains("10.0.0.2:7000"));
        let e = ClusterError::NotLeader { leader: None };
        assert_eq!(e.to_string(), "not the metadata leader");
    }

    #[test]
    fn a_full_heartbeat_fits_the_default_body_limit() {
        let hb = Heartbeat {
            id: u64::MAX,
            addr: "255.255.255.255:65535".into(),
            capacity: u64::MAX,
            used: u64::MAX,
            shards: u64::MAX,
            full: true,
            corrupt: vec![ShardId([0xee; 32]); MAX_REPORTED_SHARDS],
            missing: vec![ShardId([0xdd; 32]); MAX_REPORTED_SHARDS],
        };
        let bytes = encode_body(&hb).unwrap();
        assert!(bytes.len() < crate::frame::DEFAULT_MAX_BODY as usize / 8);
        assert_eq!(decode_body::<Heartbeat>(&bytes).unwrap(), hb);
    }
}
