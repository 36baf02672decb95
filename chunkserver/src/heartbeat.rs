//! Registration and heartbeats to the metadata leader.
//!
//! The task finds the leader among the `--meta` addresses, registers, then sends a heartbeat
//! every interval with the server's space and the damaged shards found since the last
//! acknowledged one. A `NotLeader` answer with a hint sends the next call to the hinted
//! address (registering there first); without a hint, or when a metaserver is unreachable,
//! the next address in the list is tried. Nothing here can stop the chunk service: an
//! unreachable metadata service only means findings wait, and it is logged once per change
//! of state, not on every tick.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessera_proto::cluster::{
    ChunkHeartbeat, ChunkserverId, ClusterError, Heartbeat, RegisterChunkserver, Registration,
};
use tessera_rpc::{Client, RpcConfig, RpcError, Secret};
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
    clients: HashMap<String, Arc<Client>>,
    /// Where the leader is believed to be (a hint or the last address that answered).
    leader: Option<String>,
    /// The leader we registered with; a new leader gets a registration first.
    registered_with: Option<String>,
    /// Next `--meta` address to try when there is no leader to call.
    next_seed: usize,
    state: State,
}

/// How one call to a metaserver ended.
enum Outcome {
    Done,
    /// Call this address next (a leader hint).
    Redirect(String),
    /// Register with the same address, then heartbeat again.
    Reregister,
    /// This address is no good now; try the next one. The text is for the log.
    Failed(String),
}

impl Link {
    fn new(config: HeartbeatConfig, store: Arc<dyn ShardStore>, health: Arc<Health>) -> Link {
        Link {
            config,
            store,
            health,
            clients: HashMap::new(),
            leader: None,
            registered_with: None,
            next_seed: 0,
            state: State::Starting,
        }
    }

    /// One heartbeat, including whatever registering and leader-finding it takes. Bounded:
    /// every seed once plus a few hint hops, so two confused metaservers pointing at each
    /// other cannot keep it busy.
    async fn tick(&mut self) {
        let mut last_error = String::new();
        let max_steps = self.config.meta.len() * 2 + 4;
        for _ in 0..max_steps {
            let addr = match &self.leader {
                Some(a) => a.clone(),
                None => {
                    let a = self.config.meta[self.next_seed % self.config.meta.len()].clone();
                    self.next_seed += 1;
                    a
                }
            };
            let outcome = if self.registered_with.as_deref() == Some(addr.as_str()) {
                self.heartbeat(&addr).await
            } else {
                match self.register(&addr).await {
                    Outcome::Done => {
                        self.registered_with = Some(addr.clone());
                        self.leader = Some(addr.clone());
                        // Heartbeat at once, so pending findings do not wait a whole interval.
                        self.heartbeat(&addr).await
                    }
                    other => other,
                }
            };
            match outcome {
                Outcome::Done => {
                    self.leader = Some(addr.clone());
                    self.set_state(State::Reporting { leader: addr }, "");
                    return;
                }
                Outcome::Redirect(hint) => {
                    if hint == addr {
                        // A leader that names itself but refuses: treat it as unavailable.
                        self.leader = None;
                        last_error = format!("{addr} says it is the leader but refused");
                    } else {
                        tracing::debug!(from = %addr, to = %hint, "following leader hint");
                        self.leader = Some(hint);
                    }
                }
                Outcome::Reregister => {
                    self.registered_with = None;
                    self.leader = Some(addr);
                }
                Outcome::Failed(why) => {
                    self.leader = None;
                    last_error = why;
                }
            }
        }
        self.set_state(State::Unreachable, &last_error);
    }

    async fn register(&mut self, addr: &str) -> Outcome {
        let space = self.space().await;
        let req = Registration {
            id: self.config.id,
            addr: self.config.addr.clone(),
            capacity: space.capacity,
            used: space.used,
            shards: space.shards,
        };
        let client = self.client(addr);
        let result = client
            .call_with::<RegisterChunkserver>(&req, bytes::Bytes::new(), self.timeout())
            .await;
        let outcome = judge(addr, result.map(|(r, _)| r));
        if matches!(outcome, Outcome::Done) {
            tracing::info!(
                id = %format!("{:016x}", self.config.id),
                leader = %addr,
                capacity = space.capacity,
                used = space.used,
                shards = space.shards,
                "registered with the metadata leader"
            );
        }
        outcome
    }

    async fn heartbeat(&mut self, addr: &str) -> Outcome {
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
        let client = self.client(addr);
        let result = client
            .call_with::<ChunkHeartbeat>(&req, bytes::Bytes::new(), self.timeout())
            .await;
        let outcome = judge(addr, result.map(|(r, _)| r));
        if matches!(outcome, Outcome::Done) {
            if !findings.corrupt.is_empty() || !findings.missing.is_empty() {
                tracing::info!(
                    corrupt = findings.corrupt.len(),
                    missing = findings.missing.len(),
                    "reported damaged shards to the metadata leader"
                );
            }
            self.health.acknowledged(&findings);
        }
        outcome
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

    /// A call gets at most one interval (within 0.5-5 s), so a metaserver that swallows
    /// packets delays the next heartbeat by about one tick, not by the RPC default of 30 s.
    fn timeout(&self) -> Duration {
        self.config
            .interval
            .clamp(Duration::from_millis(500), Duration::from_secs(5))
    }

    fn client(&mut self, addr: &str) -> Arc<Client> {
        let (secret, rpc) = (&self.config.secret, &self.config.rpc);
        self.clients
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Client::new(addr, secret.clone(), rpc.clone())))
            .clone()
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

/// Turns a call's result into what to do next.
fn judge(addr: &str, result: Result<Result<(), ClusterError>, RpcError>) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Done,
        Ok(Err(ClusterError::NotLeader { leader: Some(hint) })) => Outcome::Redirect(hint),
        Ok(Err(ClusterError::NotLeader { leader: None })) => {
            Outcome::Failed(format!("{addr} is not the leader and knows no leader"))
        }
        Ok(Err(ClusterError::UnknownChunkserver { .. })) => Outcome::Reregister,
        Ok(Err(e @ ClusterError::Unavailable { .. })) => Outcome::Failed(format!("{addr}: {e}")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
