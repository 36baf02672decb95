//! File-system wire types shared by the metaserver, the client and admin tools.
//!
//! These are the nouns of the namespace (attributes, directory entries, errors, file layouts,
//! locks). The metaserver's commands are built from them and the FUSE client converts them to
//! and from kernel structures. Times are nanoseconds since the Unix epoch as `i64`, which covers
//! the years 1677..2262 and keeps arithmetic and comparisons trivial. Names are raw bytes:
//! POSIX names are not required to be UTF-8.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Shards are named the same way everywhere; the type lives in [`crate::shard`].
pub use crate::shard::ShardId;

/// Inode number. Allocated from a counter in the namespace and never reused.
pub type Ino = u64;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: Ino = 1;

/// A file is cut into logical chunks of this size; each chunk has its own slice list.
pub const CHUNK_SIZE: u64 = 64 << 20;

/// Longest name of a directory entry, in bytes (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Longest symlink target, in bytes (Linux `PATH_MAX` less the terminating NUL).
pub const SYMLINK_MAX: usize = 4095;

/// Longest extended attribute name, in bytes (Linux `XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest extended attribute value, in bytes (Linux `XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: usize = 65536;

/// Most hard links to a file, and most subdirectories in a directory (ext4's limit).
pub const LINK_MAX: u32 = 65000;

/// Inode flag (`FS_IMMUTABLE_FL`, `chattr +i`): no change to the inode's data, attributes,
/// names or extended attributes; nothing added to or removed from a directory.
pub const INODE_IMMUTABLE: u32 = 0x10;

/// Inode flag (`FS_APPEND_FL`, `chattr +a`): a file may only grow by appending; a directory
/// may gain entries but lose none; the inode cannot be removed, renamed or linked, and its
/// owner, mode, times and extended attributes stay.
pub const INODE_APPEND: u32 = 0x20;

/// The inode flags Tessera keeps (`FS_IOC_GETFLAGS` values).
pub const INODE_FLAGS: u32 = INODE_IMMUTABLE | INODE_APPEND;

/// [`Attr::flags`] bit that is no Linux inode flag (never in `FS_IOC_GETFLAGS`): the inode
/// is part of a snapshot (`tessera snapshot`), so every change is `EROFS` and a mount
/// refuses opens for writing with `EROFS` as a read-only file system would.
pub const INODE_READ_ONLY: u32 = 1 << 30;

/// Largest file size: the last byte must still have a chunk index and offset that fit `u64`.
pub const FILE_SIZE_MAX: u64 = 1 << 60;

/// An access time older than this is refreshed by the next access even under `relatime`.
pub const RELATIME_MAX_AGE_NS: i64 = 24 * 3600 * 1_000_000_000;

/// Whether an access at `now` moves the access time under Linux's `relatime` rule: the
/// access time is not after the modification or change time, or is a day old. Shared by the
/// metadata service (which applies it) and the mount (which asks only when it holds).
pub fn relatime_due(atime_ns: i64, mtime_ns: i64, ctime_ns: i64, now_ns: i64) -> bool {
    atime_ns <= mtime_ns
        || atime_ns <= ctime_ns
        || now_ns.saturating_sub(atime_ns) >= RELATIME_MAX_AGE_NS
}

/// The type of an inode.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// Every kind, for exhaustive tests and generators.
    pub const ALL: [FileKind; 7] = [
        FileKind::Regular,
        FileKind::Directory,
        FileKind::Symlink,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDevice,
        FileKind::BlockDevice,
    ];

    pub fn is_dir(self) -> bool {
        self == FileKind::Directory
    }

    /// The `S_IFMT` bits of `st_mode` for this kind (Linux values).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Fifo => 0o010000,
            FileKind::CharDevice => 0o020000,
            FileKind::Directory => 0o040000,
            FileKind::BlockDevice => 0o060000,
            FileKind::Regular => 0o100000,
            FileKind::Symlink => 0o120000,
            FileKind::Socket => 0o140000,
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`, if they name one.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.mode_bits() == mode & 0o170000)
    }
}

/// Attributes of an inode, as `stat` reports them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    /// Distinguishes incarnations of an inode number (for NFS-style handles).
    pub generation: u64,
    pub kind: FileKind,
    /// Permission bits including set-uid, set-gid and sticky (`mode & 0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number of a character or block device; 0 otherwise.
    pub rdev: u32,
    /// Bytes for files, target length for symlinks, entry count for directories.
    pub size: u64,
    /// `st_blocks`: 512-byte units of storage the inode uses (a file's holes count for none).
    pub blocks: u64,
    /// Inode flags ([`INODE_IMMUTABLE`], [`INODE_APPEND`]).
    pub flags: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Attr {
    /// The full `st_mode`: type bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.perm)
    }

    /// `chattr +i`.
    pub fn immutable(&self) -> bool {
        self.flags & INODE_IMMUTABLE != 0
    }

    /// `chattr +a`.
    pub fn append_only(&self) -> bool {
        self.flags & INODE_APPEND != 0
    }

    /// Part of a snapshot ([`INODE_READ_ONLY`]).
    pub fn read_only(&self) -> bool {
        self.flags & INODE_READ_ONLY != 0
    }
}

/// How `setattr` changes a time stamp (`utimensat` semantics).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetTime {
    /// Leave it alone (`UTIME_OMIT`).
    #[default]
    Omit,
    /// The time the leader stamped into the command (`UTIME_NOW`).
    Now,
    /// This exact time, in nanoseconds since the epoch.
    At(i64),
}

/// The changes of one `setattr` call; every field is optional and all apply atomically.
///
/// ctime is not settable: it becomes the command's time whenever anything changes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// New permission bits; bits outside `0o7777` are ignored.
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Truncate or extend a regular file to this size.
    pub size: Option<u64>,
    pub atime: SetTime,
    pub mtime: SetTime,
}

/// One directory entry. `cookie` is the resume point for the next `readdir` call: it stays
/// valid while the directory changes (entries added after it may or may not be returned,
/// entries present the whole time are returned exactly once).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: FileKind,
    pub cookie: u64,
    /// Filled by `readdirplus`.
    pub attr: Option<Attr>,
}

/// Cookie of the synthesised "." entry; ".." is 2 and real entries start at 3.
pub const COOKIE_DOT: u64 = 1;
/// Cookie of the synthesised ".." entry.
pub const COOKIE_DOTDOT: u64 = 2;
/// First cookie handed to a real directory entry.
pub const COOKIE_FIRST: u64 = 3;

/// File-system statistics, in the shape of `statvfs`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    /// File bytes preallocated and not written yet (not counted in `bfree`: a mount takes
    /// their room off, in its own erasure code's shard bytes).
    pub reserved_bytes: u64,
}

/// A POSIX-level failure of a namespace operation. Each variant is one errno; the FUSE client
/// replies with [`FsError::errno`], so this is the one place where errors become errno values.
#[derive(thiserror::Error, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsError {
    #[error("operation not permitted (EPERM)")]
    NotPermitted,
    #[error("no such file or directory (ENOENT)")]
    NotFound,
    #[error("input/output error (EIO)")]
    Io,
    #[error("argument list too long (E2BIG)")]
    TooBig,
    #[error("bad file handle: not open in this session (EBADF)")]
    BadHandle,
    #[error("resource temporarily unavailable, retry (EAGAIN)")]
    WouldBlock,
    #[error("permission denied (EACCES)")]
    AccessDenied,
    #[error("device or resource busy (EBUSY)")]
    Busy,
    #[error("file exists (EEXIST)")]
    Exists,
    #[error("cross-device link (EXDEV)")]
    CrossDevice,
    #[error("not a directory (ENOTDIR)")]
    NotDir,
    #[error("is a directory (EISDIR)")]
    IsDir,
    #[error("invalid argument (EINVAL)")]
    Invalid,
    #[error("file too large (EFBIG)")]
    FileTooLarge,
    #[error("no space left on device (ENOSPC)")]
    NoSpace,
    #[error("too many links (EMLINK)")]
    TooManyLinks,
    #[error("result out of range (ERANGE)")]
    OutOfRange,
    #[error("resource deadlock would occur (EDEADLK)")]
    Deadlock,
    #[error("file name too long (ENAMETOOLONG)")]
    NameTooLong,
    #[error("directory not empty (ENOTEMPTY)")]
    NotEmpty,
    #[error("too many levels of symbolic links (ELOOP)")]
    Loop,
    #[error("no such attribute (ENODATA)")]
    NoData,
    #[error("operation not supported (EOPNOTSUPP)")]
    NotSupported,
    #[error("timed out (ETIMEDOUT)")]
    TimedOut,
    /// The session is unknown or expired, or a request is older than the session remembers:
    /// the client must open a new session and revalidate its handles.
    #[error("stale session or request (ESTALE)")]
    Stale,
    /// A blocking call gave up because the caller was interrupted by a signal.
    #[error("interrupted by a signal (EINTR)")]
    Interrupted,
    /// `lseek` SEEK_DATA/SEEK_HOLE from an offset with no data (or at or past the end).
    #[error("no data or hole at or after that offset (ENXIO)")]
    NoSuchOffset,
    /// A directory quota (`tessera quota`) would be passed: a create, link, rename, write or
    /// size change that adds bytes or inodes to a quota directory already at its limit.
    #[error("disk quota exceeded (EDQUOT)")]
    QuotaExceeded,
    /// A change to a snapshot (`tessera snapshot`): snapshots are read-only images.
    #[error("read-only file system: a snapshot cannot be changed (EROFS)")]
    ReadOnly,
}

impl FsError {
    /// The Linux errno value for this error.
    pub fn errno(self) -> i32 {
        match self {
            FsError::NotPermitted => 1,
            FsError::NotFound => 2,
            FsError::Io => 5,
            FsError::TooBig => 7,
            FsError::BadHandle => 9,
            FsError::WouldBlock => 11,
            FsError::AccessDenied => 13,
            FsError::Busy => 16,
            FsError::Exists => 17,
            FsError::CrossDevice => 18,
            FsError::NotDir => 20,
            FsError::IsDir => 21,
            FsError::Invalid => 22,
            FsError::FileTooLarge => 27,
            FsError::NoSpace => 28,
            FsError::TooManyLinks => 31,
            FsError::OutOfRange => 34,
            FsError::Deadlock => 35,
            FsError::NameTooLong => 36,
            FsError::NotEmpty => 39,
            FsError::Loop => 40,
            FsError::NoData => 61,
            FsError::NotSupported => 95,
            FsError::TimedOut => 110,
            FsError::Stale => 116,
            FsError::Interrupted => 4,
            FsError::NoSuchOffset => 6,
            FsError::QuotaExceeded => 122,
            FsError::ReadOnly => 30,
        }
    }
}

/// `renameat2` flag values (Linux).
pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

/// What `rename` does when the target exists. An enum rather than flags so that the invalid
/// combinations (`NOREPLACE | EXCHANGE`, `WHITEOUT | EXCHANGE`) cannot reach the metaserver.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace an existing target (a file, or an empty directory).
    #[default]
    Replace,
    /// Fail with `EEXIST` if the target exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target atomically; both must exist (`RENAME_EXCHANGE`).
    Exchange,
    /// Move as `Replace` (or `NoReplace`), and in the same step leave a whiteout under the
    /// source's name: a character device 0:0 owned by `uid`/`gid`, which overlayfs reads as
    /// "deleted in the upper layer" (`RENAME_WHITEOUT`).
    Whiteout {
        no_replace: bool,
        uid: u32,
        gid: u32,
    },
}

impl RenameMode {
    /// Decodes `renameat2` flags; a whiteout, if asked for, belongs to `uid`/`gid`.
    pub fn from_flags(flags: u32, uid: u32, gid: u32) -> Result<RenameMode, FsError> {
        match flags {
            0 => Ok(RenameMode::Replace),
            RENAME_NOREPLACE => Ok(RenameMode::NoReplace),
            RENAME_EXCHANGE => Ok(RenameMode::Exchange),
            RENAME_WHITEOUT => Ok(RenameMode::Whiteout {
                no_replace: false,
                uid,
                gid,
            }),
            f if f == RENAME_WHITEOUT | RENAME_NOREPLACE => Ok(RenameMode::Whiteout {
                no_replace: true,
                uid,
                gid,
            }),
            _ => Err(FsError::Invalid),
        }
    }

    /// Whether an existing target makes the rename fail with `EEXIST`.
    pub fn refuses_target(self) -> bool {
        matches!(
            self,
            RenameMode::NoReplace
                | RenameMode::Whiteout {
                    no_replace: true,
                    ..
                }
        )
    }
}

/// `setxattr` flag values (Linux).
pub const XATTR_CREATE: u32 = 1;
pub const XATTR_REPLACE: u32 = 2;

/// The POSIX access ACL's extended attribute.
pub const XATTR_ACL_ACCESS: &[u8] = b"system.posix_acl_access";
/// The POSIX default ACL's extended attribute (directories only).
pub const XATTR_ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// What `setxattr` requires of the existing attribute.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    /// Create or replace.
    #[default]
    Upsert,
    /// Fail with `EEXIST` if it exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not exist (`XATTR_REPLACE`).
    Replace,
}

impl XattrMode {
    pub fn from_flags(flags: u32) -> Result<XattrMode, FsError> {
        match flags {
            0 => Ok(XattrMode::Upsert),
            XATTR_CREATE => Ok(XattrMode::Create),
            XATTR_REPLACE => Ok(XattrMode::Replace),
            _ => Err(FsError::Invalid),
        }
    }
}

/// Writes 32 bytes as lowercase hex: ids in logs and admin output.
fn fmt_hex32(bytes: &[u8; 32], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Content address of a stripe: BLAKE3 over (k, m, data length, shard ids).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StripeId(pub [u8; 32]);

impl fmt::Display for StripeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex32(&self.0, f)
    }
}

impl fmt::Debug for StripeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StripeId(")?;
        fmt_hex32(&self.0, f)?;
        write!(f, ")")
    }
}

/// Where a slice's bytes live: a byte offset into a stripe's data.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeRef {
    pub stripe: StripeId,
    pub offset: u64,
}

/// A run of bytes of one chunk. Later slices of a chunk shadow earlier ones where they overlap;
/// bytes covered by no slice (or by a hole slice) read as zeros.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Offset of the first byte within the chunk.
    pub offset: u64,
    pub len: u64,
    /// `None` is a hole: zeros without any stored bytes.
    pub data: Option<StripeRef>,
}

impl Slice {
    /// One past the last byte, within the chunk.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A slice together with the chunk it belongs to, as a client commits it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSlice {
    pub chunk: u64,
    pub slice: Slice,
}

/// One shard of a stripe and the chunkserver that holds it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPlace {
    pub shard: ShardId,
    /// The chunkserver holding it; [`ShardPlace::NOWHERE`] for a shard of a degraded write
    /// that no server stored (repair rebuilds it).
    pub server: u64,
}

impl ShardPlace {
    /// The server id of a shard not stored anywhere (no chunkserver has id 0).
    pub const NOWHERE: u64 = 0;

    /// Whether some server holds the shard.
    pub fn is_stored(&self) -> bool {
        self.server != Self::NOWHERE
    }
}

/// How a stripe is coded and where its shards are: `k` data shards then `m` parity shards.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StripeLayout {
    pub k: u8,
    pub m: u8,
    pub shard_len: u64,
    /// Bytes of file data in the stripe, before padding.
    pub data_len: u64,
    /// Exactly `k + m` entries, data shards first.
    pub shards: Vec<ShardPlace>,
}

/// A stripe's id with its layout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StripeInfo {
    pub id: StripeId,
    pub layout: StripeLayout,
}

/// The slices of one chunk: disjoint runs in offset order (each commit lays its slices over
/// the chunk, cutting away what they cover of older ones). A record last written before
/// commits did that may still list slices in commit order, later ones winning where they
/// overlap; readers resolve both the same way, and the next commit to the chunk flattens it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChunkLayout {
    pub index: u64,
    pub slices: Vec<Slice>,
}

/// What a reader needs to read a range of a file: its size, the chunks in the range that have
/// slices, and the layout of every stripe those slices reference.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    pub size: u64,
    pub chunks: Vec<ChunkLayout>,
    pub stripes: Vec<StripeInfo>,
}

/// Which lock family a request belongs to. On Linux `flock` and `fcntl` locks do not
/// conflict with each other.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockFlavor {
    /// Whole-file, owned by an open file description (`flock(2)`).
    Flock,
    /// Byte ranges, owned by a process (`fcntl(F_SETLK)`).
    Posix,
}

/// A lock request's type.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKind {
    Shared,
    Exclusive,
    Unlock,
}

/// A held lock that conflicts with a request (the answer to `F_GETLK`).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockInfo {
    pub kind: LockKind,
    /// First byte of the range.
    pub start: u64,
    /// Last byte of the range, inclusive; `u64::MAX` means to the end of the file.
    pub end: u64,
    /// The holder's pid, as reported by `F_GETLK`.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_mode_bits() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::from_mode(kind.mode_bits() | 0o644), Some(kind));
        }
        assert_eq!(FileKind::from_mode(0o644), None);
    }

    #[test]
    fn rename_flags() {
        let mode = |f| RenameMode::from_flags(f, 7, 8);
        assert_eq!(mode(0), Ok(RenameMode::Replace));
        assert_eq!(mode(1), Ok(RenameMode::NoReplace));
        assert_eq!(mode(2), Ok(RenameMode::Exchange));
        assert_eq!(mode(3), Err(FsError::Invalid));
        let whiteout = |no_replace| RenameMode::Whiteout {
            no_replace,
            uid: 7,
            gid: 8,
        };
        assert_eq!(mode(4), Ok(whiteout(false)));
        assert_eq!(mode(5), Ok(whiteout(true)));
        assert!(whiteout(true).refuses_target() && !whiteout(false).refuses_target());
        assert_eq!(mode(6), Err(FsError::Invalid));
        assert_eq!(mode(8), Err(FsError::Invalid));
    }

    #[test]
    fn xattr_flags() {
        assert_eq!(XattrMode::from_flags(0), Ok(XattrMode::Upsert));
        assert_eq!(XattrMode::from_flags(1), Ok(XattrMode::Create));
        assert_eq!(XattrMode::from_flags(2), Ok(XattrMode::Replace));
        assert_eq!(XattrMode::from_flags(3), Err(FsError::Invalid));
    }

    #[test]
    fn errno_values_are_linux() {
        assert_eq!(FsError::NotFound.errno(), 2);
        assert_eq!(FsError::NotEmpty.errno(), 39);
        assert_eq!(FsError::NoData.errno(), 61);
        assert_eq!(FsError::NameTooLong.errno(), 36);
    }

    #[test]
    fn attr_survives_postcard() {
        let attr = Attr {
            ino: 7,
            generation: 1,
            kind: FileKind::Symlink,
            perm: 0o777,
            nlink: 1,
            uid: 1000,
            gid: 1000,
            rdev: 0,
            size: 3,
            blocks: 0,
            flags: INODE_APPEND,
            atime_ns: -5,
            mtime_ns: 0,
            ctime_ns: i64::MAX,
        };
        let bytes = postcard::to_allocvec(&attr).unwrap();
        assert_eq!(postcard::from_bytes::<Attr>(&bytes).unwrap(), attr);
        assert_eq!(attr.mode(), 0o120777);
    }
}
