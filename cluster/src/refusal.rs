//! How the error half of a leader-only reply says where to go next.

use tessera_proto::cluster::ClusterError;
use tessera_proto::meta::ServiceError;

/// What a refusal from a metaserver means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// Not the leader; the leader's address when the server knows it.
    NotLeader(Option<&'a str>),
    /// The group cannot serve the call now (no quorum, election, too few chunkservers up).
    Unavailable,
    /// An answer for the caller to handle; retrying elsewhere does not change it.
    Final,
}

/// An error type of a leader-only method.
pub trait LeaderError: std::fmt::Display {
    fn refusal(&self) -> Refusal<'_>;
}

impl LeaderError for ServiceError {
    fn refusal(&self) -> Refusal<'_> {
        match self {
            ServiceError::NotLeader { leader } => Refusal::NotLeader(leader.as_deref()),
            ServiceError::Unavailable { .. } => Refusal::Unavailable,
        }
    }
}

impl LeaderError for ClusterError {
    fn refusal(&self) -> Refusal<'_> {
        match self {
            ClusterError::NotLeader { leader } => Refusal::NotLeader(leader.as_deref()),
            ClusterError::Unavailable { .. } => Refusal::Unavailable,
            ClusterError::UnknownChunkserver { .. } => Refusal::Final,
        }
    }
}
