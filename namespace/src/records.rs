//! The values stored in each table. Changing a field's meaning or order is a format change:
//! bump [`FORMAT_VERSION`](super::codec::FORMAT_VERSION) and add a migration to `decode`.

use serde::{Deserialize, Serialize};
use tessera_proto::fs::{Attr, FileKind, Ino, LockKind, Slice, StripeLayout};

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
}

impl InodeRec {
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

/// `locks[(ino, flavor, session, owner, start)]`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRec {
    pub kind: LockKind,
    /// Last byte, inclusive.
    pub end: u64,
    pub pid: u32,
}
