//! RPC handlers of the metadata service: namespace writes through Raft, linearizable reads,
//! the status and digest every member answers, and the calls only the leader answers
//! (chunkserver table, placement, stripe health, membership). Every handler works through
//! the [`Replica`]; leader-only calls are registered through one guard, `LeaderOnly`.

use crate::chunk_registry::ChunkRegistry;
use crate::replica::Replica;
use crate::upkeep::Rebalancer;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tessera_proto::Rpc;
use tessera_proto::cluster::{ChunkHeartbeat, RegisterChunkserver};
use tessera_proto::fs::FsError;
use tessera_proto::meta::{
    ChangeMembership, ClusterHealth, DigestReply, DrainChunkserver, ListChunkservers, MetaRead,
    MetaStatus, MetaStatusReply, MetaWrite, Op, PlaceStripe, PlaceStripes, ReadRequest, Rebalance,
    Reply, ReportReachability, ReportShards, ServiceError, StateDigest, StripeHealth, WaitRecall,
    WriteRequest,
};
use tessera_rpc::{Call, Router};

/// The metadata service of one member.
#[derive(Debug, Clone)]
pub struct MetaService {
    replica: Replica,
    registry: Arc<ChunkRegistry>,
    rebalancer: Arc<Rebalancer>,
}

impl MetaService {
    /// A service answering from `replica`, with the leader's chunkserver table and the
    /// rebalance task's controls.
    pub fn new(
        replica: Replica,
        registry: Arc<ChunkRegistry>,
        rebalancer: Arc<Rebalancer>,
    ) -> Self {
        Self {
            replica,
            registry,
            rebalancer,
        }
    }

    /// Proposes a change and waits until it is committed and applied.
    pub async fn write(&self, req: WriteRequest) -> Result<Reply, ServiceError> {
        // A stripe with fewer stored shards than the write rule asks is refused before it
        // reaches the log: `fsync` promises that many, whatever a mount was told.
        if let Op::CommitSlice { stripes, .. } = &req.op
            && let Some(short) = stripes.iter().find(|s| !self.registry.enough_stored(s))
        {
            tracing::warn!(stripe = %short.id, "refused a commit of a stripe with too few stored shards");
            return Ok(Err(FsError::Io));
        }
        self.replica.propose(req).await
    }

    /// Reads after confirming leadership (shared with other reads queued at the same time).
    pub async fn read(&self, req: ReadRequest) -> Result<Reply, ServiceError> {
        self.replica.read_as(req.session, req.query).await
    }

    /// This member's view of the group.
    pub fn status(&self) -> MetaStatusReply {
        let s = self.replica.status();
        MetaStatusReply {
            id: s.id,
            role: s.role.name().into(),
            term: s.term,
            leader: s.leader(),
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            members: s.members,
        }
    }

    /// Digest of this member's state and the index it reflects.
    pub async fn digest(&self) -> Result<DigestReply, ServiceError> {
        let (pos, digest) = self.replica.local_read(|store| store.digest_at()).await?;
        Ok(DigestReply {
            applied_index: pos.map_or(0, |p| p.index),
            digest,
        })
    }

    /// Healthy, degraded and lost stripes against the chunkserver table.
    /// File bytes preallocated and not written yet, which placement keeps room for (0 when
    /// the state cannot be read: placement then holds nothing back).
    async fn reserved_bytes(&self) -> u64 {
        self.replica
            .local_read(|store| tessera_namespace::reserved_bytes(&store.read_view()?))
            .await
            .unwrap_or(0)
    }

    async fn health(&self) -> Result<StripeHealth, ServiceError> {
        let registry = self.registry.clone();
        self.replica
            .local_read(move |store| crate::health::stripe_health(store, &registry))
            .await
    }

    /// Adds the service's methods to a router.
    pub fn routes(self, router: Router) -> Router {
        let router = self.clone().cluster_routes(router);
        let router = crate::backup::routes(router, self.replica.clone());
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

    /// Chunkserver registration and heartbeats, chunkserver listing, draining and
    /// rebalancing, damaged shard reports, stripe placement, stripe health, membership
    /// changes and the mounts' recall polls: all answered by the leader only (from its
    /// chunkserver table, its recall board, or through Raft).
    fn cluster_routes(self, router: Router) -> Router {
        LeaderOnly::new(router, self)
            .route::<RegisterChunkserver, _, _>(|svc, call| async move {
                svc.registry.register(call.req);
                Ok(())
            })
            .route::<ChunkHeartbeat, _, _>(
                |svc, call| async move { svc.registry.heartbeat(call.req) },
            )
            .route::<ListChunkservers, _, _>(|svc, _call| async move { Ok(svc.registry.list()) })
            .route::<DrainChunkserver, _, _>(|svc, call| async move {
                svc.registry.set_draining(call.req.id, call.req.drain);
                Ok(())
            })
            .route::<Rebalance, _, _>(|svc, call| async move {
                if call.req.start {
                    svc.rebalancer.request();
                }
                Ok(svc.rebalancer.status(&svc.registry.list()))
            })
            .route::<ReportShards, _, _>(|svc, call| async move {
                svc.registry.add_reports(call.req);
                Ok(())
            })
            .route::<PlaceStripe, _, _>(|svc, call| async move {
                let reserved = svc.reserved_bytes().await;
                svc.registry.place(&call.req, reserved)
            })
            .route::<ReportReachability, _, _>(|svc, call| async move {
                svc.registry.report_reachability(call.req);
                Ok(svc.registry.write_settings())
            })
            .route::<ClusterHealth, _, _>(|svc, _call| async move { svc.health().await })
            .route::<ChangeMembership, _, _>(|svc, call| async move {
                svc.replica.change_membership(call.req).await
            })
            .route::<PlaceStripes, _, _>(|svc, call| async move {
                let reserved = svc.reserved_bytes().await;
                svc.registry.place_many(&call.req, reserved)
            })
            .route::<WaitRecall, _, _>(|svc, call| async move {
                let wait = Duration::from_millis(call.req.wait_ms.into());
                Ok(svc.replica.wait_recall(call.req.session, wait).await)
            })
            .into_router()
    }
}

/// Registers calls only the leader answers: on a follower the guard ([`Replica::lead`])
/// replies `NotLeader`, with the leader's address when known, without running the handler.
struct LeaderOnly {
    router: Router,
    svc: MetaService,
}

impl LeaderOnly {
    fn new(router: Router, svc: MetaService) -> Self {
        Self { router, svc }
    }

    /// Adds `R`, answered by `f` on the leader. Whatever error type `R` replies with, it
    /// has a `NotLeader` variant the guard's refusal converts into.
    fn route<R, F, Fut>(self, f: F) -> Self
    where
        R: Rpc,
        F: Fn(MetaService, Call<R::Request>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = R::Reply> + Send + 'static,
        R::Reply: Refusable,
    {
        let svc = self.svc.clone();
        let router = self.router.route::<R, _, _>(move |call| {
            let (svc, f) = (svc.clone(), f.clone());
            async move {
                let reply = match svc.replica.lead() {
                    Ok(()) => f(svc, call).await,
                    Err(not_leader) => R::Reply::refused(not_leader),
                };
                (reply, Bytes::new())
            }
        });
        Self { router, ..self }
    }

    fn into_router(self) -> Router {
        self.router
    }
}

/// A reply type that can say "not the leader".
trait Refusable {
    fn refused(not_leader: crate::raft::NotLeader) -> Self;
}

impl<T, E: From<crate::raft::NotLeader>> Refusable for Result<T, E> {
    fn refused(not_leader: crate::raft::NotLeader) -> Self {
        Err(not_leader.into())
    }
}
