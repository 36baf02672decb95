//! Linearizable reads: under the leader's lease when it holds, else many per quorum round.
//!
//! A read may only be served once the leader knows, after the read arrived, that it is still
//! the leader and has applied everything committed before. The cheap way is the leader
//! lease (openraft's `ReadPolicy::LeaseRead`): a quorum acknowledged this leader less than
//! `election_timeout_max` ago, and a follower that heard from a leader within that time
//! refuses to vote for another, so no other leader can have committed anything since. It
//! rests on the members' clocks running at about the same rate, not on their wall clocks
//! agreeing.
//!
//! When the lease cannot be used (it expired because followers stopped answering, or a
//! leadership transfer is under way, where the lease must not outlive the hand-over), the
//! leader confirms with a read-index round: a round trip to a majority. Reads that arrive
//! while a round is in flight wait for the next round and then share it: under load each
//! round serves every read that queued behind the previous one.

use super::refusal::refused;
use super::timings;
use super::types::Raft;
use openraft::ReadPolicy;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_proto::meta::ServiceError;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), ServiceError>>;

#[derive(Default)]
struct GateState {
    /// A task is running rounds.
    running: bool,
    /// Reads waiting for the next round.
    waiters: Vec<Waiter>,
    /// Until then every read takes a read-index round (a leadership transfer began).
    no_lease_until: Option<Instant>,
}

/// Confirms reads, by lease or by shared read-index rounds.
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
        let started = Instant::now();
        let result = self.confirm_inner(raft).await;
        if result.is_ok() {
            timings::READ.since(started);
        }
        result
    }

    async fn confirm_inner(&self, raft: &Raft) -> Result<(), ServiceError> {
        if self.lease_allowed()
            && raft
                .ensure_linearizable(ReadPolicy::LeaseRead)
                .await
                .is_ok()
        {
            timings::LEASE_READS.inc();
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = self.lock();
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

    /// Stops lease reads for `period`: during a leadership transfer the new leader may be
    /// elected (its voters told to ignore this leader's lease) before this one learns it
    /// lost, so only a quorum round proves leadership then.
    pub fn suspend_lease(&self, period: Duration) {
        self.lock().no_lease_until = Some(Instant::now() + period);
    }

    fn lease_allowed(&self) -> bool {
        self.lock()
            .no_lease_until
            .is_none_or(|until| Instant::now() >= until)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        timings::READ_INDEX_ROUNDS.inc();
        let result = match raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(()),
            Err(e) => Err(refused(&e)),
        };
        for w in batch {
            let _ = w.send(result.clone());
        }
    }
}
