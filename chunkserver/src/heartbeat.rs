//! Registration and heartbeats to the metadata leader.
//!
//! The task registers with the leader, then sends a heartbeat every interval with the
//! server's space and the damaged shards found since the last acknowledged one. Finding the
//! leader (hints, every `--meta` address, retries) is the cluster client's
//! (`tessera-cluster`); a leader that answers "unknown chunkserver" (a new leader) gets a
//! registration and the heartbeat again at once. Nothing here can stop the chunk service: an
//! unreachable metadata service only means findings wait, and it is logged once per change
//! of state, not on every tick.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessera_cluster::{CallError, ClusterClient, Retry};
use tessera_proto::cluster::{
    ChunkHeartbeat, ChunkserverId, ClusterError, Heartbeat, RegisterChunkserver, Registration,
};
use tessera_rpc::{RpcConfig, Secret};
use tokio::sync::watch;

use crate::health::{Findings, Health};
use crate::space::{self, Space};
use crate::store::ShardStore;

/// What the heartbeat task needs to know about its server.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub id: ChunkserverId,
    /// The advertised address of the chunk service.
    pub addr: String,
    /// Metadata servers to look for the leader among.
    pub meta: Vec<String>,
    pub interval: Duration,
    /// Timeout of one call to a metaserver; `None`: one interval, within 0.5-5 s.
    pub timeout: Option<Duration>,
    pub data_dir: PathBuf,
    pub secret: Secret,
    pub rpc: RpcConfig,
}

/// Runs until `stop` turns true.
pub async fn run(
    config: HeartbeatConfig,
    store: Arc<dyn ShardStore>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    if config.meta.is_empty() {
        tracing::warn!("no metadata servers given: serving shards without registering");
        return;
    }
    let mut link = Link::new(config, store, health);
    loop {
        link.tick().await;
        tokio::select! {
            _ = tokio::time::sleep(link.config.interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The connection state that is worth a log line when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting,
    Reporting { leader: String },
    Unreachable,
}

struct Link {
    config: HeartbeatConfig,
    store: Arc<dyn ShardStore>,
    health: Arc<Health>,
    cluster: ClusterClient,
    retry: Retry,
    /// Registered with the leader the cluster client calls (cleared when one says it does
    /// not know this server).
    registered: bool,
    state: State,
}

type CallResult = Result<(), CallError<ClusterError>>;

impl Link {
    fn new(config: HeartbeatConfig, store: Arc<dyn ShardStore>, health: Arc<Health>) -> Link {
        let cluster = ClusterClient::new(&config.meta, config.secret.clone(), config.rpc.clone());
        // A call gets at most one interval (within 0.5-5 s), so a metaserver that swallows
        // packets delays the next heartbeat by about one tick, not by the RPC default of
        // 30 s; a tick tries every address twice at most (hints followed on the way).
        let attempt = config.timeout.unwrap_or(
            config
                .interval
                .clamp(Duration::from_millis(500), Duration::from_secs(5)),
        );
        let retry = Retry {
            deadline: attempt.saturating_mul(2 * config.meta.len() as u32 + 4),
            attempt_timeout: attempt,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
            rounds: 2,
            retry_unavailable: true,
        };
        Link {
            config,
            store,
            health,
            cluster,
            retry,
            registered: false,
            state: State::Starting,
        }
    }

    /// One heartbeat, including whatever registering and leader-finding it takes.
    async fn tick(&mut self) {
        match self.report().await {
            Ok(()) => {
                let leader = self.cluster.leader().unwrap_or_default();
                self.set_state(State::Reporting { leader }, "");
            }
            Err(e) => self.set_state(State::Unreachable, &e.to_string()),
        }
    }

    async fn report(&mut self) -> CallResult {
        if !self.registered {
            self.register().await?;
        }
        match self.heartbeat().await {
            Err(CallError::Refused {
                error: ClusterError::UnknownChunkserver { .. },
                addr,
            }) => {
                // A leader that has not seen this server's registration (a new one).
                tracing::debug!(leader = %addr, "the leader does not know this server; registering");
                self.registered = false;
                self.register().await?;
                // Heartbeat at once, so pending findings do not wait a whole interval.
                self.heartbeat().await
            }
            other => other,
        }
    }

    async fn register(&mut self) -> CallResult {
        let space = self.space().await;
        let req = Registration {
            id: self.config.id,
            addr: self.config.addr.clone(),
            capacity: space.capacity,
            used: space.used,
            shards: space.shards,
        };
        self.cluster
            .call::<RegisterChunkserver, _, _>(&req, &self.retry)
            .await?;
        self.registered = true;
        tracing::info!(
            id = %format!("{:016x}", self.config.id),
            leader = %self.cluster.leader().unwrap_or_default(),
            capacity = space.capacity,
            used = space.used,
            shards = space.shards,
            "registered with the metadata leader"
        );
        Ok(())
    }

    async fn heartbeat(&mut self) -> CallResult {
        let space = self.space().await;
        let findings: Findings = self.health.pending();
        let req = Heartbeat {
            id: self.config.id,
            addr: self.config.addr.clone(),
            capacity: space.capacity,
            used: space.used,
            shards: space.shards,
            full: space.full,
            corrupt: findings.corrupt.clone(),
            missing: findings.missing.clone(),
        };
        self.cluster
            .call::<ChunkHeartbeat, _, _>(&req, &self.retry)
            .await?;
        if !findings.corrupt.is_empty() || !findings.missing.is_empty() {
            tracing::info!(
                corrupt = findings.corrupt.len(),
                missing = findings.missing.len(),
                "reported damaged shards to the metadata leader"
            );
        }
        self.health.acknowledged(&findings);
        Ok(())
    }

    async fn space(&self) -> Space {
        let (store, health, dir) = (
            self.store.clone(),
            self.health.clone(),
            self.config.data_dir.clone(),
        );
        let measured =
            tokio::task::spawn_blocking(move || space::measure(&dir, store.usage(), &health)).await;
        measured.unwrap_or_else(|_| {
            let usage = self.store.usage();
            Space {
                capacity: usage.used_bytes,
                used: usage.used_bytes,
                shards: usage.shards,
                full: true,
            }
        })
    }

    fn set_state(&mut self, state: State, detail: &str) {
        if self.state == state {
            return;
        }
        match &state {
            State::Reporting { leader } => {
                tracing::info!(%leader, "heartbeats to the metadata leader are being acknowledged")
            }
            State::Unreachable => tracing::warn!(
                last_error = %detail,
                "no metadata leader reachable; still serving shards, retrying every {} ms",
                self.config.interval.as_millis()
            ),
            State::Starting => {}
        }
        self.state = state;
    }
}
