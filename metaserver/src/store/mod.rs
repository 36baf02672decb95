//! The persistent store: every namespace table is a redb table of byte keys and values.
//!
//! [`RedbStore::apply_batch`] applies a run of log entries in ONE write transaction that also
//! records the last applied log position, so after a crash the state and `last_applied` agree
//! and the Raft layer replays exactly the entries after it. Entries at or below
//! `last_applied` are skipped (a replay after restart is harmless). Reads go through
//! [`RedbView`], a read transaction: a point-in-time snapshot that can live on another thread
//! while applies continue (what a Raft snapshot builder needs).
//!
//! Layout: this file (opening, applying, digests), `view` (the namespace's store traits over
//! redb tables), `logged` (what the Raft adapter adds: bookkeeping, sync, snapshot images).
//! This is the only place redb errors become [`NamespaceError`]s.

mod logged;
mod view;

#[cfg(test)]
mod tests;

use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tessera_namespace::{Command, NamespaceError, Reply, Table, apply, decode, digest, encode};
use view::WriteView;

pub use view::{RedbView, View};

type Bytes = &'static [u8];

/// Bookkeeping that is not namespace state (not in the digest): `last_applied`, and the Raft
/// layer's own record (see `logged`).
const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");
const LAST_APPLIED: &str = "last_applied";

fn def(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

/// A redb failure as the namespace's storage error.
fn storage(err: impl Into<redb::Error>) -> NamespaceError {
    NamespaceError::storage(err.into())
}

/// A position in the replicated log (a Raft log id without the Raft library's types).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogPos {
    pub term: u64,
    pub index: u64,
}

/// The namespace in a redb database.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, NamespaceError> {
        let db = Database::create(path).map_err(storage)?;
        RedbStore::init(db)
    }

    /// A database that lives in memory only: for tests and tools.
    pub fn in_memory() -> Result<RedbStore, NamespaceError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(storage)?;
        RedbStore::init(db)
    }

    /// Creates every table up front, so read transactions never meet a missing one.
    fn init(db: Database) -> Result<RedbStore, NamespaceError> {
        let txn = db.begin_write().map_err(storage)?;
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(storage)?;
        }
        txn.open_table(META).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(RedbStore { db })
    }

    /// The last log position whose command is reflected in the state.
    pub fn last_applied(&self) -> Result<Option<LogPos>, NamespaceError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        read_last_applied(&meta)
    }

    /// Applies `entries` in order inside one write transaction and returns one reply each.
    /// An entry at or below `last_applied` is not applied again: it gets its remembered reply
    /// if it carried `(session, seq)`, `ESTALE` otherwise. On `Err` nothing was committed.
    pub fn apply_batch(
        &mut self,
        entries: &[(LogPos, Command)],
    ) -> Result<Vec<Reply>, NamespaceError> {
        let entries = entries.iter().map(|(pos, cmd)| (*pos, Some(cmd)));
        let replies = self.apply_in_txn(entries, None, redb::Durability::Immediate)?;
        // Every entry carried a command, so every entry has a reply.
        Ok(replies.into_iter().flatten().collect())
    }

    /// Applies entries in one write transaction: a command at or below `last_applied` gets
    /// its remembered reply instead of running again; `None` (a log entry without a command)
    /// only advances `last_applied`. `raft_meta`, when given, is stored in the same
    /// transaction.
    fn apply_in_txn<'c>(
        &self,
        entries: impl ExactSizeIterator<Item = (LogPos, Option<&'c Command>)>,
        raft_meta: Option<&[u8]>,
        durability: redb::Durability,
    ) -> Result<Vec<Option<Reply>>, NamespaceError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(durability).map_err(storage)?;
        let replies = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let mut last = read_last_applied(&meta)?;
            let mut view = WriteView::open(&txn)?;
            let mut replies = Vec::with_capacity(entries.len());
            for (pos, cmd) in entries {
                let replayed = last.is_some_and(|l| pos.index <= l.index);
                replies.push(match (cmd, replayed) {
                    (None, _) => None,
                    (Some(cmd), true) => Some(tessera_namespace::replayed(&view, cmd)?),
                    (Some(cmd), false) => Some(apply(&mut view, cmd)?),
                });
                if !replayed {
                    last = Some(pos);
                }
            }
            if let Some(last) = last {
                meta.insert(LAST_APPLIED, encode(&last).as_slice())
                    .map_err(storage)?;
            }
            if let Some(raft_meta) = raft_meta {
                meta.insert(logged::RAFT_META, raft_meta).map_err(storage)?;
            }
            replies
        };
        txn.commit().map_err(storage)?;
        Ok(replies)
    }

    /// A consistent read-only snapshot of the current state.
    pub fn read_view(&self) -> Result<RedbView, NamespaceError> {
        let txn = self.db.begin_read().map_err(storage)?;
        RedbView::open(&txn)
    }

    /// BLAKE3 of the whole namespace state (see [`digest`]).
    pub fn digest(&self) -> Result<[u8; 32], NamespaceError> {
        digest(&self.read_view()?)
    }

    /// The digest and the log position it reflects, read from one transaction so they agree
    /// even while applies continue.
    pub fn digest_at(&self) -> Result<(Option<LogPos>, [u8; 32]), NamespaceError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let last = read_last_applied(&meta)?;
        Ok((last, digest(&RedbView::open(&txn)?)?))
    }
}

fn read_last_applied(
    meta: &impl ReadableTable<&'static str, Bytes>,
) -> Result<Option<LogPos>, NamespaceError> {
    match meta.get(LAST_APPLIED).map_err(storage)? {
        Some(v) => decode(Table::Counters, LAST_APPLIED.as_bytes(), v.value()).map(Some),
        None => Ok(None),
    }
}
