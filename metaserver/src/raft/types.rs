//! The openraft type configuration. Every openraft type the metaserver uses is named here or
//! elsewhere in this folder, so an openraft alpha bump touches only `raft/`.

use tessera_namespace::{Command, Reply};

/// Metaserver node id: the `N` of `tessera meta --id N`. Never reused for another node.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Raft types of the metadata group: log entries carry namespace [`Command`]s and
    /// applying one yields its [`Reply`].
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// The Raft handle of a metaserver.
pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// Membership as stored with the state.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot whose data is the serialized namespace image.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
/// Snapshot bytes: a namespace image (see `state_machine::image`).
pub type SnapshotData = bytes::Bytes;
