//! The chunk service's RPC handlers: each decodes nothing itself (the router does), runs one
//! whole store operation on the blocking pool, and turns store errors into wire errors.
//!
//! A put's payload moves into the blocking closure and is dropped as soon as the store has
//! written it; a get's bytes move straight into the reply payload. Neither is copied here.
//! If the caller gives up, the handler future is dropped but the store operation finishes:
//! a put is never abandoned half-way, so the store's own crash safety is all that matters.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    ByteRange, ChunkError, DeleteOutcome, DeleteShard, GetShard, ListShards, ListedShard,
    MAX_LIST_PAGE, PutOutcome, PutShard, RebuildShard, RebuildShardRequest, Rebuilt, ShardPage,
    ShardProof, ShardStat, StatShard,
};
use tessera_proto::cluster::MAX_REPORTED_SHARDS;
use tessera_rpc::{Call, Router};
use tessera_stripe::ChunkClient;

use crate::error::Error;
use crate::health::Health;
use crate::lie::Liar;
use crate::store::{self, ShardStore};

/// Stripes of the per-id lock table: a put and a conditional delete of the same id never
/// interleave, while different ids rarely share a lock.
const ID_LOCKS: usize = 64;

/// The chunk service: a store, the health record its errors feed, and a chunk client for
/// reading other servers' shards when rebuilding one here.
#[derive(Clone)]
pub struct ChunkService {
    store: Arc<dyn ShardStore>,
    health: Arc<Health>,
    peers: Arc<ChunkClient>,
    id_locks: Arc<[std::sync::Mutex<()>]>,
    /// Set only in fault tests of debug builds (`lie.rs`).
    liar: Option<Arc<Liar>>,
}

impl std::fmt::Debug for ChunkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkService").finish_non_exhaustive()
    }
}

impl ChunkService {
    pub fn new(
        store: Arc<dyn ShardStore>,
        health: Arc<Health>,
        peers: Arc<ChunkClient>,
        liar: Option<Arc<Liar>>,
    ) -> ChunkService {
        let id_locks = (0..ID_LOCKS).map(|_| std::sync::Mutex::new(())).collect();
        ChunkService {
            store,
            health,
            peers,
            id_locks,
            liar,
        }
    }

    /// A router answering every chunk service method (and ping, as role "chunk").
    pub fn router(self) -> Router {
        let s6 = self.clone();
        let (s1, s2, s3, s4, s5) = (self.clone(), self.clone(), self.clone(), self.clone(), self);
        Router::new("chunk")
            .route::<PutShard, _, _>(move |call| {
                let s = s1.clone();
                async move { (s.put(call).await, Bytes::new()) }
            })
            .route::<GetShard, _, _>(move |call| {
                let s = s2.clone();
                async move {
                    match s.get(call).await {
                        Ok((proof, bytes)) => (Ok(proof), bytes),
                        Err(e) => (Err(e), Bytes::new()),
                    }
                }
            })
            .route::<DeleteShard, _, _>(move |call| {
                let s = s3.clone();
                async move {
                    (
                        s.delete(call.req.id, call.req.min_age_ms).await,
                        Bytes::new(),
                    )
                }
            })
            .route::<StatShard, _, _>(move |call| {
                let s = s4.clone();
                async move { (s.stat(call.req.id).await, Bytes::new()) }
            })
            .route::<ListShards, _, _>(move |call| {
                let s = s5.clone();
                async move { (s.list(call.req).await, Bytes::new()) }
            })
            .route::<RebuildShard, _, _>(move |call| {
                let s = s6.clone();
                async move { (s.rebuild(call.req).await, Bytes::new()) }
            })
    }

    /// The lock serialising puts and deletes of `id`.
    fn id_lock<'a>(
        locks: &'a [std::sync::Mutex<()>],
        id: &ShardId,
    ) -> std::sync::MutexGuard<'a, ()> {
        let slot = usize::from(id.0[0]) % locks.len();
        locks[slot].lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn put(
        &self,
        call: Call<tessera_proto::chunk::PutShardRequest>,
    ) -> Result<PutOutcome, ChunkError> {
        if let Some(liar) = &self.liar {
            liar.saw_put(call.req.id, call.payload.len() as u64);
        }
        self.store_shard(call.req.id, call.payload).await
    }

    async fn store_shard(&self, id: ShardId, payload: Bytes) -> Result<PutOutcome, ChunkError> {
        let locks = self.id_locks.clone();
        let outcome = self
            .blocking(move |s| {
                let _g = Self::id_lock(&locks, &id);
                s.put(&id, payload)
            })
            .await?;
        // Space is back (or was never short): stop reporting the server as full.
        self.health.set_out_of_space(false);
        Ok(match outcome {
            store::PutOutcome::Stored => PutOutcome::Stored,
            store::PutOutcome::AlreadyPresent => PutOutcome::AlreadyPresent,
        })
    }

    /// A whole shard, or a range widened to whole 1 KiB chunks with its proof.
    async fn get(
        &self,
        call: Call<tessera_proto::chunk::GetShardRequest>,
    ) -> Result<(ShardProof, Bytes), ChunkError> {
        let id = call.req.id;
        let range = call.req.range.map(|ByteRange { start, end }| start..end);
        let liar = self.liar.clone();
        self.blocking(move |s| {
            let honest = match range.clone() {
                None => {
                    let bytes = s.get(&id, None)?;
                    let len = bytes.len() as u64;
                    (
                        ShardProof {
                            len,
                            cvs: Vec::new(),
                        },
                        bytes,
                    )
                }
                Some(r) => {
                    let p = s.get_proved(&id, r)?;
                    let proof = ShardProof {
                        len: p.len,
                        cvs: p.proof,
                    };
                    (proof, p.bytes)
                }
            };
            Ok(match liar {
                Some(l) => l.lie(s, &id, range, honest),
                None => honest,
            })
        })
        .await
    }

    /// Deletes a shard; with `min_age_ms`, only one not put for that long, checked and
    /// deleted under the id's lock so that a concurrent put of the same content wins.
    async fn delete(
        &self,
        id: ShardId,
        min_age_ms: Option<u64>,
    ) -> Result<DeleteOutcome, ChunkError> {
        let locks = self.id_locks.clone();
        let outcome = self
            .blocking(move |s| {
                let _g = Self::id_lock(&locks, &id);
                if let Some(ms) = min_age_ms {
                    match s.stat(&id)? {
                        None => return Ok(DeleteOutcome::NotPresent),
                        Some(st) if st.age < Duration::from_millis(ms) => {
                            return Ok(DeleteOutcome::Young);
                        }
                        Some(_) => {}
                    }
                }
                Ok(if s.delete(&id)? {
                    DeleteOutcome::Deleted
                } else {
                    DeleteOutcome::NotPresent
                })
            })
            .await?;
        if outcome == DeleteOutcome::Deleted {
            self.health.set_out_of_space(false);
        }
        Ok(outcome)
    }

    /// Rebuilds shard `index` of a stripe from the sources and stores it here. The reply
    /// names the sources that sent bytes failing verification (read around), for the leader
    /// to move those shards off them.
    async fn rebuild(&self, req: RebuildShardRequest) -> Result<Rebuilt, ChunkError> {
        let outcome = self.rebuild_here(req).await;
        // Whatever the outcome, the leader learns of the lies seen on the way.
        let bad_replies = self.peers.audit().take(MAX_REPORTED_SHARDS);
        match outcome {
            Ok(outcome) => Ok(Rebuilt {
                outcome,
                bad_replies,
            }),
            Err(e) => {
                self.peers.audit().requeue(bad_replies);
                Err(e)
            }
        }
    }

    async fn rebuild_here(&self, req: RebuildShardRequest) -> Result<PutOutcome, ChunkError> {
        let index = req.index as usize;
        let Some(place) = req.stripe.layout.shards.get(index) else {
            return Err(ChunkError::Rebuild {
                id: ShardId([0; 32]),
                reason: format!("the stripe has no shard {index}"),
            });
        };
        let id = place.shard;
        // Already here and readable (a repeated request): nothing to do.
        let probe = self.blocking(move |s| s.get(&id, None)).await;
        if probe.is_ok() {
            return Ok(PutOutcome::AlreadyPresent);
        }
        // A move (rebalance) names the shard's own server among the sources: copy the shard
        // from there, checked against its id, instead of decoding it from k others.
        let holder = req.sources.iter().find(|(sid, _)| *sid == place.server);
        if let Some((_, addr)) = holder {
            match self.peers.get_shard(addr, id, None).await {
                Ok(bytes) => {
                    let outcome = self.store_shard(id, bytes).await?;
                    tracing::info!(shard = %id, stripe = %req.stripe.id, from = %addr, "copied a shard");
                    return Ok(outcome);
                }
                Err(e) => {
                    tracing::warn!(shard = %id, from = %addr, "cannot copy a shard, rebuilding it from the others: {e}");
                }
            }
        }
        let sources = req.sources;
        let addrs = move |server: u64| {
            sources
                .iter()
                .find(|(sid, _)| *sid == server)
                .map(|(_, a)| a.clone())
        };
        let bytes = self
            .peers
            .rebuild_shard(&req.stripe, &addrs, index)
            .await
            .map_err(|e| ChunkError::Rebuild {
                id,
                reason: e.to_string(),
            })?;
        let outcome = self.store_shard(id, bytes).await?;
        tracing::info!(shard = %id, stripe = %req.stripe.id, "rebuilt a shard");
        Ok(outcome)
    }

    async fn stat(&self, id: ShardId) -> Result<Option<ShardStat>, ChunkError> {
        let stat = self.blocking(move |s| s.stat(&id)).await?;
        Ok(stat.map(|st| ShardStat {
            len: st.len,
            age_ms: millis(st.age),
        }))
    }

    async fn list(
        &self,
        req: tessera_proto::chunk::ListShardsRequest,
    ) -> Result<ShardPage, ChunkError> {
        let limit = req.limit.clamp(1, MAX_LIST_PAGE) as usize;
        let after = req.after;
        let page = self
            .blocking(move |s| match req.older_than_ms {
                Some(ms) => s.list_older_than(Duration::from_millis(ms), after.as_ref(), limit),
                None => s.list(after.as_ref(), limit),
            })
            .await?;
        Ok(ShardPage {
            shards: page
                .shards
                .iter()
                .map(|sh| ListedShard {
                    id: sh.id,
                    age_ms: millis(sh.age),
                })
                .collect(),
            next: page.next,
        })
    }

    /// Runs one store operation on the blocking pool and maps its error for the wire.
    async fn blocking<T, F>(&self, op: F) -> Result<T, ChunkError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn ShardStore) -> crate::Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || op(store.as_ref())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.to_wire(e)),
            Err(join) => {
                tracing::error!(error = %join, "store operation panicked");
                Err(ChunkError::Io {
                    message: "internal error in the chunkserver; see its log".into(),
                })
            }
        }
    }

    /// The one place store errors become wire errors, and the place findings are recorded.
    fn to_wire(&self, e: Error) -> ChunkError {
        match e {
            Error::Corrupt { id, damage } => {
                self.health.corrupt(id);
                ChunkError::Corrupt {
                    id,
                    reason: damage.to_string(),
                }
            }
            Error::NotFound { id } => ChunkError::NotFound { id },
            Error::NoSpace { id, needed } => {
                self.health.set_out_of_space(true);
                ChunkError::NoSpace { id, needed }
            }
            Error::WrongHash { expected, actual } => ChunkError::WrongHash { expected, actual },
            Error::TooLarge { id, len, max } => ChunkError::TooLarge { id, len, max },
            Error::BadRange {
                id,
                start,
                end,
                len,
            } => ChunkError::BadRange {
                id,
                start,
                end,
                len,
            },
            Error::UnsupportedFormat { id, version } => {
                ChunkError::UnsupportedFormat { id, version }
            }
            other => {
                tracing::warn!(error = %other, "chunk service call failed");
                ChunkError::Io {
                    message: other.to_string(),
                }
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
