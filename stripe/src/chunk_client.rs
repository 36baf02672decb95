//! [`ChunkClient`]: the chunk service as the mount, repair workers and admin tools use it.
//!
//! One [`tessera_rpc::Client`] per chunkserver address, created on first use and shared by
//! every call to that server (it multiplexes them over one small-call and one bulk
//! connection). Every call has a deadline from [`ChunkClientConfig`]. Puts, reads and
//! deletes of one stripe go to all their servers at once.
//!
//! Servers are named by id in layouts; the caller maps ids to addresses (it learns them from
//! the metadata service), passed as an [`Addrs`] function.
//!
//! No chunkserver is trusted with the bytes it returns: a whole shard is hashed here, a range
//! is checked with the proof that comes with it (`tessera_proto::proof`), both against the
//! shard id from the layout, before any byte is used. A reply that fails is a bad reply
//! ([`ReadAudit`]): the read goes on from other shards and the shard is reported.

mod audit;
mod health;
mod read;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    ByteRange, DeleteShard, DeleteShardRequest, GetShard, GetShardRequest, PutOutcome, PutShard,
    PutShardRequest, ShardProof,
};
use tessera_proto::fs::{ShardPlace, StripeInfo};
use tessera_proto::proof;
use tessera_rpc::{Client, RpcConfig, Secret};
use tracing::debug;

use crate::codec::{Codec, Encoded};
use crate::error::{CodecError, DeleteError, Failures, PutError, ShardFailure, ShardFault};
use tasks::Tasks;

pub use audit::ReadAudit;
pub use health::Health;

/// Maps a chunkserver id to its "host:port", `None` if unknown. `Sync` so that the futures
/// of this client stay `Send`.
pub type Addrs<'a> = &'a (dyn Fn(u64) -> Option<String> + Sync);

/// Deadlines and transport settings of a [`ChunkClient`].
#[derive(Debug, Clone)]
pub struct ChunkClientConfig {
    pub rpc: RpcConfig,
    /// Deadline of one shard put. The server fsyncs before it answers, so this covers a
    /// slow disk too; a put that misses it is reported as failed, to be placed elsewhere.
    pub put_timeout: Duration,
    /// The longest a read waits for a data shard before it also fetches other shards to
    /// reconstruct from (and again every such interval): the ceiling of each server's learnt
    /// hedge delay (`Health::hedge_delay`), and the wait until its latency is known.
    pub slow_shard: Duration,
    /// Deadline of a whole read (or rebuild), fallbacks included.
    pub read_timeout: Duration,
    /// Deadline of one shard delete.
    pub delete_timeout: Duration,
    /// Ranged reads ask for whole multiples of this many bytes (a power of two, at least
    /// BLAKE3's 1 KiB chunk): the reply is checked against the shard id with a proof, which
    /// covers whole chunks, and the range is cut out after. The default, 4 KiB, is the page
    /// the kernel reads in, so a 4 KiB random read asks for no more than it needs.
    pub read_align: u64,
}

impl Default for ChunkClientConfig {
    fn default() -> Self {
        ChunkClientConfig {
            rpc: RpcConfig::default(),
            put_timeout: Duration::from_secs(20),
            slow_shard: Duration::from_secs(2),
            read_timeout: Duration::from_secs(20),
            delete_timeout: Duration::from_secs(10),
            read_align: DEFAULT_READ_ALIGN,
        }
    }
}

/// Default of [`ChunkClientConfig::read_align`].
pub const DEFAULT_READ_ALIGN: u64 = 4096;

/// Calls chunkservers on behalf of one process. Share it (`Arc`); it is `Send + Sync`.
#[derive(Debug)]
pub struct ChunkClient {
    secret: Secret,
    config: ChunkClientConfig,
    peers: Mutex<HashMap<String, Arc<Client>>>,
    /// Codecs by `(k, m)`: building one inverts matrices, and each keeps a cache of the
    /// decode matrices it has used.
    codecs: Mutex<HashMap<(u8, u8), Arc<Codec>>>,
    audit: Arc<ReadAudit>,
    health: Arc<Health>,
}

/// When a put of several shards may return before every server has answered: once `need`
/// shards are stored, the others get `grace` more (or three times what the `need` took, if
/// longer), then are given up (and counted as unanswered, which quarantines their servers
/// in [`Health`]).
#[derive(Debug, Clone, Copy)]
pub struct Quorum {
    pub need: usize,
    pub grace: Duration,
}

impl ChunkClient {
    pub fn new(secret: Secret, mut config: ChunkClientConfig) -> ChunkClient {
        config.read_align = config
            .read_align
            .max(proof::CHUNK_LEN)
            .checked_next_power_of_two()
            .unwrap_or(DEFAULT_READ_ALIGN);
        ChunkClient {
            secret,
            config,
            peers: Mutex::new(HashMap::new()),
            codecs: Mutex::new(HashMap::new()),
            audit: Arc::new(ReadAudit::new()),
            health: Arc::new(Health::default()),
        }
    }

    /// Which servers this client's own calls found unreachable, and their latencies.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn config(&self) -> &ChunkClientConfig {
        &self.config
    }

    /// What this client's reads verified, and the bad replies they caught.
    pub fn audit(&self) -> &Arc<ReadAudit> {
        &self.audit
    }

    /// The shared client for `addr`, created on first use; for calls this type does not
    /// wrap (repair and sweep requests).
    pub fn peer(&self, addr: &str) -> Arc<Client> {
        // A poisoned lock only means another caller panicked between two map operations;
        // the map itself is always whole.
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(Client::new(
                    addr,
                    self.secret.clone(),
                    self.config.rpc.clone(),
                ))
            })
            .clone()
    }

    /// The codec for `k + m`, built on first use.
    pub fn codec(&self, k: u8, m: u8) -> Result<Arc<Codec>, CodecError> {
        let mut codecs = self.codecs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = codecs.get(&(k, m)) {
            return Ok(c.clone());
        }
        let codec = Arc::new(Codec::new(usize::from(k), usize::from(m))?);
        codecs.insert((k, m), codec.clone());
        Ok(codec)
    }

    /// Stores shard `i` of `encoded` on `targets[i]` (server id, address), all at once.
    /// Succeeds when every chunkserver has acknowledged its shard, which it does only once
    /// the shard is on stable storage. On failure the error lists the failed shards (with
    /// the cause: `NoSpace`, unreachable, timed out...) and where the others were stored:
    /// retry just the failed ones on other servers with [`Self::put_shards_at`].
    pub async fn put_shards(
        &self,
        encoded: &Encoded,
        targets: &[(u64, String)],
    ) -> Result<Vec<ShardPlace>, PutError> {
        if targets.len() != encoded.shards.len() {
            return Err(PutError::TargetCount {
                stripe: encoded.stripe_id,
                want: encoded.shards.len(),
                got: targets.len(),
            });
        }
        let indexed: Vec<(usize, u64, String)> = targets
            .iter()
            .enumerate()
            .map(|(i, (server, addr))| (i, *server, addr.clone()))
            .collect();
        self.put_shards_at(encoded, &indexed).await
    }

    /// Stores the listed shards of `encoded`: `(index, server id, address)` each, all at
    /// once. Returns their places in the order given. Errors as [`Self::put_shards`].
    pub async fn put_shards_at(
        &self,
        encoded: &Encoded,
        targets: &[(usize, u64, String)],
    ) -> Result<Vec<ShardPlace>, PutError> {
        self.put_shards_until(encoded, targets, None).await
    }

    /// [`Self::put_shards_at`], returning early as `quorum` allows: then the error's
    /// `stored` may hold enough shards for the caller to go on without the rest.
    pub async fn put_shards_until(
        &self,
        encoded: &Encoded,
        targets: &[(usize, u64, String)],
        quorum: Option<Quorum>,
    ) -> Result<Vec<ShardPlace>, PutError> {
        let stripe = encoded.stripe_id;
        // Both vectors are public fields: never index past the shorter.
        let total = encoded.shards.len().min(encoded.ids.len());
        let mut servers = HashSet::new();
        for (index, server, _) in targets {
            if *index >= total {
                return Err(PutError::NoSuchShard {
                    stripe,
                    index: *index,
                    total,
                });
            }
            if !servers.insert(*server) {
                return Err(PutError::DuplicateServer {
                    stripe,
                    server: *server,
                });
            }
        }
        let mut tasks = Tasks::new();
        let started = tokio::time::Instant::now();
        for (pos, (index, _, addr)) in targets.iter().enumerate() {
            let client = self.peer(addr);
            let (id, bytes) = (encoded.ids[*index], encoded.shards[*index].clone());
            let timeout = self.config.put_timeout;
            tasks.spawn(
                pos,
                async move { put_on(&client, id, bytes, timeout).await },
            );
        }
        let mut outcomes: Vec<Option<Result<(), ShardFault>>> = vec![None; targets.len()];
        let mut stored_count = 0;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        loop {
            let next = match give_up_at {
                Some(at) => match tokio::time::timeout_at(at, tasks.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => tasks.next().await,
            };
            let Some((pos, joined)) = next else { break };
            let outcome = joined.unwrap_or_else(|reason| Err(ShardFault::Lost { reason }));
            let server = targets[pos].1;
            match &outcome {
                Ok(()) => {
                    // A put's time (an fsync included) is an upper bound of a read's: a fair
                    // first guess of the server's latency before any read was timed.
                    self.health.answered(server, started.elapsed(), true);
                    stored_count += 1;
                }
                Err(fault) => {
                    self.health.failed(server, fault);
                }
            }
            outcomes[pos] = Some(outcome);
            if let Some(q) = quorum.filter(|q| give_up_at.is_none() && stored_count >= q.need) {
                // A slow quorum means slow servers, not lost ones: the rest get longer.
                let grace = q.grace.max(started.elapsed() * 3);
                give_up_at = Some(tokio::time::Instant::now() + grace);
            }
        }
        // Given up on (the quorum's grace ran out): unanswered, and dropping `tasks` aborts
        // their calls.
        let ms = started.elapsed().as_millis() as u64;
        for (pos, outcome) in outcomes.iter_mut().enumerate() {
            if outcome.is_none() {
                let fault = ShardFault::Unanswered { ms };
                self.health.failed(targets[pos].1, &fault);
                *outcome = Some(Err(fault));
            }
        }
        drop(tasks);
        let mut stored = Vec::new();
        let mut failures = Vec::new();
        for ((index, server, _), outcome) in targets.iter().zip(outcomes) {
            let place = ShardPlace {
                shard: encoded.ids[*index],
                server: *server,
            };
            match outcome {
                Some(Ok(())) => stored.push((*index, place)),
                Some(Err(fault)) => failures.push(ShardFailure {
                    index: *index,
                    shard: place.shard,
                    server: *server,
                    fault,
                }),
                None => failures.push(ShardFailure {
                    index: *index,
                    shard: place.shard,
                    server: *server,
                    fault: ShardFault::Lost {
                        reason: "no result".into(),
                    },
                }),
            }
        }
        if failures.is_empty() {
            return Ok(stored.into_iter().map(|(_, place)| place).collect());
        }
        for f in &failures {
            debug!(%stripe, "put failed: {f}");
        }
        stored.sort_by_key(|(index, _)| *index);
        Err(PutError::Failed {
            stripe,
            stored,
            failures: Failures(failures),
        })
    }

    /// Stores one shard on the server at `addr` (repair puts a rebuilt shard this way).
    pub async fn put_shard(&self, addr: &str, id: ShardId, bytes: Bytes) -> Result<(), ShardFault> {
        put_on(&self.peer(addr), id, bytes, self.config.put_timeout).await
    }

    /// Reads shard `id` (or `range` of it) from the server at `addr`, within the read
    /// deadline, checked against `id` here (the whole shard hashed, a range by its proof).
    pub async fn get_shard(
        &self,
        addr: &str,
        id: ShardId,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Bytes, ShardFault> {
        let get = Get {
            client: self.peer(addr),
            audit: self.audit.clone(),
            id,
            shard_len: None,
            timeout: self.config.read_timeout,
        };
        match range {
            None => get.whole().await,
            Some(r) => get.range(r, self.config.read_align).await,
        }
    }

    /// Deletes every shard of `stripe`, all at once; for garbage collection. Shards already
    /// gone count as deleted. The error lists the shards that may remain.
    pub async fn delete_shards(
        &self,
        stripe: &StripeInfo,
        addrs: Addrs<'_>,
    ) -> Result<(), DeleteError> {
        let mut failures = Vec::new();
        let mut tasks = Tasks::new();
        for (index, place) in stripe.layout.shards.iter().enumerate() {
            let fail = |fault| ShardFailure {
                index,
                shard: place.shard,
                server: place.server,
                fault,
            };
            let Some(addr) = addrs(place.server) else {
                failures.push(fail(ShardFault::NoAddress {
                    server: place.server,
                }));
                continue;
            };
            let client = self.peer(&addr);
            let (id, timeout) = (place.shard, self.config.delete_timeout);
            tasks.spawn(
                fail(ShardFault::Lost {
                    reason: String::new(),
                }),
                async move {
                    let req = DeleteShardRequest {
                        id,
                        min_age_ms: None,
                    };
                    match client
                        .call_with::<DeleteShard>(&req, Bytes::new(), timeout)
                        .await
                    {
                        Ok((Ok(_), _)) => Ok(()),
                        Ok((Err(e), _)) => Err(ShardFault::Chunk(e)),
                        Err(e) => Err(ShardFault::Rpc(e)),
                    }
                },
            );
        }
        while let Some((mut failure, joined)) = tasks.next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(fault)) => {
                    failure.fault = fault;
                    failures.push(failure);
                }
                Err(reason) => {
                    failure.fault = ShardFault::Lost { reason };
                    failures.push(failure);
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        failures.sort_by_key(|f| f.index);
        Err(DeleteError {
            stripe: stripe.id,
            failures: Failures(failures),
        })
    }
}

async fn put_on(
    client: &Client,
    id: ShardId,
    bytes: Bytes,
    timeout: Duration,
) -> Result<(), ShardFault> {
    let req = PutShardRequest { id };
    match client.call_with::<PutShard>(&req, bytes, timeout).await {
        Ok((Ok(PutOutcome::Stored | PutOutcome::AlreadyPresent), _)) => Ok(()),
        Ok((Err(e), _)) => Err(ShardFault::Chunk(e)),
        Err(e) => Err(ShardFault::Rpc(e)),
    }
}

/// One shard read, checked against the shard id before its bytes are returned.
struct Get {
    client: Arc<Client>,
    audit: Arc<ReadAudit>,
    id: ShardId,
    /// The shard's length from the stripe layout, when the caller has one; else the server's
    /// word is taken (safe: a proof for another length cannot hash to the id).
    shard_len: Option<u64>,
    timeout: Duration,
}

impl Get {
    /// The whole shard: its length and its hash.
    async fn whole(&self) -> Result<Bytes, ShardFault> {
        let (reply, bytes) = self.call(None).await?;
        let want = self.shard_len.unwrap_or(reply.len);
        if bytes.len() as u64 != want {
            return Err(ShardFault::WrongLength {
                got: bytes.len() as u64,
                want,
            });
        }
        let got = ShardId::of(&bytes);
        if got != self.id {
            return Err(ShardFault::WrongHash { got });
        }
        self.audit.verified(true, bytes.len());
        Ok(bytes)
    }

    /// Bytes `range` of the shard: asked for widened to whole multiples of `align` (when the
    /// shard length is known), checked with the reply's proof, then cut out.
    async fn range(&self, range: std::ops::Range<u64>, align: u64) -> Result<Bytes, ShardFault> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let asked = match self.shard_len {
            Some(len) => proof::widen(&range, len, align),
            None => range.clone(),
        };
        let (reply, bytes) = self.call(Some(asked.clone())).await?;
        let len = self.shard_len.unwrap_or(reply.len);
        let span = proof::span_of(&asked, len);
        if span.start > range.start || range.end > span.end {
            return Err(ShardFault::BadProof(proof::ProofError::BadSpan {
                start: range.start,
                end: range.end,
                len,
            }));
        }
        proof::verify(&self.id, len, &span, &bytes, &reply.cvs).map_err(ShardFault::from_proof)?;
        self.audit.verified(false, bytes.len());
        let at = (range.start - span.start) as usize;
        Ok(bytes.slice(at..at + (range.end - range.start) as usize))
    }

    async fn call(
        &self,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(ShardProof, Bytes), ShardFault> {
        let req = GetShardRequest {
            id: self.id,
            range: range.map(|r| ByteRange {
                start: r.start,
                end: r.end,
            }),
        };
        match self
            .client
            .call_with::<GetShard>(&req, Bytes::new(), self.timeout)
            .await
        {
            Ok((Ok(proof), bytes)) => Ok((proof, bytes)),
            Ok((Err(e), _)) => Err(ShardFault::Chunk(e)),
            Err(e) => Err(ShardFault::Rpc(e)),
        }
    }
}
