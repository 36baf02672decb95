//! The persistent store: every namespace table is a redb table of byte keys and values.
//!
//! [`RedbStore::apply_batch`] applies a run of log entries in ONE write transaction that also
//! records the last applied log position, so after a crash the state and `last_applied` agree
//! and the Raft layer replays exactly the entries after it. Entries at or below
//! `last_applied` are skipped (a replay after restart is harmless). Reads go through
//! [`RedbView`], a read transaction: a point-in-time snapshot that can live on another thread
//! while applies continue (what a Raft snapshot builder needs).

use super::apply::apply;
use super::codec::{decode, encode};
use super::command::{Command, Reply};
use super::digest::digest;
use super::state::{Tables, keys};
use super::store::{Entry, Store, StoreRead, Table};
use crate::error::MetaError;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::Path;
use tessera_proto::fs::FsError;

type Bytes = &'static [u8];

/// Bookkeeping that is not namespace state (not in the digest): `last_applied`.
const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");
const LAST_APPLIED: &str = "last_applied";

fn def(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

/// A position in the replicated log (a Raft log id without the openraft types).
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
    pub fn open(path: &Path) -> Result<RedbStore, MetaError> {
        let db = Database::create(path).map_err(MetaError::storage)?;
        RedbStore::init(db)
    }

    /// A database that lives in memory only: for tests and tools.
    pub fn in_memory() -> Result<RedbStore, MetaError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(MetaError::storage)?;
        RedbStore::init(db)
    }

    /// Creates every table up front, so read transactions never meet a missing one.
    fn init(db: Database) -> Result<RedbStore, MetaError> {
        let txn = db.begin_write().map_err(MetaError::storage)?;
        for table in Table::ALL {
            txn.open_table(def(table)).map_err(MetaError::storage)?;
        }
        txn.open_table(META).map_err(MetaError::storage)?;
        txn.commit().map_err(MetaError::storage)?;
        Ok(RedbStore { db })
    }

    /// The last log position whose command is reflected in the state.
    pub fn last_applied(&self) -> Result<Option<LogPos>, MetaError> {
        let txn = self.db.begin_read().map_err(MetaError::storage)?;
        let meta = txn.open_table(META).map_err(MetaError::storage)?;
        read_last_applied(&meta)
    }

    /// Applies `entries` in order inside one write transaction and returns one reply each.
    /// An entry at or below `last_applied` is not applied again: it gets its remembered reply
    /// if it carried `(session, seq)`, `ESTALE` otherwise. On `Err` nothing was committed.
    pub fn apply_batch(&mut self, entries: &[(LogPos, Command)]) -> Result<Vec<Reply>, MetaError> {
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
    ) -> Result<Vec<Option<Reply>>, MetaError> {
        let mut txn = self.db.begin_write().map_err(MetaError::storage)?;
        txn.set_durability(durability).map_err(MetaError::storage)?;
        let replies = {
            let mut meta = txn.open_table(META).map_err(MetaError::storage)?;
            let mut last = read_last_applied(&meta)?;
            let mut view = WriteView::open(&txn)?;
            let mut replies = Vec::with_capacity(entries.len());
            for (pos, cmd) in entries {
                let replayed = last.is_some_and(|l| pos.index <= l.index);
                replies.push(match (cmd, replayed) {
                    (None, _) => None,
                    (Some(cmd), true) => Some(remembered(&view, cmd)?),
                    (Some(cmd), false) => Some(apply(&mut view, cmd)?),
                });
                if !replayed {
                    last = Some(pos);
                }
            }
            if let Some(last) = last {
                meta.insert(LAST_APPLIED, encode(&last).as_slice())
                    .map_err(MetaError::storage)?;
            }
            if let Some(raft_meta) = raft_meta {
                meta.insert(RAFT_META, raft_meta)
                    .map_err(MetaError::storage)?;
            }
            replies
        };
        txn.commit().map_err(MetaError::storage)?;
        Ok(replies)
    }

    /// A consistent read-only snapshot of the current state.
    pub fn read_view(&self) -> Result<RedbView, MetaError> {
        let txn = self.db.begin_read().map_err(MetaError::storage)?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(def(table)).map_err(MetaError::storage)?);
        }
        Ok(RedbView { tables })
    }

    /// BLAKE3 of the whole namespace state (see [`digest`]).
    pub fn digest(&self) -> Result<[u8; 32], MetaError> {
        digest(&self.read_view()?)
    }
}

fn read_last_applied(
    meta: &impl ReadableTable<&'static str, Bytes>,
) -> Result<Option<LogPos>, MetaError> {
    match meta.get(LAST_APPLIED).map_err(MetaError::storage)? {
        Some(v) => decode(Table::Counters, LAST_APPLIED.as_bytes(), v.value()).map(Some),
        None => Ok(None),
    }
}

fn remembered(view: &WriteView<'_>, cmd: &Command) -> Result<Reply, MetaError> {
    if cmd.seq == 0 {
        return Ok(Err(FsError::Stale));
    }
    Ok(view
        .rec::<Reply>(Table::Requests, &keys::request(cmd.session, cmd.seq))?
        .unwrap_or(Err(FsError::Stale)))
}

fn get_from(
    t: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, MetaError> {
    Ok(t.get(key)
        .map_err(MetaError::storage)?
        .map(|v| v.value().to_vec()))
}

fn scan_from(
    t: &impl ReadableTable<Bytes, Bytes>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, MetaError> {
    if end.is_some_and(|e| e <= start) {
        return Ok(Vec::new());
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let range = t
        .range::<&[u8]>((Bound::Included(start), upper))
        .map_err(MetaError::storage)?;
    let mut out = Vec::new();
    for item in range.take(limit) {
        let (k, v) = item.map_err(MetaError::storage)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

/// The open tables of a write transaction, indexed like `Table::ALL`.
struct WriteView<'txn> {
    tables: Vec<redb::Table<'txn, Bytes, Bytes>>,
}

impl<'txn> WriteView<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<WriteView<'txn>, MetaError> {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(def(table)).map_err(MetaError::storage)?);
        }
        Ok(WriteView { tables })
    }
}

impl StoreRead for WriteView<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        get_from(&self.tables[table as usize], key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, MetaError> {
        scan_from(&self.tables[table as usize], start, end, limit)
    }
}

impl Store for WriteView<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.tables[table as usize]
            .insert(key, value)
            .map_err(MetaError::storage)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), MetaError> {
        self.tables[table as usize]
            .remove(key)
            .map_err(MetaError::storage)?;
        Ok(())
    }
}

/// A read-only snapshot of the namespace; owns its read transaction, so it is `Send` and may
/// outlive later applies.
pub struct RedbView {
    tables: Vec<redb::ReadOnlyTable<Bytes, Bytes>>,
}

impl std::fmt::Debug for RedbView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbView").finish_non_exhaustive()
    }
}

impl StoreRead for RedbView {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        get_from(&self.tables[table as usize], key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, MetaError> {
        scan_from(&self.tables[table as usize], start, end, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::command::{Op, Query, Response};
    use crate::namespace::query;
    use crate::namespace::store::MemStore;

    fn cmd(session: u64, seq: u64, now_ns: i64, op: Op) -> Command {
        Command {
            session,
            seq,
            seq_floor: 0,
            now_ns,
            op,
        }
    }

    fn script() -> Vec<(LogPos, Command)> {
        let ops = vec![
            cmd(
                0,
                0,
                1,
                Op::Format {
                    uid: 0,
                    gid: 0,
                    perm: 0o755,
                },
            ),
            cmd(
                0,
                0,
                2,
                Op::OpenSession {
                    client: "c".into(),
                    lease_ns: 100,
                },
            ),
            cmd(
                1,
                1,
                3,
                Op::Mkdir {
                    parent: 1,
                    name: "d".into(),
                    perm: 0o700,
                    uid: 5,
                    gid: 5,
                },
            ),
            cmd(
                1,
                2,
                4,
                Op::Mkdir {
                    parent: 1,
                    name: "d".into(),
                    perm: 0o700,
                    uid: 5,
                    gid: 5,
                },
            ),
            cmd(
                1,
                3,
                5,
                Op::Unlink {
                    parent: 1,
                    name: "d".into(),
                },
            ),
        ];
        ops.into_iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    LogPos {
                        term: 1,
                        index: i as u64 + 1,
                    },
                    c,
                )
            })
            .collect()
    }

    #[test]
    fn batch_matches_the_memory_store_byte_for_byte() {
        let entries = script();
        let mut mem = MemStore::new();
        let mem_replies: Vec<Reply> = entries
            .iter()
            .map(|(_, c)| apply(&mut mem, c).unwrap())
            .collect();
        let mut db = RedbStore::in_memory().unwrap();
        let replies = db.apply_batch(&entries[..2]).unwrap();
        let mut all = replies;
        all.extend(db.apply_batch(&entries[2..]).unwrap());
        assert_eq!(all, mem_replies);
        assert_eq!(all[3], Err(FsError::Exists));
        assert_eq!(db.digest().unwrap(), digest(&mem).unwrap());
        assert_eq!(
            db.last_applied().unwrap(),
            Some(LogPos { term: 1, index: 5 })
        );
        let view = db.read_view().unwrap();
        assert!(matches!(
            query(
                &view,
                &Query::Lookup {
                    parent: 1,
                    name: "d".into()
                }
            ),
            Ok(Ok(Response::Attr(_)))
        ));
    }

    #[test]
    fn replaying_applied_entries_is_harmless() {
        let entries = script();
        let mut db = RedbStore::in_memory().unwrap();
        let first = db.apply_batch(&entries).unwrap();
        let state = db.digest().unwrap();
        let again = db.apply_batch(&entries).unwrap();
        assert_eq!(db.digest().unwrap(), state);
        // Deduplicated commands get their first reply; the others cannot be answered.
        assert_eq!(again[2..], first[2..]);
        assert_eq!(again[0], Err(FsError::Stale));
    }

    #[test]
    fn state_survives_reopen() {
        let path =
            std::env::temp_dir().join(format!("tessera-meta-test-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let entries = script();
        let state = {
            let mut db = RedbStore::open(&path).unwrap();
            db.apply_batch(&entries).unwrap();
            db.digest().unwrap()
        };
        let db = RedbStore::open(&path).unwrap();
        assert_eq!(db.digest().unwrap(), state);
        assert_eq!(db.last_applied().unwrap().map(|p| p.index), Some(5));
        drop(db);
        std::fs::remove_file(&path).unwrap();
    }
}

/// Where the Raft layer keeps its own bookkeeping (last applied log id, membership) as opaque
/// bytes, written in the same transaction as the commands it describes.
const RAFT_META: &str = "raft_meta";

/// Version of the snapshot image format produced by [`RedbStore::export_image`].
const IMAGE_VERSION: u8 = 1;
/// Table number of the bookkeeping table inside an image.
const IMAGE_META_TABLE: u8 = u8::MAX;

/// One table's rows inside a snapshot image.
#[derive(Serialize, Deserialize)]
struct ImageTable {
    table: u8,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Operations the Raft adapter needs: applies that also record Raft bookkeeping, durability
/// on demand, and whole-state images for snapshots.
impl RedbStore {
    /// Applies a run of log entries in one write transaction, like [`RedbStore::apply_batch`],
    /// where `None` stands for a log entry without a command (blank or membership): it only
    /// advances `last_applied`. `raft_meta` is stored in the same transaction.
    ///
    /// The commit is not fsynced: the Raft log is the durable record and a restart replays
    /// what was lost. Call [`RedbStore::sync`] before relying on the state being on disk.
    pub fn apply_logged(
        &self,
        entries: &[(LogPos, Option<Command>)],
        raft_meta: &[u8],
    ) -> Result<Vec<Option<Reply>>, MetaError> {
        let entries = entries.iter().map(|(pos, cmd)| (*pos, cmd.as_ref()));
        self.apply_in_txn(entries, Some(raft_meta), redb::Durability::None)
    }

    /// The Raft bookkeeping stored by the last apply or snapshot install.
    pub fn raft_meta(&self) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read().map_err(MetaError::storage)?;
        let meta = txn.open_table(META).map_err(MetaError::storage)?;
        Ok(meta
            .get(RAFT_META)
            .map_err(MetaError::storage)?
            .map(|v| v.value().to_vec()))
    }

    /// Makes every earlier commit durable (one fsync).
    pub fn sync(&self) -> Result<(), MetaError> {
        let mut txn = self.db.begin_write().map_err(MetaError::storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(MetaError::storage)?;
        txn.commit().map_err(MetaError::storage)
    }

    /// An image of the whole state and its Raft bookkeeping, both from one read transaction,
    /// so the bookkeeping describes exactly the data in the image.
    pub fn export_image(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), MetaError> {
        let txn = self.db.begin_read().map_err(MetaError::storage)?;
        let mut tables = Vec::with_capacity(Table::ALL.len() + 1);
        for table in Table::ALL {
            let t = txn.open_table(def(table)).map_err(MetaError::storage)?;
            tables.push(ImageTable {
                table: table as u8,
                rows: scan_from(&t, &[], None, usize::MAX)?,
            });
        }
        let meta = txn.open_table(META).map_err(MetaError::storage)?;
        let mut meta_rows = Vec::new();
        let mut raft_meta = None;
        for row in meta.iter().map_err(MetaError::storage)? {
            let (k, v) = row.map_err(MetaError::storage)?;
            if k.value() == RAFT_META {
                raft_meta = Some(v.value().to_vec());
            }
            meta_rows.push((k.value().as_bytes().to_vec(), v.value().to_vec()));
        }
        tables.push(ImageTable {
            table: IMAGE_META_TABLE,
            rows: meta_rows,
        });
        let mut image = vec![IMAGE_VERSION];
        image.extend(postcard::to_stdvec(&tables).map_err(|e| MetaError::BadImage(e.to_string()))?);
        Ok((image, raft_meta))
    }

    /// Replaces the whole state with an image from [`RedbStore::export_image`] (taken on
    /// another replica) and records `raft_meta`, durably, in one transaction.
    pub fn import_image(&self, image: &[u8], raft_meta: &[u8]) -> Result<(), MetaError> {
        let tables: Vec<ImageTable> = match image.split_first() {
            Some((&IMAGE_VERSION, rest)) => postcard::from_bytes(rest)
                .map_err(|e| MetaError::BadImage(format!("does not decode: {e}")))?,
            Some((v, _)) => {
                return Err(MetaError::BadImage(format!(
                    "version {v} is not supported (this build reads {IMAGE_VERSION})"
                )));
            }
            None => return Err(MetaError::BadImage("empty".into())),
        };
        let mut txn = self.db.begin_write().map_err(MetaError::storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(MetaError::storage)?;
        {
            let mut view = WriteView::open(&txn)?;
            for t in &mut view.tables {
                t.retain(|_, _| false).map_err(MetaError::storage)?;
            }
            let mut meta = txn.open_table(META).map_err(MetaError::storage)?;
            meta.retain(|_, _| false).map_err(MetaError::storage)?;
            for t in &tables {
                if t.table == IMAGE_META_TABLE {
                    for (k, v) in &t.rows {
                        let key = std::str::from_utf8(k)
                            .map_err(|_| MetaError::BadImage("non-UTF-8 bookkeeping key".into()))?;
                        meta.insert(key, v.as_slice()).map_err(MetaError::storage)?;
                    }
                    continue;
                }
                let Some(table) = view.tables.get_mut(t.table as usize) else {
                    return Err(MetaError::BadImage(format!("unknown table {}", t.table)));
                };
                for (k, v) in &t.rows {
                    table
                        .insert(k.as_slice(), v.as_slice())
                        .map_err(MetaError::storage)?;
                }
            }
            meta.insert(RAFT_META, raft_meta)
                .map_err(MetaError::storage)?;
        }
        txn.commit().map_err(MetaError::storage)
    }
}

impl RedbStore {
    /// The digest and the log position it reflects, read from one transaction so they agree
    /// even while applies continue.
    pub fn digest_at(&self) -> Result<(Option<LogPos>, [u8; 32]), MetaError> {
        let txn = self.db.begin_read().map_err(MetaError::storage)?;
        let meta = txn.open_table(META).map_err(MetaError::storage)?;
        let last = read_last_applied(&meta)?;
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(def(table)).map_err(MetaError::storage)?);
        }
        Ok((last, digest(&RedbView { tables })?))
    }
}
