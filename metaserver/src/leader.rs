//! Duties only the leader has besides upkeep: format an empty namespace (and set the trash
//! retention where no one has), expire client sessions whose lease ran out, free files
//! whose time in the trash ran out, and copy snapshots taken of large trees. Each duty proposes ordinary commands, so followers apply
//! the same; repair, GC and the orphan sweep are in `upkeep/`.

use crate::replica::{Replica, clock};
use std::time::{Duration, Instant};
use tessera_namespace::{
    expired_sessions, expired_trash, trash_retention_setting, unfinished_snapshots,
};
use tessera_proto::fs::{FsError, ROOT_INO};
use tessera_proto::meta::{Op, Query, Response};

/// Loops forever; does its work only while this node leads.
pub async fn run_leader_duties(replica: Replica, session_check: Duration, trash_retention_s: u64) {
    let mut formatted = false;
    let mut retention_set = false;
    let mut next_session_check = Instant::now() + session_check;
    // No file still in the trash was deleted before this (as of this node's last look).
    let mut trash_earliest: Option<i64> = None;
    loop {
        if !replica.is_leader() {
            trash_earliest = None;
        } else {
            if !formatted {
                formatted = ensure_formatted(&replica).await;
            }
            if formatted && !retention_set {
                retention_set = ensure_trash_retention(&replica, trash_retention_s).await;
            }
            if formatted {
                advance_snapshots(&replica).await;
            }
            if Instant::now() >= next_session_check {
                expire_sessions(&replica).await;
                expire_trash(&replica, &mut trash_earliest).await;
                next_session_check = Instant::now() + session_check;
            }
        }
        // Poll fast until formatted: clients of a new cluster are waiting for the root.
        let pause = if formatted { 200 } else { 50 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Entries one `SnapshotStep` copies: about 12 ms of apply time, during which other
/// commands wait.
const SNAPSHOT_STEP: u32 = 1000;

/// Most steps per pass of the duty loop, so the other duties keep their pace.
const SNAPSHOT_STEPS_PER_PASS: usize = 50;

/// Proposes `SnapshotStep`s for snapshots still being copied (`snapshot_copy.rs` in the
/// namespace): other commands run between the steps. A new leader picks up where the last
/// one stopped: the job's progress is in the replicated state.
async fn advance_snapshots(replica: &Replica) {
    let jobs = match replica
        .local_read(|store| unfinished_snapshots(&store.read_view()?))
        .await
    {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!("cannot list snapshot copies: {e}");
            return;
        }
    };
    let mut steps = 0;
    for job in jobs {
        while steps < SNAPSHOT_STEPS_PER_PASS {
            steps += 1;
            let step = Op::SnapshotStep {
                job,
                budget: SNAPSHOT_STEP,
            };
            match replica.propose_system(step).await {
                Ok(Ok(Response::Flag(true))) => {
                    tracing::info!(job, "snapshot copy finished");
                    break;
                }
                Ok(Ok(_)) => {}
                other => {
                    tracing::warn!(job, "snapshot copy step failed: {other:?}");
                    return;
                }
            }
        }
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

/// Sets the trash retention to this server's `--trash-retention` where no one has set it
/// (a new namespace, or one from before the trash). Returns whether it is set now.
async fn ensure_trash_retention(replica: &Replica, seconds: u64) -> bool {
    let setting = replica
        .local_read(|store| trash_retention_setting(&store.read_view()?))
        .await;
    match setting {
        Ok(Some(_)) => true,
        Ok(None) => match replica
            .propose_system(Op::SetTrashRetention { seconds })
            .await
        {
            Ok(Ok(_)) => {
                tracing::info!(seconds, "set the trash retention");
                true
            }
            other => {
                tracing::warn!("could not set the trash retention yet: {other:?}");
                false
            }
        },
        Err(e) => {
            tracing::warn!("cannot read the trash retention: {e}");
            false
        }
    }
}

/// Frees files whose time in the trash ran out; the command re-checks each when applied,
/// so a restore or a longer retention that races with it wins. `earliest` saves the scan of
/// the trash while nothing can be due: no kept file was deleted before it, so none runs out
/// before it plus the retention (read each time, so a shorter one counts at once). A delete
/// stamped just before a scan and applied just after it may run out that much later.
async fn expire_trash(replica: &Replica, earliest: &mut Option<i64>) {
    let now = clock::now_ns();
    if let Some(t) = *earliest {
        let retention = replica
            .local_read(|store| trash_retention_setting(&store.read_view()?))
            .await;
        let due = retention
            .map(|r| t.saturating_add((r.unwrap_or(0) as i64).saturating_mul(1_000_000_000)));
        if due.is_ok_and(|due| now < due) {
            return;
        }
    }
    let expired = replica
        .local_read(move |store| expired_trash(&store.read_view()?, now, 1000))
        .await;
    let expired = expired.map(|(inos, left)| {
        *earliest = left;
        inos
    });
    match expired {
        Ok(inos) if inos.is_empty() => {}
        Ok(inos) => {
            let n = inos.len();
            let purge = Op::PurgeTrash {
                inos,
                expired_only: true,
            };
            match replica.propose_system(purge).await {
                Ok(Ok(_)) => {
                    tracing::info!(files = n, "freed files whose time in the trash ran out")
                }
                other => {
                    // They are still due: look again next time.
                    *earliest = None;
                    tracing::warn!("could not expire files in the trash: {other:?}")
                }
            }
        }
        Err(e) => tracing::warn!("cannot list the trash: {e}"),
    }
}
