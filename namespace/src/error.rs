//! The namespace's one error type.
//!
//! POSIX failures of a command (ENOENT, EEXIST, ...) are not errors here: they are part of the
//! command's reply (`tessera_proto::fs::FsError`) and are replicated like any other outcome.
//! `NamespaceError` is for failures that must stop the state machine instead: the store could
//! not be read or written, or it holds bytes this build cannot decode. Continuing past either
//! would let this replica diverge from the others.

use crate::store::Table;

/// The cause of a store failure, whatever the backend (this crate names no database).
pub type StorageCause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The store's backend failed (I/O error, full disk, corrupt page). The replica must stop
    /// applying and be restarted, or rebuilt from a snapshot if the file is damaged.
    #[error("metadata store failed: {0}; check the disk and the metaserver log, then restart")]
    Storage(StorageCause),

    /// A stored value does not decode. Nothing in this build writes such bytes, so the file
    /// was damaged or written by a different program.
    #[error(
        "corrupt value in table {table} at key {key}: {reason}; rebuild this replica from a snapshot"
    )]
    Corrupt {
        table: Table,
        key: String,
        reason: String,
    },

    /// A stored value carries a format version newer than this build understands.
    #[error(
        "value in table {table} at key {key} has format version {found}, this build reads up to \
         {supported}; run a newer tessera"
    )]
    UnknownVersion {
        table: Table,
        key: String,
        found: u8,
        supported: u8,
    },

    /// The tables contradict each other (for example a directory entry naming a missing inode).
    /// Applying further commands could spread the damage, so the state machine stops.
    #[error("namespace invariant broken: {what} (inode {ino}); run fsck on a copy of this replica")]
    Invariant { what: &'static str, ino: u64 },

    /// A snapshot or backup image could not be used (damaged in transfer, or from a build
    /// with another image format). Nothing was changed.
    #[error("snapshot image rejected: {0}")]
    BadImage(String),
}

impl NamespaceError {
    /// A backend failure: a store implementation maps its own errors through this.
    pub fn storage(cause: impl Into<StorageCause>) -> NamespaceError {
        NamespaceError::Storage(cause.into())
    }
}
