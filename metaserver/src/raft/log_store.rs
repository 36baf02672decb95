//! The Raft log in its own redb file.
//!
//! Durability without a stall per append: `append` commits the entries with
//! `Durability::None` (readable at once, as openraft requires when `append` returns) and hands
//! the flush callback to a syncer thread. The syncer performs one durable (`Immediate`)
//! commit, which persists every earlier non-durable commit, and then reports all callbacks that
//! were waiting: concurrent appends share one fsync (group commit), and openraft keeps
//! pipelining while the disk works. The vote and truncations are committed durably before
//! their calls return.

use super::timings;
use super::types::{Entry, LogId, TypeConfig, Vote};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Instant;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// Version byte in front of every value in this file.
const VALUE_VERSION: u8 = 1;

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("raft log store: {e}"))
}

fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![VALUE_VERSION];
    out.extend(postcard::to_stdvec(v).map_err(io_err)?);
    Ok(out)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&VALUE_VERSION, rest)) => postcard::from_bytes(rest).map_err(io_err),
        Some((v, _)) => Err(io_err(format!("unknown value version {v}"))),
        None => Err(io_err("empty value")),
    }
}

/// The log store; cheap to clone (readers share the database).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    syncer: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

impl LogStore {
    /// Opens or creates the log at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::create(path).map_err(io_err)?;
        Self::init(db)
    }

    /// A log in memory, for tests.
    pub fn in_memory() -> io::Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(io_err)?;
        Self::init(db)
    }

    fn init(db: Database) -> io::Result<Self> {
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(META).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let sync_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || sync_loop(&sync_db, &rx))
            .map_err(io_err)?;
        Ok(Self { db, syncer: tx })
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&redb::WriteTransaction) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(durability).map_err(io_err)?;
        f(&txn)?;
        txn.commit().map_err(io_err)
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let meta = txn.open_table(META).map_err(io_err)?;
        match meta.get(key).map_err(io_err)? {
            Some(v) => decode(v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> io::Result<()> {
        let bytes = encode(value)?;
        self.write(durability, |txn| {
            let mut meta = txn.open_table(META).map_err(io_err)?;
            meta.insert(key, bytes.as_slice()).map_err(io_err)?;
            Ok(())
        })
    }

    /// Bytes the log file occupies on disk (for compaction checks and status).
    pub fn disk_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

/// Flushes non-durable commits for every waiting append, many at a time.
fn sync_loop(db: &Database, rx: &mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let started = Instant::now();
        let result = (|| {
            let mut txn = db.begin_write().map_err(io_err)?;
            txn.set_durability(Durability::Immediate).map_err(io_err)?;
            txn.commit().map_err(io_err)
        })();
        timings::LOG_SYNC.since(started);
        for cb in waiting {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            cb.io_completed(r);
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let log = txn.open_table(LOG).map_err(io_err)?;
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for row in log.range::<u64>(bounds).map_err(io_err)? {
            let (_, v) = row.map_err(io_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let txn = self.db.begin_read().map_err(io_err)?;
        let log = txn.open_table(LOG).map_err(io_err)?;
        let last = match log.last().map_err(io_err)? {
            Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let store = self.clone();
        let vote = *vote;
        blocking(move || store.put_meta(VOTE, &vote, Durability::Immediate)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not needed for safety (openraft re-derives it); kept so a restart re-applies less.
        let store = self.clone();
        blocking(move || store.put_meta(COMMITTED, &committed, Durability::None)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, encode(&e)?));
        }
        let store = self.clone();
        blocking(move || {
            let started = Instant::now();
            store.write(Durability::None, |txn| {
                let mut log = txn.open_table(LOG).map_err(io_err)?;
                for (index, bytes) in &rows {
                    log.insert(*index, bytes.as_slice()).map_err(io_err)?;
                }
                Ok(())
            })?;
            timings::LOG_APPEND.since(started);
            Ok(())
        })
        .await?;
        self.syncer
            .send(callback)
            .map_err(|_| io_err("log syncer thread is gone"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let store = self.clone();
        blocking(move || {
            store.write(Durability::Immediate, |txn| {
                let mut log = txn.open_table(LOG).map_err(io_err)?;
                log.retain_in::<u64, _>(from.., |_, _| false)
                    .map_err(io_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let store = self.clone();
        let bytes = encode(&log_id)?;
        blocking(move || {
            // One transaction: the purge marker and the removal land together or not at all.
            store.write(Durability::None, |txn| {
                let mut meta = txn.open_table(META).map_err(io_err)?;
                meta.insert(LAST_PURGED, bytes.as_slice()).map_err(io_err)?;
                let mut log = txn.open_table(LOG).map_err(io_err)?;
                log.retain_in::<u64, _>(..=log_id.index, |_, _| false)
                    .map_err(io_err)?;
                Ok(())
            })
        })
        .await
    }
}

/// Runs blocking disk work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err(format!("blocking task failed: {e}")))?
}
