//! Raft's refusals in the metaserver's terms, and the one notion of "not the leader".
//!
//! A follower refuses leader-only work in two places: the service's own guard (before any
//! work, see `Replica::lead`) and Raft itself (a proposal or a read-index round on a member
//! that lost the leadership meanwhile). Both become a [`NotLeader`], which turns into the
//! `NotLeader` of whichever wire error type the call answers with.

use super::types::TypeConfig;
use openraft::TryAsRef;
use openraft::error::{ForwardToLeader, RaftError};
use tessera_proto::cluster::ClusterError;
use tessera_proto::meta::ServiceError;

/// This member does not lead; `leader` is the leader's address when known, so the caller
/// can go there directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    pub leader: Option<String>,
}

impl From<NotLeader> for ServiceError {
    fn from(n: NotLeader) -> Self {
        ServiceError::NotLeader { leader: n.leader }
    }
}

impl From<NotLeader> for ClusterError {
    fn from(n: NotLeader) -> Self {
        ClusterError::NotLeader { leader: n.leader }
    }
}

/// A Raft API error as a service error: `NotLeader` (with the leader's address when Raft
/// knows it) if the call must go to the leader, `Unavailable` otherwise.
pub(crate) fn refused<E>(e: &RaftError<TypeConfig, E>) -> ServiceError
where
    E: TryAsRef<ForwardToLeader<TypeConfig>> + std::fmt::Debug,
    RaftError<TypeConfig, E>: std::fmt::Display,
{
    match e.forward_to_leader() {
        Some(f) => NotLeader {
            leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
        }
        .into(),
        None => ServiceError::Unavailable {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_becomes_the_not_leader_of_either_wire_error() {
        let n = NotLeader {
            leader: Some("10.0.0.2:7000".into()),
        };
        assert_eq!(
            ServiceError::from(n.clone()),
            ServiceError::NotLeader {
                leader: Some("10.0.0.2:7000".into())
            }
        );
        assert_eq!(
            ClusterError::from(n),
            ClusterError::NotLeader {
                leader: Some("10.0.0.2:7000".into())
            }
        );
    }
}
