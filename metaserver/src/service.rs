//! RPC handlers of the metadata service: namespace writes through Raft, linearizable reads,
//! and the status and digest every member answers.

use crate::chunk_registry::ChunkRegistry;
use crate::namespace::{Command, RedbStore, query};
use crate::raft::types::{NodeId, Raft};
use crate::read_gate::ReadGate;
use bytes::Bytes;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tessera_proto::cluster::{ChunkHeartbeat, ClusterError, RegisterChunkserver};
use tessera_proto::meta::{
    ChangeMembership, ClusterHealth, DigestReply, DrainChunkserver, ListChunkservers, MetaRead,
    MetaStatus, MetaStatusReply, MetaWrite, PlaceStripe, PlaceStripes, ReadRequest, Reply,
    ReportShards, ServiceError, StateDigest, WriteRequest,
};
use tessera_rpc::Router;

/// The metadata service of one member.
#[derive(Debug, Clone)]
pub struct MetaService {
    id: NodeId,
    raft: Raft,
    store: Arc<RedbStore>,
    reads: ReadGate,
    registry: Arc<ChunkRegistry>,
    /// Membership changes run one at a time.
    membership: Arc<tokio::sync::Mutex<()>>,
}

/// Wall-clock time for the leader to stamp into a command.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable {
        reason: e.to_string(),
    }
}

impl MetaService {
    /// A service answering for member `id`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        store: Arc<RedbStore>,
        registry: Arc<ChunkRegistry>,
    ) -> Self {
        Self {
            id,
            raft,
            store,
            reads: ReadGate::default(),
            registry,
            membership: Arc::default(),
        }
    }

    /// The chunkserver table (meaningful on the leader).
    pub fn registry(&self) -> &Arc<ChunkRegistry> {
        &self.registry
    }

    /// The namespace store.
    pub fn store(&self) -> &Arc<RedbStore> {
        &self.store
    }

    /// `Err(address of the leader, if known)` unless this member leads.
    pub(crate) fn require_leader(&self) -> Result<(), Option<String>> {
        if self.raft.is_leader() {
            return Ok(());
        }
        Err(self.status().leader.map(|(_, addr)| addr))
    }

    /// Proposes a change and waits until it is committed and applied.
    pub async fn write(&self, req: WriteRequest) -> Result<Reply, ServiceError> {
        let cmd = Command {
            session: req.session,
            seq: req.seq,
            seq_floor: req.seq_floor,
            now_ns: now_ns(),
            op: req.op,
        };
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(e) => Err(match e.forward_to_leader() {
                Some(f) => ServiceError::NotLeader {
                    leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
                },
                None => unavailable(e),
            }),
        }
    }

    /// Confirms that this member still leads (a read index), so a read of the local state
    /// afterwards is linearizable.
    pub(crate) async fn confirm_leader(&self) -> Result<(), ServiceError> {
        self.reads.confirm(&self.raft).await
    }

    /// Reads after confirming leadership (shared with other reads queued at the same time).
    pub async fn read(&self, req: ReadRequest) -> Result<Reply, ServiceError> {
        self.reads.confirm(&self.raft).await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let view = store.read_view().map_err(unavailable)?;
            query(&view, &req.query).map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }

    /// This member's view of the group.
    pub fn status(&self) -> MetaStatusReply {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let members: Vec<(u64, String)> = m
            .membership_config
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let leader = m.current_leader.and_then(|l| {
            members
                .iter()
                .find(|(id, _)| *id == l)
                .map(|(id, a)| (*id, a.clone()))
        });
        MetaStatusReply {
            id: self.id,
            role: role.into(),
            term: m.current_term,
            leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
        }
    }

    /// Digest of this member's state and the index it reflects.
    pub async fn digest(&self) -> Result<DigestReply, ServiceError> {
        let store = self.store.clone();
        let (pos, digest) = tokio::task::spawn_blocking(move || store.digest_at())
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(DigestReply {
            applied_index: pos.map_or(0, |p| p.index),
            digest,
        })
    }

    /// Adds the service's methods to a router.
    pub fn routes(self, router: Router) -> Router {
        let router = self.clone().cluster_routes(router);
        let router = self.clone().backup_routes(router);
        let (w, r, s, d) = (self.clone(), self.clone(), self.clone(), self);
        router
            .route::<MetaWrite, _, _>(move |call| {
                let svc = w.clone();
                async move { (svc.write(call.req).await, Bytes::new()) }
            })
            .route::<MetaRead, _, _>(move |call| {
                let svc = r.clone();
                async move { (svc.read(call.req).await, Bytes::new()) }
            })
            .route::<MetaStatus, _, _>(move |_call| {
                let svc = s.clone();
                async move { (svc.status(), Bytes::new()) }
            })
            .route::<StateDigest, _, _>(move |_call| {
                let svc = d.clone();
                async move { (svc.digest().await, Bytes::new()) }
            })
    }

    /// Chunkserver registration and heartbeats, chunkserver listing and stripe placement:
    /// all answered by the leader only, from its chunkserver table.
    fn cluster_routes(self, router: Router) -> Router {
        let (reg, hb, list, place) = (self.clone(), self.clone(), self.clone(), self.clone());
        let report = self.clone();
        let place_many = self.clone();
        let members = self.clone();
        let drain = self.clone();
        let health = self;
        router
            .route::<DrainChunkserver, _, _>(move |call| {
                let svc = drain.clone();
                async move {
                    let reply = svc
                        .require_leader()
                        .map(|()| svc.registry.set_draining(call.req.id, call.req.drain))
                        .map_err(|leader| ServiceError::NotLeader { leader });
                    (reply, Bytes::new())
                }
            })
            .route::<ChangeMembership, _, _>(move |call| {
                let svc = members.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => {
                            crate::membership::change(&svc.raft, &svc.membership, call.req).await
                        }
                        Err(leader) => Err(ServiceError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
            .route::<ReportShards, _, _>(move |call| {
                let svc = report.clone();
                async move {
                    let reply = svc
                        .require_leader()
                        .map(|()| svc.registry.add_reports(call.req))
                        .map_err(|leader| ServiceError::NotLeader { leader });
                    (reply, Bytes::new())
                }
            })
            .route::<ClusterHealth, _, _>(move |_call| {
                let svc = health.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => {
                            let (store, registry) = (svc.store.clone(), svc.registry.clone());
                            tokio::task::spawn_blocking(move || {
                                crate::health::stripe_health(&store, &registry)
                            })
                            .await
                            .map_err(unavailable)
                            .and_then(|r| r.map_err(unavailable))
                        }
                        Err(leader) => Err(ServiceError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
            .route::<RegisterChunkserver, _, _>(move |call| {
                let svc = reg.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => {
                            svc.registry.register(call.req);
                            Ok(())
                        }
                        Err(leader) => Err(ClusterError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
            .route::<ChunkHeartbeat, _, _>(move |call| {
                let svc = hb.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => svc.registry.heartbeat(call.req),
                        Err(leader) => Err(ClusterError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
            .route::<ListChunkservers, _, _>(move |_call| {
                let svc = list.clone();
                async move {
                    let reply = svc
                        .require_leader()
                        .map(|()| svc.registry.list())
                        .map_err(|leader| ServiceError::NotLeader { leader });
                    (reply, Bytes::new())
                }
            })
            .route::<PlaceStripe, _, _>(move |call| {
                let svc = place.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => svc.registry.place(&call.req),
                        Err(leader) => Err(ServiceError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
            .route::<PlaceStripes, _, _>(move |call| {
                let svc = place_many.clone();
                async move {
                    let reply = match svc.require_leader() {
                        Ok(()) => svc.registry.place_many(&call.req),
                        Err(leader) => Err(ServiceError::NotLeader { leader }),
                    };
                    (reply, Bytes::new())
                }
            })
    }
}
