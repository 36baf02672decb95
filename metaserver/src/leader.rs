//! Duties only the leader has besides upkeep: format an empty namespace, and expire client
//! sessions whose lease ran out. Each duty proposes ordinary commands, so followers apply
//! the same; repair, GC and the orphan sweep are in `upkeep/`.

use crate::replica::{Replica, clock};
use std::time::{Duration, Instant};
use tessera_namespace::expired_sessions;
use tessera_proto::fs::{FsError, ROOT_INO};
use tessera_proto::meta::{Op, Query};

/// Loops forever; does its work only while this node leads.
pub async fn run_leader_duties(replica: Replica, session_check: Duration) {
    let mut formatted = false;
    let mut next_session_check = Instant::now() + session_check;
    loop {
        if replica.is_leader() {
            if !formatted {
                formatted = ensure_formatted(&replica).await;
            }
            if Instant::now() >= next_session_check {
                expire_sessions(&replica).await;
                next_session_check = Instant::now() + session_check;
            }
        }
        // Poll fast until formatted: clients of a new cluster are waiting for the root.
        let pause = if formatted { 200 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Proposes `ExpireSession` for every session whose lease ran out. The command re-checks the
/// lease when applied, so a renewal that races with it wins (`EBUSY`).
async fn expire_sessions(replica: &Replica) {
    let now = clock::now_ns();
    let expired = replica
        .local_read(move |store| expired_sessions(&store.read_view()?, now, 1000))
        .await;
    let expired = match expired {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("cannot list sessions: {e}");
            return;
        }
    };
    for session in expired {
        match replica.propose_system(Op::ExpireSession { session }).await {
            Ok(Ok(_)) => tracing::info!(session, "expired a client session whose lease ran out"),
            Ok(Err(FsError::Busy | FsError::NotFound)) => {}
            other => tracing::warn!(session, "could not expire session: {other:?}"),
        }
    }
}

/// Creates the root directory when the namespace has none. Returns whether the namespace is
/// known to be formatted now.
async fn ensure_formatted(replica: &Replica) -> bool {
    match replica.read(Query::GetAttr { ino: ROOT_INO }).await {
        Ok(Ok(_)) => true,
        Ok(Err(FsError::NotFound)) => {
            let format = Op::Format {
                uid: 0,
                gid: 0,
                perm: 0o755,
            };
            match replica.propose_system(format).await {
                Ok(Ok(_)) | Ok(Err(FsError::Exists)) => {
                    tracing::info!("formatted an empty namespace");
                    true
                }
                other => {
                    tracing::warn!("could not format the namespace yet: {other:?}");
                    false
                }
            }
        }
        _ => false,
    }
}
