//! The metadata client: finds the leader, follows `NotLeader` hints, and retries every call
//! with backoff until a deadline, without ever applying a change twice.
//!
//! Each write carries this client's session and a fresh sequence number; a retry after a
//! timeout or a leader change re-sends the same number, and the state machine answers it
//! with the first reply. `seq_floor` tells the group which replies it may forget: the lowest
//! sequence number still in flight.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tessera_proto::Rpc;
use tessera_proto::meta::{
    ChunkserverInfo, DamagedShard, ListChunkservers, MetaRead, MetaWrite, Op, PlaceRequest,
    PlaceStripe, Query, ReadRequest, Reply, ReportShards, Response, ServiceError, WriteRequest,
};
use tessera_rpc::{Client, RpcConfig, RpcError, Secret};
use tokio::time::Instant;

/// Why a metadata call failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaClientError {
    /// No leader answered before the deadline.
    #[error(
        "metadata service unreachable for {waited_ms} ms (last error: {last}); check that a majority of metaservers is running"
    )]
    Unavailable {
        /// How long the call kept trying.
        waited_ms: u64,
        /// The last failure seen.
        last: String,
    },
    /// An error that retrying cannot fix (wrong secret, protocol mismatch).
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Retry and deadline settings.
#[derive(Debug, Clone)]
pub struct MetaClientOptions {
    /// How long one call keeps trying (across leader changes) before giving up.
    pub deadline: Duration,
    /// Timeout of a single attempt against one server.
    pub attempt_timeout: Duration,
    /// First pause after a failed attempt; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
}

impl Default for MetaClientOptions {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
        }
    }
}

/// A client of the metadata group. Share it behind an `Arc`.
#[derive(Debug)]
pub struct MetaClient {
    servers: RwLock<Vec<(String, Arc<Client>)>>,
    leader: AtomicUsize,
    secret: Secret,
    rpc: RpcConfig,
    options: MetaClientOptions,
    session: AtomicU64,
    next_seq: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
}

impl MetaClient {
    /// A client for the group whose members include `addrs` (any subset will do: the leader
    /// is found from there).
    pub fn new(
        addrs: &[String],
        secret: Secret,
        rpc: RpcConfig,
        options: MetaClientOptions,
    ) -> Self {
        let servers = addrs
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    Arc::new(Client::new(a.clone(), secret.clone(), rpc.clone())),
                )
            })
            .collect();
        Self {
            servers: RwLock::new(servers),
            leader: AtomicUsize::new(0),
            secret,
            rpc,
            options,
            session: AtomicU64::new(0),
            next_seq: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
        }
    }

    /// The session this client's writes carry (0 before [`MetaClient::open_session`]).
    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    /// Opens a session so writes are deduplicated and open files and locks are owned by it.
    pub async fn open_session(
        &self,
        client_name: &str,
        lease: Duration,
    ) -> Result<u64, MetaClientError> {
        let reply = self
            .send(
                0,
                0,
                Op::OpenSession {
                    client: client_name.to_string(),
                    lease_ns: lease.as_nanos() as i64,
                },
            )
            .await?;
        match reply {
            Ok(Response::Session { id, .. }) => {
                self.session.store(id, Ordering::Relaxed);
                Ok(id)
            }
            other => Err(MetaClientError::Unavailable {
                waited_ms: 0,
                last: format!("unexpected reply to open-session: {other:?}"),
            }),
        }
    }

    /// Applies a change exactly once and returns its reply (a POSIX error is a reply).
    pub async fn write(&self, op: Op) -> Result<Reply, MetaClientError> {
        let session = self.session();
        if session == 0 {
            // Without a session there is nothing to deduplicate against.
            return self.send(0, 0, op).await;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        self.lock_in_flight().insert(seq);
        let result = self.send(session, seq, op).await;
        self.lock_in_flight().remove(&seq);
        result
    }

    /// A linearizable read.
    pub async fn read(&self, query: Query) -> Result<Reply, MetaClientError> {
        let req = ReadRequest { query };
        self.call_leader::<MetaRead, _>(&req).await
    }

    /// `count` distinct live chunkservers with room for shards of `shard_len` bytes, none of
    /// them in `exclude`, chosen by the leader (favouring free space).
    pub async fn place_stripe(
        &self,
        count: u8,
        shard_len: u64,
        exclude: Vec<u64>,
    ) -> Result<Vec<ChunkserverInfo>, MetaClientError> {
        let req = PlaceRequest {
            count,
            shard_len,
            exclude,
        };
        self.call_leader::<PlaceStripe, _>(&req).await
    }

    /// Hands shards whose servers sent bytes that failed verification to the leader's
    /// repair (which rebuilds them on other servers).
    pub async fn report_shards(
        &self,
        bad: Vec<tessera_proto::chunk::BadReply>,
    ) -> Result<(), MetaClientError> {
        let damaged: Vec<DamagedShard> = bad.into_iter().map(DamagedShard::from).collect();
        self.call_leader::<ReportShards, _>(&damaged).await
    }

    /// Every chunkserver the leader knows, with its address and state.
    pub async fn list_chunkservers(&self) -> Result<Vec<ChunkserverInfo>, MetaClientError> {
        self.call_leader::<ListChunkservers, _>(&()).await
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, session: u64, seq: u64, op: Op) -> Result<Reply, MetaClientError> {
        let seq_floor = self
            .lock_in_flight()
            .first()
            .copied()
            .unwrap_or_else(|| self.next_seq.load(Ordering::Relaxed));
        let req = WriteRequest {
            session,
            seq,
            seq_floor,
            op,
        };
        self.call_leader::<MetaWrite, _>(&req).await
    }

    /// Index of `addr` in the server list, adding it if the group told us of a member we
    /// were not configured with.
    fn index_of(&self, addr: &str) -> usize {
        if let Some(i) = self
            .servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .position(|(a, _)| a == addr)
        {
            return i;
        }
        let mut servers = self.servers.write().unwrap_or_else(|e| e.into_inner());
        servers.push((
            addr.to_string(),
            Arc::new(Client::new(addr, self.secret.clone(), self.rpc.clone())),
        ));
        servers.len() - 1
    }

    fn server(&self, i: usize) -> (String, Arc<Client>) {
        let servers = self.servers.read().unwrap_or_else(|e| e.into_inner());
        let (a, c) = &servers[i % servers.len()];
        (a.clone(), c.clone())
    }

    fn server_count(&self) -> usize {
        self.servers.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Calls the leader, following hints and retrying until the deadline.
    async fn call_leader<R, T>(&self, req: &R::Request) -> Result<T, MetaClientError>
    where
        R: Rpc<Reply = Result<T, ServiceError>>,
    {
        let started = Instant::now();
        let deadline = started + self.options.deadline;
        let mut backoff = self.options.min_backoff;
        let mut last: String;
        loop {
            let i = self.leader.load(Ordering::Relaxed) % self.server_count();
            let (addr, client) = self.server(i);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = self.options.attempt_timeout.min(remaining);
            let outcome = client
                .call_with::<R>(req, bytes::Bytes::new(), attempt)
                .await;
            let pause = match outcome {
                Ok((Ok(reply), _)) => return Ok(reply),
                Ok((Err(ServiceError::NotLeader { leader: Some(hint) }), _)) if hint != addr => {
                    last = format!("{addr} is not the leader");
                    self.leader.store(self.index_of(&hint), Ordering::Relaxed);
                    // A fresh hint is worth trying at once.
                    false
                }
                Ok((Err(e), _)) => {
                    last = format!("{addr}: {e}");
                    self.leader.store(i + 1, Ordering::Relaxed);
                    true
                }
                Err(e) if e.is_retryable() => {
                    last = e.to_string();
                    self.leader.store(i + 1, Ordering::Relaxed);
                    true
                }
                Err(e) => return Err(e.into()),
            };
            if Instant::now() >= deadline {
                return Err(MetaClientError::Unavailable {
                    waited_ms: started.elapsed().as_millis() as u64,
                    last,
                });
            }
            if pause {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(self.options.max_backoff);
            }
        }
    }
}

/// Renews a session in the background; stops when dropped.
#[derive(Debug)]
pub struct SessionKeeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetaClient {
    /// Renews this client's session every third of `lease` until the keeper is dropped, so
    /// its open files and locks outlive any single slow call but not the client itself.
    pub fn keep_session_alive(self: &Arc<Self>, lease: Duration) -> SessionKeeper {
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let r = client
                    .write(Op::RenewSession {
                        lease_ns: lease.as_nanos() as i64,
                    })
                    .await;
                match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(
                            session = client.session(),
                            "session lease lost ({e:?}); open files and locks of this client were released"
                        );
                        return;
                    }
                    Err(e) => tracing::warn!("could not renew the session lease yet: {e}"),
                }
            }
        });
        SessionKeeper { task }
    }
}
