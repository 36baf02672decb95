//! Work only the leader does: format an empty namespace, and (later) expire sessions and
//! schedule GC and repair. Each duty proposes ordinary commands, so followers apply the same.

use crate::raft::types::Raft;
use crate::service::MetaService;
use std::time::Duration;
use tessera_proto::fs::{FsError, ROOT_INO};
use tessera_proto::meta::{Op, Query, ReadRequest, WriteRequest};

/// Loops forever; does its work only while this node leads.
pub async fn run_leader_duties(raft: Raft, service: MetaService) {
    let mut formatted = false;
    loop {
        if raft.is_leader() && !formatted {
            formatted = ensure_formatted(&service).await;
        }
        // Poll fast until formatted: clients of a new cluster are waiting for the root.
        let pause = if formatted { 300 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
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
