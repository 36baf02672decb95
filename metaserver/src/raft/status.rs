//! This member's view of the Raft group in the metaserver's own terms, so status replies,
//! metrics and the background jobs never name the Raft library.

use super::types::{NodeId, Raft};
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;

/// A member's role in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl Role {
    /// Every role, in the order metrics list them.
    pub const ALL: [Role; 5] = [
        Role::Leader,
        Role::Follower,
        Role::Candidate,
        Role::Learner,
        Role::Shutdown,
    ];

    /// The name in status replies and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }

    fn of(state: ServerState) -> Role {
        match state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// One reading of this member's Raft state. Indexes are `None` while there is no such entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStatus {
    /// This member's node id.
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    /// The leader this member knows of, if any (it may be missing from `members` for a moment
    /// during a membership change).
    pub leader_id: Option<NodeId>,
    /// Last entry in this member's log.
    pub last_log_index: Option<u64>,
    /// Last entry this member knows to be committed.
    pub committed_index: Option<u64>,
    /// Last entry applied to this member's namespace.
    pub applied_index: Option<u64>,
    /// Last entry in this member's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Last entry dropped from this member's log.
    pub purged_index: Option<u64>,
    /// Voters and learners with their addresses, by id.
    pub members: Vec<(NodeId, String)>,
}

impl RaftStatus {
    pub(super) fn read(raft: &Raft, id: NodeId) -> RaftStatus {
        let rx = raft.metrics();
        let m = rx.borrow_watched();
        RaftStatus {
            id,
            role: Role::of(m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members: m
                .membership_config
                .nodes()
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect(),
        }
    }

    /// The leader's id and address, when it is known and in the membership.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let l = self.leader_id?;
        self.members.iter().find(|(id, _)| *id == l).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(leader_id: Option<NodeId>) -> RaftStatus {
        RaftStatus {
            id: 1,
            role: Role::Follower,
            term: 3,
            leader_id,
            last_log_index: None,
            committed_index: None,
            applied_index: None,
            snapshot_index: None,
            purged_index: None,
            members: vec![(1, "a:1".into()), (2, "b:2".into())],
        }
    }

    #[test]
    fn the_leader_is_named_only_when_it_is_a_member() {
        assert_eq!(status(Some(2)).leader(), Some((2, "b:2".into())));
        assert_eq!(status(Some(9)).leader(), None);
        assert_eq!(status(None).leader(), None);
    }

    #[test]
    fn role_names_are_the_status_and_metric_labels() {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            ["leader", "follower", "candidate", "learner", "shutdown"]
        );
    }
}
