//! The values stored in each table. Changing a field's meaning or order is a format change:
//! bump [`FORMAT_VERSION`](super::codec::FORMAT_VERSION) and add a migration to `decode`
//! (or, for one table, give its records their own format as inodes have, see
//! [`INODE_FORMAT`]).

use super::codec::{decode_body, encode_as, split_version, unknown_version};
use super::store::Table;
use crate::error::NamespaceError;
use serde::{Deserialize, Serialize};
use tessera_proto::fs::{
    Attr, FileKind, INODE_FLAGS, INODE_READ_ONLY, Ino, LockKind, Slice, StripeLayout,
};

/// The format inode records are written in. Format 1 had no `blocks`, `flags` or
/// `reserved`; its records read back with [`BLOCKS_UNCOUNTED`] (the first change to such a
/// file's data counts them), no flags and nothing reserved.
pub const INODE_FORMAT: u8 = 2;

/// `InodeRec::blocks` of a record from before blocks were counted.
pub const BLOCKS_UNCOUNTED: u64 = u64::MAX;

/// Bytes per block of `InodeRec::blocks` (ext4's block size; `st_blocks` is in 512-byte
/// units, so a block is 8 of them).
pub const DATA_BLOCK: u64 = 4096;

/// `inodes[ino]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct InodeRec {
    pub kind: FileKind,
    pub perm: u16,
    /// Names pointing at the inode; for a directory 2 + subdirectories ("." and its entry in
    /// the parent). 0 means unlinked: the inode lives on only while some session has it open.
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Bytes for a file, target length for a symlink, number of entries for a directory.
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub generation: u64,
    /// Directories only: the containing directory, so rename can walk up and refuse to move a
    /// directory into its own subtree, and readdir can answer "..". The root is its own parent.
    pub parent: Ino,
    /// Directories only: the cookie the next new entry gets. Cookies only grow, which keeps
    /// readdir offsets valid while entries come and go.
    pub next_cookie: u64,
    /// Symlinks only: the target, stored inline.
    pub target: Vec<u8>,
    /// Opens across all sessions; an unlinked inode is freed when this reaches 0.
    pub opens: u32,
    /// Regular files: `DATA_BLOCK`-sized blocks of the file that hold stored data (a block
    /// any slice with data touches; holes are not counted), kept in step by every change to
    /// the chunk records, so `st_blocks` shows sparse files as sparse.
    pub blocks: u64,
    /// Inode flags (`chattr`: `INODE_IMMUTABLE`, `INODE_APPEND`), enforced in `flags.rs`.
    pub flags: u32,
    /// Regular files: preallocated byte ranges `[start, end)` that hold no data yet,
    /// disjoint and in order (`reserve.rs`).
    pub reserved: Vec<(u64, u64)>,
}

/// An inode record of format 1 (no `blocks`).
#[derive(Deserialize)]
struct InodeRecV1 {
    kind: FileKind,
    perm: u16,
    nlink: u32,
    uid: u32,
    gid: u32,
    rdev: u32,
    size: u64,
    atime: i64,
    mtime: i64,
    ctime: i64,
    generation: u64,
    parent: Ino,
    next_cookie: u64,
    target: Vec<u8>,
    opens: u32,
}

impl InodeRec {
    pub fn encode(&self) -> Vec<u8> {
        encode_as(INODE_FORMAT, self)
    }

    /// Reads a record of this or an older format.
    pub fn decode(key: &[u8], bytes: &[u8]) -> Result<InodeRec, NamespaceError> {
        match split_version(Table::Inodes, key, bytes)? {
            (INODE_FORMAT, body) => decode_body(Table::Inodes, key, body),
            (1, body) => {
                let v1: InodeRecV1 = decode_body(Table::Inodes, key, body)?;
                Ok(InodeRec {
                    kind: v1.kind,
                    perm: v1.perm,
                    nlink: v1.nlink,
                    uid: v1.uid,
                    gid: v1.gid,
                    rdev: v1.rdev,
                    size: v1.size,
                    atime: v1.atime,
                    mtime: v1.mtime,
                    ctime: v1.ctime,
                    generation: v1.generation,
                    parent: v1.parent,
                    next_cookie: v1.next_cookie,
                    target: v1.target,
                    opens: v1.opens,
                    blocks: BLOCKS_UNCOUNTED,
                    flags: 0,
                    reserved: Vec::new(),
                })
            }
            (found, _) => Err(unknown_version(Table::Inodes, key, found, INODE_FORMAT)),
        }
    }

    /// `st_blocks` (512-byte units): a regular file's stored data blocks (its size rounded
    /// up, for a record not yet counted), one block for a directory (as on ext4), none for
    /// other kinds (a symlink's target lives in the record).
    pub fn st_blocks(&self) -> u64 {
        let per_block = DATA_BLOCK / 512;
        match self.kind {
            FileKind::Regular if self.blocks == BLOCKS_UNCOUNTED => {
                self.size.div_ceil(DATA_BLOCK) * per_block
            }
            FileKind::Regular => self.blocks.saturating_mul(per_block),
            FileKind::Directory => per_block,
            _ => 0,
        }
    }

    pub fn attr(&self, ino: Ino) -> Attr {
        Attr {
            ino,
            generation: self.generation,
            kind: self.kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            size: self.size,
            blocks: self.st_blocks(),
            flags: self.flags & (INODE_FLAGS | INODE_READ_ONLY),
            atime_ns: self.atime,
            mtime_ns: self.mtime,
            ctime_ns: self.ctime,
        }
    }
}

/// `dentries[(parent, name)]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DentryRec {
    pub ino: Ino,
    pub kind: FileKind,
    /// This entry's key in `dir_cookies`, i.e. its readdir position.
    pub cookie: u64,
}

/// `chunks[(ino, index)]`: disjoint slices in offset order (commits lay new slices over old
/// ones). Records from before that are in commit order, later slices shadowing earlier ones;
/// a commit to the chunk flattens them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkRec {
    pub slices: Vec<Slice>,
}

/// Whether a stripe's shards may still be referenced.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeState {
    /// Readable. With refcount 0 it waits in `gc_queue` and a new reference revives it.
    Live,
    /// A GC worker claimed it and may be deleting shards: new references must wait.
    Deleting,
}

/// `stripes[id]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StripeRec {
    pub layout: StripeLayout,
    /// Slices referencing this stripe, across all files.
    pub refcount: u64,
    pub state: StripeState,
    /// When the refcount last reached 0: the time part of its `gc_queue` key.
    pub queued_at: Option<i64>,
}

impl StripeRec {
    /// Raw bytes the stripe occupies on chunkservers, for statfs.
    pub fn stored_bytes(&self) -> u64 {
        let shards = u64::from(self.layout.k) + u64::from(self.layout.m);
        self.layout.shard_len.saturating_mul(shards)
    }
}

/// `sessions[id]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionRec {
    /// Free text from the client (host, mount point) for admin output.
    pub client: String,
    pub lease_until: i64,
    /// Replies to sequence numbers below this were received by the client and forgotten.
    pub seq_floor: u64,
}

/// `open_files[(session, ino)]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRec {
    pub count: u32,
}

/// `orphans[ino]`: unlinked but still open somewhere.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrphanRec {
    pub since: i64,
}

/// `trash[ino]`: a file whose last name went, kept until the retention runs out (`trash.rs`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TrashRec {
    pub deleted_ns: i64,
    /// The directory it was deleted from, and its name there.
    pub parent: Ino,
    pub name: Vec<u8>,
}

/// `caps[(ino, session)]`: a capability (`caps.rs`); `session_caps[(session, ino)]` is its
/// index by session, with an empty value.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRec {
    pub exclusive: bool,
}

/// `delegations[(session, first)]`: inode numbers `first..end` handed to a session for
/// creates it completes in its mount (`delegate.rs`); `next` is the lowest it may still use.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelegationRec {
    pub next: Ino,
    pub end: Ino,
}

/// `locks[(ino, flavor, session, owner, start)]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRec {
    pub kind: LockKind,
    /// Last byte, inclusive.
    pub end: u64,
    pub pid: u32,
}
