//! What the Raft adapter needs from the store besides plain applies: applies that also record
//! its bookkeeping, durability on demand, and whole-state images for snapshots.

use super::view::{WriteView, scan_from};
use super::{LogPos, META, RedbStore, def, storage};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tessera_namespace::{Command, NamespaceError, Reply, Table};

/// Where the Raft layer keeps its own bookkeeping (last applied log id, membership) as opaque
/// bytes, written in the same transaction as the commands it describes.
pub(super) const RAFT_META: &str = "raft_meta";

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
    ) -> Result<Vec<Option<Reply>>, NamespaceError> {
        let entries = entries.iter().map(|(pos, cmd)| (*pos, cmd.as_ref()));
        self.apply_in_txn(entries, Some(raft_meta), redb::Durability::None)
    }

    /// The Raft bookkeeping stored by the last apply or snapshot install.
    pub fn raft_meta(&self) -> Result<Option<Vec<u8>>, NamespaceError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        Ok(meta
            .get(RAFT_META)
            .map_err(storage)?
            .map(|v| v.value().to_vec()))
    }

    /// Makes every earlier commit durable (one fsync).
    pub fn sync(&self) -> Result<(), NamespaceError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// An image of the whole state and its Raft bookkeeping, both from one read transaction,
    /// so the bookkeeping describes exactly the data in the image.
    pub fn export_image(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), NamespaceError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let mut tables = Vec::with_capacity(Table::ALL.len() + 1);
        for table in Table::ALL {
            let t = txn.open_table(def(table)).map_err(storage)?;
            tables.push(ImageTable {
                table: table as u8,
                rows: scan_from(&t, &[], None, usize::MAX)?,
            });
        }
        let meta = txn.open_table(META).map_err(storage)?;
        let mut meta_rows = Vec::new();
        let mut raft_meta = None;
        for row in meta.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
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
        image.extend(
            postcard::to_stdvec(&tables).map_err(|e| NamespaceError::BadImage(e.to_string()))?,
        );
        Ok((image, raft_meta))
    }

    /// Replaces the whole state with an image from [`RedbStore::export_image`] (taken on
    /// another replica) and records `raft_meta`, durably, in one transaction.
    pub fn import_image(&self, image: &[u8], raft_meta: &[u8]) -> Result<(), NamespaceError> {
        let tables: Vec<ImageTable> = match image.split_first() {
            Some((&IMAGE_VERSION, rest)) => postcard::from_bytes(rest)
                .map_err(|e| NamespaceError::BadImage(format!("does not decode: {e}")))?,
            Some((v, _)) => {
                return Err(NamespaceError::BadImage(format!(
                    "version {v} is not supported (this build reads {IMAGE_VERSION})"
                )));
            }
            None => return Err(NamespaceError::BadImage("empty".into())),
        };
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(storage)?;
        {
            let mut view = WriteView::open(&txn)?;
            for t in &mut view.tables {
                t.retain(|_, _| false).map_err(storage)?;
            }
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.retain(|_, _| false).map_err(storage)?;
            for t in &tables {
                if t.table == IMAGE_META_TABLE {
                    for (k, v) in &t.rows {
                        let key = std::str::from_utf8(k).map_err(|_| {
                            NamespaceError::BadImage("non-UTF-8 bookkeeping key".into())
                        })?;
                        meta.insert(key, v.as_slice()).map_err(storage)?;
                    }
                    continue;
                }
                let Some(table) = view.tables.get_mut(t.table as usize) else {
                    return Err(NamespaceError::BadImage(format!(
                        "unknown table {}",
                        t.table
                    )));
                };
                for (k, v) in &t.rows {
                    table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
                }
            }
            meta.insert(RAFT_META, raft_meta).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }
}
