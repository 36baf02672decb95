//! Work only the leader does: format an empty namespace, and (later) expire sessions and
//! schedule GC and repair. Each duty proposes ordinary commands, so followers apply the same.

use crate::raft::types::Raft;
use crate::service::MetaService;
use std::time::{Duration, Instant};
use tessera_namespace::expired_sessions;
use tessera_proto::fs::{FsError, ROOT_INO};
use tessera_proto::meta::{Op, Query, ReadRequest, WriteRequest};

/// Loops forever; does its work only while this node leads.
pub async fn run_leader_duties(raft: Raft, service: MetaService, session_check: Duration) {
    let mut formatted = false;
    let mut next_session_check = Instant::now() + session_check;
    loop {
        if raft.is_leader() {
            if !formatted {
                formatted = ensure_formatted(&service).await;
            }
            if Instant::now() >= next_session_check {
                expire_sessions(&service).await;
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
async fn expire_sessions(service: &MetaService) {
    let store = service.store().clone();
    let now = crate::service::now_ns();
    let expired = tokio::task::spawn_blocking(move || {
        let view = store.read_view()?;
        expired_sessions(&view, now, 1000)
    })
    .await;
    let expired = match expired {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            tracing::warn!("cannot list sessions: {e}");
            return;
        }
        Err(_) => return,
    };
    for session in expired {
        let r = service
            .write(WriteRequest {
                session: 0,
                seq: 0,
                seq_floor: 0,
                op: Op::ExpireSession { session },
            })
            .await;
        match r {
            Ok(Ok(_)) => tracing::info!(session, "expired a client session whose lease ran out"),
            Ok(Err(FsError::Busy | FsError::NotFound)) => {}
            other => tracing::warn!(session, "could not expire session: {other:?}"),
        }
    }
}

/// Creates the root directory when the namespace has none. Returns whether the namespace is
/// known to be formatted now.
async fn ensure_formatted(service: &MetaService) -> bool {
    let root = service
        .read(ReadRequest {
            query: Query::GetAttr { ino: ROOT_INO },
        })
        .await;
    match root {
        Ok(Ok(_)) => true,
        Ok(Err(FsError::NotFound)) => {
            let r = service
                .write(WriteRequest {
                    session: 0,
                    seq: 0,
                    seq_floor: 0,
                    op: Op::Format {
                        uid: 0,
                        gid: 0,
                        perm: 0o755,
                    },
                })
                .await;
            match r {
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
