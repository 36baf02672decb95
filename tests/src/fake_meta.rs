//! A stand-in for the metadata service's chunkserver membership calls.
//!
//! It is a real `tessera_rpc` server in the test process: chunkservers under test reach it
//! over TCP with the cluster secret, exactly as they reach a metaserver. It answers
//! `RegisterChunkserver` and `ChunkHeartbeat` (as the leader, or `NotLeader` with a hint) and
//! records every call so a test can wait for what it expects. Nothing else of the metadata
//! service is imitated.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera_proto::cluster::{
    ChunkHeartbeat, ChunkserverId, ClusterError, Heartbeat, RegisterChunkserver, Registration,
};
use tessera_rpc::{Router, Secret, ServerHandle};

/// How a [`FakeMeta`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Accepts registrations; heartbeats from unregistered ids get `UnknownChunkserver`.
    Leader,
    /// Refuses everything with `NotLeader { leader: hint }`.
    Follower { hint: Option<String> },
}

#[derive(Debug)]
struct State {
    role: Role,
    known: HashSet<ChunkserverId>,
    registrations: Vec<Registration>,
    heartbeats: Vec<Heartbeat>,
    refused: u64,
}

/// See the module docs. The server stops when this is dropped.
#[derive(Debug)]
pub struct FakeMeta {
    server: ServerHandle,
    state: Arc<Mutex<State>>,
}

impl FakeMeta {
    /// Starts a fake leader on a free 127.0.0.1 port.
    pub async fn start(secret: &Secret) -> FakeMeta {
        Self::start_on("127.0.0.1:0", secret, Role::Leader).await
    }

    /// Starts one on `addr` with `role`.
    pub async fn start_on(addr: &str, secret: &Secret, role: Role) -> FakeMeta {
        let state = Arc::new(Mutex::new(State {
            role,
            known: HashSet::new(),
            registrations: Vec::new(),
            heartbeats: Vec::new(),
            refused: 0,
        }));
        let (s1, s2) = (state.clone(), state.clone());
        let router = Router::new("meta")
            .route::<RegisterChunkserver, _, _>(move |call| {
                let reply = register(&s1, call.req);
                async move { (reply, Bytes::new()) }
            })
            .route::<ChunkHeartbeat, _, _>(move |call| {
                let reply = heartbeat(&s2, call.req);
                async move { (reply, Bytes::new()) }
            });
        let server = tessera_rpc::serve(addr, secret.clone(), router, crate::tls::rpc_config())
            .await
            .unwrap_or_else(|e| panic!("FakeMeta cannot listen on {addr}: {e}"));
        FakeMeta { server, state }
    }

    /// Its address, "127.0.0.1:port".
    pub fn addr(&self) -> String {
        self.server.local_addr().to_string()
    }

    /// Changes how it answers from now on.
    pub fn set_role(&self, role: Role) {
        lock(&self.state).role = role;
    }

    /// Forgets every registration, as a newly elected leader would.
    pub fn forget_registrations(&self) {
        lock(&self.state).known.clear();
    }

    pub fn registrations(&self) -> Vec<Registration> {
        lock(&self.state).registrations.clone()
    }

    pub fn heartbeats(&self) -> Vec<Heartbeat> {
        lock(&self.state).heartbeats.clone()
    }

    /// Calls answered with `NotLeader`.
    pub fn refused(&self) -> u64 {
        lock(&self.state).refused
    }

    /// Waits until a recorded heartbeat satisfies `pred`; returns it. Panics after `timeout`
    /// with a summary of what did arrive.
    pub async fn wait_heartbeat(
        &self,
        timeout: Duration,
        pred: impl Fn(&Heartbeat) -> bool,
    ) -> Heartbeat {
        self.wait_heartbeat_since(0, timeout, pred).await
    }

    /// As [`Self::wait_heartbeat`], looking only at heartbeats recorded after the first
    /// `seen` (pass `heartbeats().len()` taken earlier to wait for a new one).
    pub async fn wait_heartbeat_since(
        &self,
        seen: usize,
        timeout: Duration,
        pred: impl Fn(&Heartbeat) -> bool,
    ) -> Heartbeat {
        let found = wait(timeout, || {
            self.heartbeats().into_iter().skip(seen).find(|h| pred(h))
        })
        .await;
        found.unwrap_or_else(|| {
            let hbs = self.heartbeats();
            panic!(
                "no matching heartbeat within {timeout:?}; got {} heartbeats ({seen} before \
                 waiting), last: {:?}",
                hbs.len(),
                hbs.last()
            )
        })
    }

    /// Waits until at least `n` registrations have been recorded; returns them all.
    pub async fn wait_registrations(&self, timeout: Duration, n: usize) -> Vec<Registration> {
        let found = wait(timeout, || {
            let r = self.registrations();
            (r.len() >= n).then_some(r)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "expected {n} registrations within {timeout:?}, got {:?}",
                self.registrations()
            )
        })
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn register(state: &Mutex<State>, req: Registration) -> Result<(), ClusterError> {
    let mut s = lock(state);
    if let Role::Follower { hint } = &s.role {
        let leader = hint.clone();
        s.refused += 1;
        return Err(ClusterError::NotLeader { leader });
    }
    s.known.insert(req.id);
    s.registrations.push(req);
    Ok(())
}

fn heartbeat(state: &Mutex<State>, req: Heartbeat) -> Result<(), ClusterError> {
    let mut s = lock(state);
    if let Role::Follower { hint } = &s.role {
        let leader = hint.clone();
        s.refused += 1;
        return Err(ClusterError::NotLeader { leader });
    }
    if !s.known.contains(&req.id) {
        return Err(ClusterError::UnknownChunkserver { id: req.id });
    }
    s.heartbeats.push(req);
    Ok(())
}

/// Polls `probe` every 20 ms until it returns something or `timeout` passes.
pub async fn wait<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
