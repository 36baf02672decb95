//! The storage seam of the namespace: a handful of ordered byte-key tables.
//!
//! `apply` and `query` see the state only through [`StoreRead`] and [`Store`], so the same
//! logic runs over an in-memory map (tests, model checking) and over redb (the metaserver).
//! Both implementations hold identical bytes for identical histories, which is what makes
//! [`digest`](super::digest) comparable across replicas and store kinds.
//!
//! Key layouts (all integers big-endian so byte order is numeric order):
//!
//! | table | key | value |
//! |---|---|---|
//! | inodes | ino | `InodeRec` |
//! | dentries | parent, name | `DentryRec` |
//! | dir_cookies | dir, cookie | name |
//! | xattrs | ino, name | value bytes |
//! | chunks | ino, chunk index | `ChunkRec` |
//! | stripes | stripe id (32 bytes) | `StripeRec` |
//! | sessions | session | `SessionRec` |
//! | open_files | session, ino | `OpenRec` |
//! | orphans | ino | `OrphanRec` |
//! | gc_queue | queued time (sign-flipped), stripe id | `()` |
//! | locks | ino, flavor, session, owner, start | `LockRec` |
//! | requests | session, seq | `Reply` |
//! | counters | name | `u64` |
//! | trash | ino | `TrashRec` |
//! | caps | ino, session | `CapRec` |
//! | session_caps | session, ino | `()` |
//! | quotas | directory ino | `QuotaRec` (`quota.rs`) |
//! | file_links | ino, parent, name | `()`: one row per name of a non-directory |
//! | snapshot_dirs | directory ino | its `.snapshots` directory's ino (`snapshot.rs`) |
//! | snapshots | directory ino, name | `SnapshotRec` |
//! | snapshot_jobs | job | `JobRec` (`snapshot_copy.rs`) |
//! | snapshot_copied | job, ino | the ino of its copy |
//! | snapshot_queue | job, directory ino | cursor: the last name copied |
//! | snapshot_excluded | job, directory ino, name | `()`: made after the snapshot |

use crate::error::NamespaceError;
use std::collections::BTreeMap;
use std::fmt;

/// One ordered table of the namespace state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Inodes,
    Dentries,
    DirCookies,
    Xattrs,
    Chunks,
    Stripes,
    Sessions,
    OpenFiles,
    Orphans,
    GcQueue,
    Locks,
    Requests,
    Counters,
    Trash,
    Caps,
    SessionCaps,
    Quotas,
    FileLinks,
    SnapshotDirs,
    Snapshots,
    SnapshotJobs,
    SnapshotCopied,
    SnapshotQueue,
    SnapshotExcluded,
    Delegations,
}

impl Table {
    /// Every table, in the order the digest visits them.
    pub const ALL: [Table; 25] = [
        Table::Inodes,
        Table::Dentries,
        Table::DirCookies,
        Table::Xattrs,
        Table::Chunks,
        Table::Stripes,
        Table::Sessions,
        Table::OpenFiles,
        Table::Orphans,
        Table::GcQueue,
        Table::Locks,
        Table::Requests,
        Table::Counters,
        Table::Trash,
        Table::Caps,
        Table::SessionCaps,
        Table::Quotas,
        Table::FileLinks,
        Table::SnapshotDirs,
        Table::Snapshots,
        Table::SnapshotJobs,
        Table::SnapshotCopied,
        Table::SnapshotQueue,
        Table::SnapshotExcluded,
        Table::Delegations,
    ];

    /// Stable name: the redb table name and the label in errors. Never rename one.
    pub fn name(self) -> &'static str {
        match self {
            Table::Inodes => "inodes",
            Table::Dentries => "dentries",
            Table::DirCookies => "dir_cookies",
            Table::Xattrs => "xattrs",
            Table::Chunks => "chunks",
            Table::Stripes => "stripes",
            Table::Sessions => "sessions",
            Table::OpenFiles => "open_files",
            Table::Orphans => "orphans",
            Table::GcQueue => "gc_queue",
            Table::Locks => "locks",
            Table::Requests => "requests",
            Table::Counters => "counters",
            Table::Trash => "trash",
            Table::Caps => "caps",
            Table::SessionCaps => "session_caps",
            Table::Quotas => "quotas",
            Table::FileLinks => "file_links",
            Table::SnapshotDirs => "snapshot_dirs",
            Table::Snapshots => "snapshots",
            Table::SnapshotJobs => "snapshot_jobs",
            Table::SnapshotCopied => "snapshot_copied",
            Table::SnapshotQueue => "snapshot_queue",
            Table::SnapshotExcluded => "snapshot_excluded",
            Table::Delegations => "delegations",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Tables whose keys start with the inode they describe (for entries and cookies, the
/// directory): what a cap on an inode covers, and what a snapshot copies of it.
pub(crate) const INODE_TABLES: [Table; 5] = [
    Table::Inodes,
    Table::Dentries,
    Table::DirCookies,
    Table::Xattrs,
    Table::Chunks,
];

/// A key and its value, as a range scan returns them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Read access to the tables: what queries need, and what a snapshot view provides.
pub trait StoreRead {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, NamespaceError>;

    /// Up to `limit` entries with `start <= key < end` (no upper bound when `end` is `None`),
    /// in key order. Returning owned vectors keeps the trait object-safe and free of iterator
    /// lifetimes; callers page with `limit` where a range may be large.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, NamespaceError>;
}

/// Write access. Only [`apply`](super::apply) writes, and it writes through a per-command
/// overlay, so a command that fails with a POSIX error leaves no trace.
pub trait Store: StoreRead {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), NamespaceError>;
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), NamespaceError>;
}

/// The smallest key greater than every key that starts with `prefix`, or `None` when no such
/// key exists (the prefix is all `0xff`). Used as the exclusive end of prefix scans.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Every entry whose key starts with `prefix`.
pub fn scan_prefix<S: StoreRead + ?Sized>(
    store: &S,
    table: Table,
    prefix: &[u8],
) -> Result<Vec<Entry>, NamespaceError> {
    let end = prefix_end(prefix);
    store.scan(table, prefix, end.as_deref(), usize::MAX)
}

/// The in-memory store: one `BTreeMap` per table. Used by tests and by tools that load a
/// snapshot to inspect it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    tables: [BTreeMap<Vec<u8>, Vec<u8>>; Table::ALL.len()],
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

impl StoreRead for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, NamespaceError> {
        Ok(self.tables[table.index()].get(key).cloned())
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, NamespaceError> {
        use std::ops::Bound;
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        Ok(self.tables[table.index()]
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl Store for MemStore {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), NamespaceError> {
        self.tables[table.index()].insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), NamespaceError> {
        self.tables[table.index()].remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_carries_over_ff() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }

    #[test]
    fn scan_is_ordered_and_bounded() {
        let mut s = MemStore::new();
        for k in [3u8, 1, 2, 5] {
            s.put(Table::Inodes, &[k], &[k]).unwrap();
        }
        let got: Vec<u8> = s
            .scan(Table::Inodes, &[2], Some(&[5]), 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(got, vec![2, 3]);
        assert_eq!(s.scan(Table::Inodes, &[0], None, 1).unwrap().len(), 1);
        assert!(
            s.scan(Table::Inodes, &[5], Some(&[2]), 10)
                .unwrap()
                .is_empty()
        );
        assert!(s.scan(Table::Dentries, &[], None, 10).unwrap().is_empty());
    }
}
