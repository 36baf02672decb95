//! openraft's state machine over the namespace's redb store.
//!
//! Each `apply` call becomes ONE redb write transaction that applies every namespace command
//! in it and records the last applied log id and membership (`raft_meta`), so state and
//! bookkeeping never disagree after a crash. Those commits are not fsynced: the Raft log is
//! the durable record, and a restart replays whatever the state had not persisted. Anything
//! that lets openraft forget log entries (building or handing out a snapshot) first forces a
//! durable commit, so no purged entry is ever missing from durable state.
//!
//! A snapshot is an image of every namespace table taken from one redb read transaction:
//! a point-in-time view that does not block applies.

use super::timings;
use super::types::{
    Entry, LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};
use crate::store::{LogPos, RedbStore};
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tessera_namespace::{Command, Reply, Response};

/// What the state machine records about the log, next to the namespace tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RaftMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("state machine: {e}"))
}

/// The namespace state machine of one metaserver.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: Arc<RedbStore>,
    meta: RaftMeta,
}

impl StateMachine {
    /// Wraps an opened store, resuming from what it recorded.
    pub fn new(store: Arc<RedbStore>) -> io::Result<Self> {
        let meta = match store.raft_meta().map_err(io_err)? {
            Some(bytes) => postcard::from_bytes(&bytes).map_err(io_err)?,
            None => RaftMeta::default(),
        };
        let pos = store.last_applied().map_err(io_err)?;
        tracing::info!(
            last_applied = ?meta.last_applied,
            state_last_applied = ?pos,
            "state machine opened"
        );
        Ok(Self { store, meta })
    }

    /// The store, for linearizable reads served next to Raft.
    pub fn store(&self) -> &Arc<RedbStore> {
        &self.store
    }

    /// Builds a snapshot of durable state: meta and data from one read transaction.
    fn snapshot_now(&self) -> io::Result<Snapshot> {
        self.store.sync().map_err(io_err)?;
        let (image, meta_bytes) = self.store.export_image().map_err(io_err)?;
        let meta: RaftMeta = match meta_bytes {
            Some(b) => postcard::from_bytes(&b).map_err(io_err)?,
            None => RaftMeta::default(),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: meta.last_applied,
                last_membership: meta.membership,
            },
            snapshot: SnapshotData::from(image),
        })
    }
}

fn pos(log_id: &LogId) -> LogPos {
    LogPos {
        term: log_id.leader_id.term,
        index: log_id.index,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let sm = self.clone();
        tokio::task::spawn_blocking(move || sm.snapshot_now())
            .await
            .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        // Everything openraft hands over in one call is applied in one transaction.
        let mut batch: Vec<(LogPos, Option<Command>)> = Vec::new();
        let mut responders = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let Entry { log_id, payload } = entry;
            let command = match payload {
                EntryPayload::Normal(cmd) => Some(cmd),
                EntryPayload::Blank => None,
                EntryPayload::Membership(m) => {
                    self.meta.membership = StoredMembership::new(Some(log_id), m);
                    None
                }
            };
            batch.push((pos(&log_id), command));
            responders.push(responder);
            self.meta.last_applied = Some(log_id);
        }
        if batch.is_empty() {
            return Ok(());
        }
        tracing::debug!(first = ?batch.first().map(|b| b.0), last = ?batch.last().map(|b| b.0), "apply batch");
        let meta = postcard::to_stdvec(&self.meta).map_err(io_err)?;
        let store = self.store.clone();
        let replies = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let replies = store.apply_logged(&batch, &meta);
            timings::APPLY.since(started);
            replies
        })
        .await
        .map_err(io_err)?
        .map_err(io_err)?;
        for (reply, responder) in replies.into_iter().zip(responders) {
            if let Some(r) = responder {
                let reply: Reply = reply.unwrap_or(Ok(Response::Done));
                r.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let new_meta = RaftMeta {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let meta_bytes = postcard::to_stdvec(&new_meta).map_err(io_err)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.import_image(&snapshot, &meta_bytes))
            .await
            .map_err(io_err)?
            .map_err(io_err)?;
        self.meta = new_meta;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        if self.meta.last_applied.is_none() {
            return Ok(None);
        }
        let sm = self.clone();
        let snap = tokio::task::spawn_blocking(move || sm.snapshot_now())
            .await
            .map_err(io_err)??;
        Ok(Some(snap))
    }
}
