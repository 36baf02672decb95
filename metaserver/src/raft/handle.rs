//! [`RaftNode`]: everything the rest of the metaserver may ask of Raft, in its own types.
//! The replica layer above holds one; nothing outside `raft/` touches the Raft library.

use super::membership;
use super::read_gate::ReadGate;
use super::refusal::refused;
use super::status::RaftStatus;
use super::timings;
use super::types::{NodeId, Raft};
use openraft::async_runtime::watch::WatchReceiver;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_namespace::{Command, Reply};
use tessera_proto::meta::{MembershipChange, ServiceError};
use tessera_rpc::Router;

/// A running Raft member of the metadata group. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RaftNode {
    id: NodeId,
    raft: Raft,
    reads: ReadGate,
    /// Membership changes run one at a time.
    membership: Arc<tokio::sync::Mutex<()>>,
}

impl RaftNode {
    pub(super) fn new(id: NodeId, raft: Raft) -> RaftNode {
        RaftNode {
            id,
            raft,
            reads: ReadGate::default(),
            membership: Arc::default(),
        }
    }

    /// This member's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether this member leads now (as far as it knows; see [`RaftNode::confirm_leader`]).
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// This member's view of the group.
    pub fn status(&self) -> RaftStatus {
        RaftStatus::read(&self.raft, self.id)
    }

    /// Replicates `cmd` and returns its reply once it is committed and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Reply, ServiceError> {
        let started = Instant::now();
        match self.raft.client_write(cmd).await {
            Ok(resp) => {
                timings::COMMIT.since(started);
                Ok(resp.data)
            }
            Err(e) => Err(refused(&e)),
        }
    }

    /// Returns once this member has confirmed, after the call, that it still leads and has
    /// applied everything committed before (under its leader lease, or by a read-index round
    /// shared with concurrent reads): a read of the local state afterwards is linearizable.
    pub async fn confirm_leader(&self) -> Result<(), ServiceError> {
        self.reads.confirm(&self.raft).await
    }

    /// Adds, removes or transfers to a member, one change at a time; the reply describes
    /// the voters afterwards.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<String, ServiceError> {
        if matches!(change, MembershipChange::TransferLeader { .. }) {
            // Until the transfer is over and every lease this member handed out has run
            // out twice over, reads prove leadership with a quorum round.
            let lease = Duration::from_millis(self.raft.config().election_timeout_max);
            self.reads
                .suspend_lease(membership::TRANSFER_WAIT + 2 * lease);
        }
        membership::change(&self.raft, &self.membership, change).await
    }

    /// Calls `seen` with the known leader's id now and after every change of this member's
    /// Raft state, until Raft stops.
    pub async fn follow_leader(&self, mut seen: impl FnMut(Option<NodeId>)) {
        let mut rx = self.raft.metrics();
        loop {
            seen(rx.borrow_watched().current_leader);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Forms the group with `members` as voters (the one-time `--init` step). Harmless when
    /// this member already belongs to a group: returns `Ok(false)`.
    pub async fn initialize(&self, members: &BTreeMap<NodeId, String>) -> std::io::Result<bool> {
        super::node::initialize(&self.raft, members).await
    }

    /// Adds the Raft messages between members to a router.
    pub fn routes(&self, router: Router) -> Router {
        super::server::routes(router, self.raft.clone())
    }

    /// Returns once this member's Raft core has stopped by itself (a fatal error, such as
    /// a log or state machine write that failed on a full disk), with the reason. It never
    /// restarts: the process should exit so that a supervisor starts it afresh.
    pub async fn stopped(&self) -> String {
        let mut rx = self.raft.metrics();
        loop {
            if let Err(fatal) = &rx.borrow_watched().running_state {
                return fatal.to_string();
            }
            if rx.changed().await.is_err() {
                return "the Raft core ended".into();
            }
        }
    }

    /// Stops Raft (the process is going down).
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}
