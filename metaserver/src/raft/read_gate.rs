//! Linearizable reads, many per quorum round.
//!
//! A read may only be served once the leader has confirmed, after the read arrived, that it
//! is still the leader and has applied everything committed before (read index). One
//! confirmation costs a round trip to a majority, so reads that arrive while a round is in
//! flight wait for the next round and then share it: under load each round serves every read
//! that queued behind the previous one.

use super::refusal::refused;
use super::types::Raft;
use openraft::ReadPolicy;
use std::sync::{Arc, Mutex};
use tessera_proto::meta::ServiceError;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), ServiceError>>;

#[derive(Default)]
struct GateState {
    /// A task is running rounds.
    running: bool,
    /// Reads waiting for the next round.
    waiters: Vec<Waiter>,
}

/// Batches read-index confirmations.
#[derive(Clone, Default)]
pub struct ReadGate {
    state: Arc<Mutex<GateState>>,
}

impl std::fmt::Debug for ReadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadGate")
    }
}

impl ReadGate {
    /// Returns once a read that arrived now may be served from the local state machine.
    pub async fn confirm(&self, raft: &Raft) -> Result<(), ServiceError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.waiters.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tokio::spawn(run_rounds(self.state.clone(), raft.clone()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ServiceError::Unavailable {
                reason: "read confirmation was abandoned".into(),
            })
        })
    }
}

async fn run_rounds(state: Arc<Mutex<GateState>>, raft: Raft) {
    loop {
        let batch = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if s.waiters.is_empty() {
                s.running = false;
                return;
            }
            std::mem::take(&mut s.waiters)
        };
        let result = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(e) => Err(refused(&e)),
        };
        for w in batch {
            let _ = w.send(result.clone());
        }
    }
}
