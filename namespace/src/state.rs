//! Typed access to the tables: keys, records, counters and the common "must exist" checks.

use super::codec::{Key, decode, encode};
use super::records::{DentryRec, InodeRec, OpenRec, SessionRec, StripeRec};
use super::store::{Store, StoreRead, Table};
use crate::error::NamespaceError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tessera_proto::fs::{FsError, Ino, StripeId};
use tessera_proto::meta::CapHolder;

/// Why an operation stopped: a POSIX outcome for the client, or a store failure that must
/// stop the state machine. Handlers use `?` on both.
#[derive(Debug)]
pub(crate) enum OpError {
    Fs(FsError),
    Meta(NamespaceError),
    /// Caps of other sessions stand in the way (`caps.rs`): the command changes nothing.
    Recall(Vec<CapHolder>),
}

impl From<FsError> for OpError {
    fn from(e: FsError) -> Self {
        OpError::Fs(e)
    }
}

impl From<NamespaceError> for OpError {
    fn from(e: NamespaceError) -> Self {
        OpError::Meta(e)
    }
}

pub(crate) type OpResult<T> = Result<T, OpError>;

/// Names in the counters table.
pub(crate) mod counter {
    /// The next inode number to hand out (inode numbers are never reused).
    pub const NEXT_INO: &[u8] = b"next_ino";
    /// The next session id.
    pub const NEXT_SESSION: &[u8] = b"next_session";
    /// Inodes in existence, for statfs.
    pub const INODES: &[u8] = b"inodes";
    /// Raw bytes of all stripes on chunkservers, for statfs.
    pub const STORED_BYTES: &[u8] = b"stored_bytes";
    /// Generation given to new inodes; bumped only by an admin restoring an old backup, so
    /// recycled inode numbers cannot be mistaken for the old files.
    pub const GENERATION: &[u8] = b"generation";
    /// 1 once any POSIX ACL was stored, never cleared: until then a mount answers the
    /// kernel's ACL reads itself ("none") instead of asking per inode.
    pub const ACLS_USED: &[u8] = b"acls_used";
    /// File bytes preallocated and not written yet, across all inodes (`reserve.rs`).
    pub const RESERVED_BYTES: &[u8] = b"reserved_bytes";
    /// Seconds a file whose last name goes is kept in the trash (0, and unset: not kept).
    pub const TRASH_RETENTION_S: &[u8] = b"trash_retention_s";
    /// The next snapshot copy job's number (`snapshot_copy.rs`).
    pub const NEXT_SNAPSHOT_JOB: &[u8] = b"next_snapshot_job";
}

/// Key builders, one per table, so layouts live in one place.
pub(crate) mod keys {
    use super::*;

    pub fn inode(ino: Ino) -> Vec<u8> {
        Key::new().u64(ino).done()
    }
    pub fn dentry(parent: Ino, name: &[u8]) -> Vec<u8> {
        Key::new().u64(parent).bytes(name).done()
    }
    pub fn cookie(dir: Ino, cookie: u64) -> Vec<u8> {
        Key::new().u64(dir).u64(cookie).done()
    }
    pub fn xattr(ino: Ino, name: &[u8]) -> Vec<u8> {
        Key::new().u64(ino).bytes(name).done()
    }
    pub fn chunk(ino: Ino, index: u64) -> Vec<u8> {
        Key::new().u64(ino).u64(index).done()
    }
    pub fn stripe(id: &StripeId) -> Vec<u8> {
        id.0.to_vec()
    }
    pub fn session(id: u64) -> Vec<u8> {
        Key::new().u64(id).done()
    }
    pub fn open(session: u64, ino: Ino) -> Vec<u8> {
        Key::new().u64(session).u64(ino).done()
    }
    pub fn gc(queued_at: i64, id: &StripeId) -> Vec<u8> {
        Key::new().i64(queued_at).bytes(&id.0).done()
    }
    pub fn request(session: u64, seq: u64) -> Vec<u8> {
        Key::new().u64(session).u64(seq).done()
    }
}

/// Typed reads, available on every store.
pub(crate) trait Tables: StoreRead {
    fn rec<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &[u8],
    ) -> Result<Option<T>, NamespaceError> {
        match self.get(table, key)? {
            Some(bytes) => decode(table, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn inode(&self, ino: Ino) -> Result<Option<InodeRec>, NamespaceError> {
        let key = keys::inode(ino);
        match self.get(Table::Inodes, &key)? {
            Some(bytes) => InodeRec::decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn dentry(&self, parent: Ino, name: &[u8]) -> Result<Option<DentryRec>, NamespaceError> {
        self.rec(Table::Dentries, &keys::dentry(parent, name))
    }

    fn stripe(&self, id: &StripeId) -> Result<Option<StripeRec>, NamespaceError> {
        self.rec(Table::Stripes, &keys::stripe(id))
    }

    fn session(&self, id: u64) -> Result<Option<SessionRec>, NamespaceError> {
        self.rec(Table::Sessions, &keys::session(id))
    }

    fn open_rec(&self, session: u64, ino: Ino) -> Result<Option<OpenRec>, NamespaceError> {
        self.rec(Table::OpenFiles, &keys::open(session, ino))
    }

    fn counter(&self, name: &[u8]) -> Result<u64, NamespaceError> {
        Ok(self.rec(Table::Counters, name)?.unwrap_or(0))
    }

    /// The inode, or `ENOENT`.
    fn need_inode(&self, ino: Ino) -> OpResult<InodeRec> {
        self.inode(ino)?.ok_or(OpError::Fs(FsError::NotFound))
    }

    /// A directory that may gain entries: `ENOENT` if missing or already removed (a removed
    /// directory can still be open, but nothing may be created in it), `ENOTDIR` if not one.
    fn need_dir(&self, ino: Ino) -> OpResult<InodeRec> {
        let rec = self.need_inode(ino)?;
        if !rec.kind.is_dir() {
            return Err(FsError::NotDir.into());
        }
        Ok(rec)
    }

    /// `need_dir`, also refusing a directory that was removed while open.
    fn need_live_dir(&self, ino: Ino) -> OpResult<InodeRec> {
        let rec = self.need_dir(ino)?;
        if rec.nlink == 0 {
            return Err(FsError::NotFound.into());
        }
        Ok(rec)
    }
}

impl<S: StoreRead + ?Sized> Tables for S {}

/// Typed writes.
pub(crate) trait TablesMut: Store {
    fn put_rec<T: Serialize>(
        &mut self,
        table: Table,
        key: &[u8],
        value: &T,
    ) -> Result<(), NamespaceError> {
        self.put(table, key, &encode(value))
    }

    fn put_inode(&mut self, ino: Ino, rec: &InodeRec) -> Result<(), NamespaceError> {
        self.put(Table::Inodes, &keys::inode(ino), &rec.encode())
    }

    fn put_counter(&mut self, name: &[u8], value: u64) -> Result<(), NamespaceError> {
        self.put_rec(Table::Counters, name, &value)
    }

    /// Adds a signed amount to a counter, saturating (counters are statistics, not state
    /// other logic depends on, so they must never fail a command).
    fn add_counter(&mut self, name: &[u8], delta: i64) -> Result<(), NamespaceError> {
        let v = self.counter(name)?;
        self.put_counter(name, v.saturating_add_signed(delta))
    }

    /// Read-modify-write of an inode that must exist (the caller checked it earlier in the
    /// same command, so absence means the tables are inconsistent).
    fn update_inode(
        &mut self,
        ino: Ino,
        f: impl FnOnce(&mut InodeRec),
    ) -> Result<InodeRec, NamespaceError> {
        let mut rec = self.inode(ino)?.ok_or(NamespaceError::Invariant {
            what: "inode vanished during a command",
            ino,
        })?;
        f(&mut rec);
        self.put_inode(ino, &rec)?;
        Ok(rec)
    }
}

impl<S: Store + ?Sized> TablesMut for S {}
