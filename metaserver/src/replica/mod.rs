//! The replica layer: one metaserver's copy of the namespace and what may be done with it.
//! The RPC service and every background job (leader duties, repair, GC, sweep, backups,
//! metrics) go through a [`Replica`]; none of them sees Raft or the RPC handlers.
//!
//! - Writes: [`Replica::propose`] stamps the leader's clock into the command (the only time
//!   `apply` knows) and returns the reply once the command is committed and applied here.
//! - Reads: [`Replica::read`] and [`Replica::read_with`] are linearizable (leadership
//!   confirmed first: under the leader lease, else by a read-index round shared with
//!   concurrent reads); [`Replica::local_read`] reads what this member has
//!   applied, which on the leader is enough for background scans that re-check their
//!   decisions through commands.
//! - Leadership: [`Replica::lead`] is the one leader-only guard, [`Replica::status`] this
//!   member's view of the group.

pub mod clock;
mod recalls;

use crate::raft::{NotLeader, RaftNode, RaftStatus};
use crate::store::RedbStore;
use recalls::Recalls;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_namespace::{
    Command, NamespaceError, Op, Query, Reply, Response, SYSTEM_SESSION, exclusive_in_the_way,
    query,
};
use tessera_proto::fs::Ino;
use tessera_proto::meta::{CapHolder, MembershipChange, ServiceError, WriteRequest};

/// How often a command waiting for caps looks whether they were given back, when nothing
/// woke it sooner (a session that ended by expiry wakes no one).
const RECALL_CHECK: Duration = Duration::from_millis(50);

/// How often a recall that was not answered is posted again (its long poll may have been
/// lost with a connection).
const RECALL_REPOST: Duration = Duration::from_secs(1);

/// This member's replica of the namespace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Replica {
    raft: RaftNode,
    store: Arc<RedbStore>,
    recalls: Arc<Recalls>,
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable {
        reason: e.to_string(),
    }
}

impl Replica {
    /// The replica of a started Raft member over the store its state machine writes.
    pub fn new(raft: RaftNode, store: Arc<RedbStore>) -> Replica {
        Replica {
            raft,
            store,
            recalls: Arc::default(),
        }
    }

    /// The Raft member (for the process wiring: its routes, `--init`, shutdown).
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// Whether this member leads now (background jobs poll this; a stale answer only costs
    /// a refused proposal).
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The leader-only guard: `Err` (with the leader's address when known) unless this
    /// member leads. Every leader-only call checks it before doing any work.
    pub fn lead(&self) -> Result<(), NotLeader> {
        if self.raft.is_leader() {
            return Ok(());
        }
        Err(NotLeader {
            leader: self.raft.status().leader().map(|(_, addr)| addr),
        })
    }

    /// This member's view of the group.
    pub fn status(&self) -> RaftStatus {
        self.raft.status()
    }

    /// Proposes a client's change, stamped with this leader's clock, and waits until it is
    /// committed and applied. A change that other sessions' caps stand in the way of
    /// (`Response::Recall`, nothing applied) waits while the leader recalls them, and is
    /// proposed again, with a new time, once they are given back or their sessions ended.
    pub async fn propose(&self, req: WriteRequest) -> Result<Reply, ServiceError> {
        let gives_back = matches!(
            req.op,
            Op::ReleaseCaps { .. } | Op::CloseSession | Op::ExpireSession { .. }
        );
        let mut cmd = Command {
            session: req.session,
            seq: req.seq,
            seq_floor: req.seq_floor,
            now_ns: clock::now_ns(),
            op: req.op,
        };
        loop {
            let reply = self.raft.propose(cmd.clone()).await?;
            let Ok(Response::Recall { holders }) = reply else {
                if gives_back {
                    self.recalls.given_back();
                }
                return Ok(reply);
            };
            self.recall(&holders).await?;
            cmd.now_ns = clock::now_ns();
        }
    }

    /// Asks the holders for their caps and waits until none of them holds one any more
    /// (given back, or its session ended), as long as this member leads.
    async fn recall(&self, holders: &[CapHolder]) -> Result<(), ServiceError> {
        tracing::debug!(?holders, "recalling caps");
        let mut posted = Instant::now();
        self.recalls.post(holders);
        loop {
            self.lead()?;
            let asked = holders.to_vec();
            let still_held = self
                .local_read(move |store| {
                    let inos: Vec<Ino> = asked.iter().map(|h| h.ino).collect();
                    let now = match query(&store.read_view()?, &Query::CapHolders { inos })? {
                        Ok(Response::Caps(now)) => now,
                        _ => Vec::new(),
                    };
                    Ok(asked
                        .into_iter()
                        .filter(|h| now.iter().any(|n| (n.ino, n.session) == (h.ino, h.session)))
                        .collect::<Vec<_>>())
                })
                .await?;
            if still_held.is_empty() {
                return Ok(());
            }
            if posted.elapsed() >= RECALL_REPOST {
                self.recalls.post(&still_held);
                posted = Instant::now();
            }
            self.recalls.wait_given_back(RECALL_CHECK).await;
        }
    }

    /// The caps `session` is asked to give back, waiting up to `wait` (the mounts' long
    /// poll, `WaitRecall`).
    pub async fn wait_recall(&self, session: u64, wait: Duration) -> Vec<Ino> {
        self.recalls.wait_for(session, wait).await
    }

    /// Proposes a change the metaserver makes itself (format, expiry, GC, repair, load):
    /// the system session, not deduplicated.
    pub async fn propose_system(&self, op: Op) -> Result<Reply, ServiceError> {
        self.propose(WriteRequest {
            session: SYSTEM_SESSION,
            seq: 0,
            seq_floor: 0,
            op,
        })
        .await
    }

    /// Answers a query of the metaserver itself after confirming leadership
    /// (linearizable; see [`Replica::read_as`]).
    pub async fn read(&self, q: Query) -> Result<Reply, ServiceError> {
        self.read_as(SYSTEM_SESSION, q).await
    }

    /// Answers `session`'s query after confirming leadership (linearizable). What another
    /// session holds an exclusive cap on may have changed in its mount without this leader
    /// knowing yet, so a read of it waits while the leader recalls that cap, and is read
    /// again once it is given back (`tessera_namespace::exclusive_in_the_way`).
    pub async fn read_as(&self, session: u64, q: Query) -> Result<Reply, ServiceError> {
        let q = Arc::new(q);
        loop {
            let asked = q.clone();
            let now = clock::now_ns();
            let (reply, holders) = self
                .read_with(move |store| {
                    let view = store.read_view()?;
                    let reply = query(&view, &asked)?;
                    let holders = exclusive_in_the_way(&view, &asked, &reply, session, now)?;
                    Ok((reply, holders))
                })
                .await?;
            if holders.is_empty() {
                return Ok(reply);
            }
            self.recall(&holders).await?;
        }
    }

    /// Runs `f` over the state after confirming leadership (linearizable), on a blocking
    /// thread.
    pub async fn read_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, NamespaceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        self.raft.confirm_leader().await?;
        self.local_read(f).await
    }

    /// Runs `f` over what this member has applied, without confirming anything, on a
    /// blocking thread (the store is synchronous).
    pub async fn local_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbStore) -> Result<T, NamespaceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    /// Adds, removes or transfers to a member, one change at a time (Raft refuses it on a
    /// follower).
    pub async fn change_membership(
        &self,
        change: MembershipChange,
    ) -> Result<String, ServiceError> {
        self.raft.change_membership(change).await
    }
}
