//! The metadata service's operations: what a client may ask the namespace to change
//! ([`Op`], replicated through Raft) or to read ([`Query`]), and what comes back.
//!
//! The metaserver wraps an `Op` in a log entry with the client's session, sequence number and
//! a leader-stamped time; [`MetaWrite`] and [`MetaRead`] are the RPCs that carry them.

use crate::body::Rpc;
use crate::fs::{
    Attr, ChunkSlice, DirEntry, FileKind, FileLayout, FsError, Ino, LockFlavor, LockInfo, LockKind,
    RenameMode, SetAttr, StatFs, StripeId, StripeInfo, XattrMode,
};
use crate::method::Method;
use serde::{Deserialize, Serialize};

/// The mutation itself.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the root directory of an empty namespace (`EEXIST` if there is one).
    Format {
        uid: u32,
        gid: u32,
        perm: u16,
    },

    /// Regular files and special files (not directories or symlinks: `EINVAL`). With `open`
    /// the new file is also opened in the command's session (FUSE `create`).
    Mknod {
        parent: Ino,
        name: Vec<u8>,
        kind: FileKind,
        perm: u16,
        uid: u32,
        gid: u32,
        rdev: u32,
        open: bool,
    },
    Mkdir {
        parent: Ino,
        name: Vec<u8>,
        perm: u16,
        uid: u32,
        gid: u32,
    },
    Symlink {
        parent: Ino,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
    Link {
        ino: Ino,
        new_parent: Ino,
        new_name: Vec<u8>,
    },
    Unlink {
        parent: Ino,
        name: Vec<u8>,
    },
    Rmdir {
        parent: Ino,
        name: Vec<u8>,
    },
    Rename {
        parent: Ino,
        name: Vec<u8>,
        new_parent: Ino,
        new_name: Vec<u8>,
        mode: RenameMode,
    },
    SetAttr {
        ino: Ino,
        set: SetAttr,
    },

    SetXattr {
        ino: Ino,
        name: Vec<u8>,
        value: Vec<u8>,
        mode: XattrMode,
    },
    RemoveXattr {
        ino: Ino,
        name: Vec<u8>,
    },

    /// Record that the command's session opened `ino` (one count per open).
    Open {
        ino: Ino,
    },
    /// Drop one open of `ino` by the command's session; the last one also drops the session's
    /// locks on it, and frees the inode if it was unlinked.
    Release {
        ino: Ino,
    },

    /// Append slices to a file's chunks (the write path). `stripes` carries the layout of
    /// every stripe the metaserver may not know yet; known ones just gain a reference.
    CommitSlice {
        ino: Ino,
        slices: Vec<ChunkSlice>,
        stripes: Vec<StripeInfo>,
    },

    /// Take, change or drop a lock owned by `(session, owner)`. Never blocks: a conflict is
    /// `EAGAIN` and a blocking caller retries.
    SetLock {
        ino: Ino,
        owner: u64,
        flavor: LockFlavor,
        kind: LockKind,
        start: u64,
        end: u64,
        pid: u32,
    },

    /// Start a client session (send with session 0); the reply carries the new id.
    OpenSession {
        client: String,
        lease_ns: i64,
    },
    /// Extend the command's session lease to `now + lease_ns`.
    RenewSession {
        lease_ns: i64,
    },
    /// End the command's session cleanly (unmount).
    CloseSession,
    /// End another session whose lease ran out (sent by the leader; `EBUSY` if renewed since).
    ExpireSession {
        session: u64,
    },

    /// A GC worker claims a stripe with refcount 0 before deleting its shards.
    GcClaim {
        stripe: StripeId,
    },
    /// The shards of a claimed stripe are gone: drop its row.
    GcDone {
        stripe: StripeId,
    },
    /// Repair rebuilt shard `index` of a stripe on server `to`: record the new place. Applies
    /// only while the shard is still recorded on `from` (`ESTALE` otherwise), so a repair that
    /// raced another one, or GC, changes nothing.
    MoveShard {
        stripe: StripeId,
        index: u32,
        from: u64,
        to: u64,
    },

    /// Replace an empty namespace (only the root directory) with a backup image from
    /// `tessera dump` (`ENOTEMPTY` if the namespace holds anything, `EINVAL` if the image
    /// does not decode). Sent by the leader for [`crate::backup::MetaLoad`].
    LoadImage {
        image: Vec<u8>,
    },

    /// [`Op::Release`] of each of `inos` (an inode listed twice drops two opens), in one Raft
    /// entry: a mount's releases gathered over a moment. An inode the session does not hold
    /// open is skipped rather than failing the batch.
    ReleaseMany {
        inos: Vec<Ino>,
    },

    /// Files read and directories listed: each of `inos` gets the command's time as its
    /// access time, always if `strict`, else under Linux's `relatime` rule (only when the
    /// access time is not after the modification or change time, or is a day old). The
    /// change time stays. Inodes gone meanwhile are skipped.
    Accessed {
        inos: Vec<Ino>,
        strict: bool,
    },

    /// [`Op::Open`] for reading, which is also the access (see [`Op::Accessed`]): the access
    /// time moves in the same entry, and the reply carries it.
    OpenToRead {
        ino: Ino,
        strict: bool,
    },

    /// Creates `name` in `parent`, of any kind but a symlink, as Linux does under POSIX
    /// ACLs: when `parent` has a default ACL the new node gets it (as its access ACL, and a
    /// directory also as its default ACL) masked by `perm`, and the umask is ignored;
    /// otherwise the permission bits are `perm` without the `umask` bits. With `open` (files
    /// only) the session also opens it, as [`Op::Mknod`]. Mounts send this for mknod,
    /// create and mkdir; [`Op::Mknod`] and [`Op::Mkdir`] stay for entries already logged.
    MakeNode {
        parent: Ino,
        name: Vec<u8>,
        kind: FileKind,
        perm: u16,
        umask: u16,
        uid: u32,
        gid: u32,
        rdev: u32,
        open: bool,
    },

    /// Sets the inode flags of `ino` (`chattr`; see [`crate::fs::INODE_FLAGS`]): `EOPNOTSUPP`
    /// for a flag Tessera does not keep. The caller's right to change the immutable and
    /// append-only flags (CAP_LINUX_IMMUTABLE) is checked by the kernel and the mount.
    SetFlags {
        ino: Ino,
        flags: u32,
    },

    /// `open(O_TMPFILE)`: a regular file in `parent` with no name (nlink 0), opened by the
    /// session, made as [`Op::MakeNode`] makes a file (default ACL or umask). It is freed
    /// when its last open goes, unless [`Op::Link`] gives it a name first.
    MakeTmpfile {
        parent: Ino,
        perm: u16,
        umask: u16,
        uid: u32,
        gid: u32,
    },

    /// Preallocation (`fallocate` mode 0 or KEEP_SIZE): `offset..offset + len` of `ino`,
    /// less what holds data, is reserved until written, truncated away or freed; `statfs`
    /// counts it as used and the leader keeps room for it. `ENOSPC` when the file would
    /// keep too many separate ranges. The size does not change here.
    Reserve {
        ino: Ino,
        offset: u64,
        len: u64,
    },

    /// How long a file whose last name goes is kept in the trash, in seconds (0: not kept,
    /// freed at once as before). Cluster-wide; sent by `tessera trash --retention` and once
    /// by the leader that formats a new namespace.
    SetTrashRetention {
        seconds: u64,
    },
    /// Gives a file in the trash a name again: `parent`/`name`, or where it was deleted from
    /// when `None`. `ENOENT` if it is not in the trash or the directory is gone, `EEXIST` if
    /// the name is taken.
    RestoreTrash {
        ino: Ino,
        to: Option<(Ino, Vec<u8>)>,
    },
    /// Frees files in the trash now (kept while still open somewhere, as any unlinked
    /// file). With `expired_only` (the leader's expiry) a file is skipped unless its
    /// retention has run out when the command applies. Files not in the trash are skipped.
    PurgeTrash {
        inos: Vec<Ino>,
        expired_only: bool,
    },
    /// Capabilities for the command's session on `inos` (see `namespace/src/caps.rs`):
    /// shared lets the mount cache what it read of the inode (attributes, and for a
    /// directory its entries); exclusive also lets it change them locally. Answered
    /// [`Response::Recall`] while another session holds a cap that conflicts; inodes that
    /// do not exist are skipped. With `children`, also (shared) caps on the entries of
    /// each directory among `inos` as they are when the grant applies, so a listing read
    /// after it is covered whole (directories of more than 10,000 entries: the directory
    /// only).
    GrantCaps {
        inos: Vec<Ino>,
        exclusive: bool,
        children: bool,
    },
    /// Gives the command's session's caps on `inos` back (the mount has dropped what it
    /// cached, or stored what it buffered). Caps it does not hold are skipped.
    ReleaseCaps {
        inos: Vec<Ino>,
    },

    /// Puts a quota on directory `ino` (`ENOTDIR` otherwise): at most `bytes` bytes of file
    /// (logical sizes) and `inodes` inodes below it, `None` for no limit on that count. A
    /// new quota walks the subtree once, in this command, to count what it already holds;
    /// changing the limits of an existing quota keeps its counts. Usage may start above a
    /// limit: then only changes that add to it are refused (`EDQUOT`).
    SetQuota {
        ino: Ino,
        bytes: Option<u64>,
        inodes: Option<u64>,
    },
    /// Removes the quota of directory `ino` (`ENOENT` if it has none).
    UnsetQuota {
        ino: Ino,
    },

    /// Takes snapshot `name` of directory `dir` (`tessera snapshot`, `namespace/src/
    /// snapshot.rs`): a read-only copy of the subtree's metadata as it is when the command
    /// applies, reached as `dir/.snapshots/name`, sharing every stripe with the live files.
    /// A small tree is copied by this command; a larger one by [`Op::SnapshotStep`]s after
    /// it (until then the entry is not `ready` and not reachable). `EEXIST` if the name is
    /// taken, `EROFS` for a directory inside a snapshot. Answers [`Response::Snapshots`]
    /// with the new snapshot.
    SnapshotCreate {
        dir: Ino,
        name: Vec<u8>,
        /// Entries this command copies itself (each costs about 12 us of apply time).
        budget: u32,
    },
    /// Copies about `budget` more inodes of snapshot copy `job` (proposed by the leader
    /// while [`Query::Snapshots`] lists a snapshot not `ready`). Answers
    /// [`Response::Flag`]: whether the job is finished (or unknown).
    SnapshotStep {
        job: u64,
        budget: u32,
    },
    /// Deletes snapshot `name` of `dir` (`ENOENT` if there is none): its inodes are freed
    /// (files still open somewhere live on until their last release) and its stripe
    /// references dropped.
    SnapshotDelete {
        dir: Ino,
        name: Vec<u8>,
    },
    /// Copies `from`, a file or directory inside a snapshot (`EINVAL` otherwise), with
    /// everything below it, to `to_parent`/`to_name` as live, writable files sharing its
    /// stripes (no data is copied). `EEXIST` if the name is taken; quotas count the copy.
    SnapshotRestore {
        from: Ino,
        to_parent: Ino,
        to_name: Vec<u8>,
    },

    /// Accesses timed by the mount that made them (a read of a file it opened under caps,
    /// whose new access time it showed at once): each inode of `at` gets the time given
    /// with it as its access time, by the rule of [`Op::Accessed`] judged at that time, and
    /// only forward (a late batch does not undo a later access). Inodes gone are skipped.
    AccessedAt {
        at: Vec<(Ino, i64)>,
        strict: bool,
    },

    /// Operations of the command's session in one Raft entry (a mount's write-back batch),
    /// applied in order, each as if it were its own command at the command's time: each
    /// gets its own reply in [`Response::Batch`], and one that is refused changes nothing
    /// while the others still apply. If other sessions' caps stand in the way of any of
    /// them, the whole batch applies nothing and waits for the recall, as one command does.
    /// Batches do not nest (an inner one is refused, `EINVAL`).
    Batch {
        ops: Vec<Op>,
    },

    /// Hands the command's session `count` (1 to 65,536) inode numbers no one else will
    /// get, for creates its mount completes itself ([`Response::Inos`]). They go with the
    /// session; numbers it never uses are skipped.
    DelegateInos {
        count: u32,
    },
    /// `node` ([`Op::MakeNode`] or [`Op::Symlink`], `EINVAL` otherwise) made as inode `ino`,
    /// a number delegated to the command's session, instead of the next free one. `ino`
    /// must be at least every number of its range used before (`EINVAL` otherwise), so a
    /// number makes at most one inode.
    MakeNodeAs {
        ino: Ino,
        node: Box<Op>,
    },
}

/// A read of the state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Lookup {
        parent: Ino,
        name: Vec<u8>,
    },
    GetAttr {
        ino: Ino,
    },
    /// Entries with cookies greater than `after` (0 starts at the beginning, with "." and "..").
    ReadDir {
        ino: Ino,
        after: u64,
        limit: u32,
        plus: bool,
    },
    ReadLink {
        ino: Ino,
    },
    GetXattr {
        ino: Ino,
        name: Vec<u8>,
    },
    ListXattr {
        ino: Ino,
    },
    /// Capacity is not namespace state (chunkservers report it), so the caller supplies it.
    StatFs {
        total_bytes: u64,
        total_files: u64,
    },
    /// Slices of chunks `first..=last` and the stripes they reference.
    Layout {
        ino: Ino,
        first: u64,
        last: u64,
    },
    /// The first lock held by another owner that conflicts with the described request.
    GetLock {
        ino: Ino,
        session: u64,
        owner: u64,
        flavor: LockFlavor,
        kind: LockKind,
        start: u64,
        end: u64,
    },
    /// Stripes waiting for GC, oldest first.
    GcQueue {
        limit: u32,
    },
    /// Up to `limit` stripe rows after `after` (exclusive) in id order, for fsck and repair.
    Stripes {
        after: Option<StripeId>,
        limit: u32,
    },
    /// Recounts every slice's stripe reference and lists stripes whose recorded refcount
    /// differs (at most `limit`), for fsck.
    RefcountCheck {
        limit: u32,
    },
    /// Whether any POSIX ACL was ever stored ([`Response::Flag`]); until one is, a mount
    /// answers the kernel's ACL reads itself.
    AclsUsed,
    /// The trash: its retention and up to `limit` files with inode numbers above `after`
    /// ([`Response::Trash`]); with `totals`, also how many files it holds and their bytes
    /// (a scan of the whole trash).
    Trash {
        after: Ino,
        limit: u32,
        totals: bool,
    },
    /// Who holds caps on each of `inos` ([`Response::Caps`]).
    CapHolders {
        inos: Vec<Ino>,
    },
    /// Every directory quota, in inode order ([`Response::Quotas`]).
    Quotas,
    /// [`Query::StatFs`] as seen from `ino`: inside a quota directory (the nearest one above
    /// `ino` with a limit), the quota is the size and its usage the used part, as `df` on a
    /// CephFS or JuiceFS quota directory shows.
    StatFsAt {
        ino: Ino,
        total_bytes: u64,
        total_files: u64,
    },
    /// The snapshots of `dir`, or of every directory with `None` ([`Response::Snapshots`],
    /// in directory and name order).
    Snapshots {
        dir: Option<Ino>,
    },
}

/// A session's capability on one inode ([`Response::Caps`], [`Response::Recall`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CapHolder {
    pub ino: Ino,
    pub session: u64,
    pub exclusive: bool,
}

/// One directory quota, as [`Query::Quotas`] lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct QuotaEntry {
    /// The directory.
    pub ino: Ino,
    /// Its path from the root, if it is still linked.
    pub path: Option<Vec<u8>>,
    /// Limits; `None`: that count is not limited.
    pub max_bytes: Option<u64>,
    pub max_inodes: Option<u64>,
    /// Logical bytes of the files below it, and inodes below it (itself not included).
    pub used_bytes: u64,
    pub used_inodes: u64,
}

/// One file in the trash, as [`Query::Trash`] lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TrashEntry {
    /// Its attributes now (nlink 0; size, mode and owner as when deleted).
    pub attr: Attr,
    /// When its last name went (ns since the epoch, the leader's clock).
    pub deleted_ns: i64,
    /// The directory it was deleted from and the name it had there.
    pub parent: Ino,
    pub name: Vec<u8>,
    /// That directory's path from the root, if it still exists.
    pub parent_path: Option<Vec<u8>>,
}

/// The name under which a directory's snapshots are found (`DIR/.snapshots/NAME`): looked
/// up like an entry, but not one (a directory's listing does not show it).
pub const SNAPSHOTS_NAME: &[u8] = b".snapshots";

/// One snapshot, as [`Query::Snapshots`] lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The directory it is a snapshot of, and that directory's path now (`None` once it is
    /// no longer reachable from the root).
    pub dir: Ino,
    pub dir_path: Option<Vec<u8>>,
    pub name: Vec<u8>,
    /// The snapshot's root directory (`dir/.snapshots/name`).
    pub root: Ino,
    /// When it was taken (ns since the epoch, the leader's clock).
    pub created_ns: i64,
    /// What it holds: directories (its root included), other inodes, and the logical bytes
    /// of its regular files (each counted once however many names it has); while it is
    /// still being copied, what was copied so far.
    pub dirs: u64,
    pub files: u64,
    pub bytes: u64,
    /// Copied whole and reachable; `false` while the leader still copies it (its job).
    pub ready: bool,
    pub job: Option<u64>,
}

/// One stripe row, as [`Query::Stripes`] lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct StripeEntry {
    pub stripe: StripeInfo,
    /// Slices (in any file) that name this stripe.
    pub refcount: u64,
    /// Claimed by garbage collection: its shards are being deleted.
    pub deleting: bool,
}

/// A stripe whose recorded refcount is not the number of slices naming it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RefcountMismatch {
    pub stripe: StripeId,
    /// The stripe row's refcount; `None` when slices name a stripe that has no row.
    pub recorded: Option<u64>,
    /// Slices found naming it.
    pub counted: u64,
}

/// A stripe waiting in the GC queue.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    pub stripe: StripeInfo,
    pub queued_at: i64,
    /// A claimed stripe is being deleted by a worker.
    pub claimed: bool,
}

/// The successful outcome of a command or query.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Done,
    Attr(Attr),
    Entries(Vec<DirEntry>),
    Target(Vec<u8>),
    Xattr(Vec<u8>),
    XattrNames(Vec<Vec<u8>>),
    StatFs(StatFs),
    Layout(FileLayout),
    Session {
        id: u64,
        lease_until: i64,
    },
    Lock(Option<LockInfo>),
    Gc(Vec<GcItem>),
    Stripes(Vec<StripeEntry>),
    RefcountMismatches(Vec<RefcountMismatch>),
    /// A yes-or-no answer ([`Query::AclsUsed`]).
    Flag(bool),
    /// [`Query::Trash`]: the retention in seconds, a page of files, and (when asked) the
    /// files and bytes of the whole trash.
    Trash {
        retention_s: u64,
        entries: Vec<TrashEntry>,
        totals: Option<(u64, u64)>,
    },
    /// [`Query::CapHolders`]: every cap held on the inodes asked about.
    Caps(Vec<CapHolder>),
    /// The command changed nothing: these caps of other sessions stand in its way. The
    /// leader recalls them and proposes the command again once they are given back (or
    /// their sessions expired); a client never sees this reply.
    Recall {
        holders: Vec<CapHolder>,
    },
    /// [`Query::Quotas`].
    Quotas(Vec<QuotaEntry>),
    /// [`Query::Snapshots`], and [`Op::SnapshotCreate`] with the one it took.
    Snapshots(Vec<SnapshotEntry>),
    /// [`Op::Batch`]: one reply per operation, in order.
    Batch(Vec<Reply>),
    /// [`Op::DelegateInos`]: numbers `first..first + count`.
    Inos {
        first: Ino,
        count: u32,
    },
}

/// What the client gets back: POSIX errors are ordinary, replicated outcomes.
pub type Reply = Result<Response, FsError>;

/// Why the metadata service did not run a call. POSIX outcomes are in [`Reply`]; these are
/// about reaching the right server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// This metaserver is not the leader. `leader` is the leader's address when known: send
    /// the call there.
    #[error("not the metadata leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader {
        /// Address of the current leader, if this server knows it.
        leader: Option<String>,
    },
    /// The group cannot serve the call now (no quorum, shutting down, storage failure).
    #[error("metadata service unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs.
        reason: String,
    },
}

/// A namespace change, with what makes a retry safe: the client's session and a sequence
/// number unique within it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// Session from `Op::OpenSession` (0 for the session-opening call itself).
    pub session: u64,
    /// Unique per session; a retried call carries the same number and gets the first reply.
    pub seq: u64,
    /// Every reply below this number has reached the client and may be forgotten.
    pub seq_floor: u64,
    /// The change.
    pub op: Op,
}

/// A linearizable read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The read.
    pub query: Query,
    /// The asking session (0: none). Other sessions' exclusive caps on what the read
    /// covers are recalled before it is answered; the asker's own are not.
    pub session: u64,
}

/// Propose a namespace change through Raft (leader only).
#[derive(Debug)]
pub struct MetaWrite;

impl Rpc for MetaWrite {
    const METHOD: Method = Method::META_WRITE;
    type Request = WriteRequest;
    type Reply = Result<Reply, ServiceError>;
}

/// Read the namespace after a read-index confirmation (leader only).
#[derive(Debug)]
pub struct MetaRead;

impl Rpc for MetaRead {
    const METHOD: Method = Method::META_READ;
    type Request = ReadRequest;
    type Reply = Result<Reply, ServiceError>;
}

/// A mount's wait for recalls: the server-to-client channel of capabilities, as a long
/// poll on the mount's existing connection to the leader (leader only). The reply comes
/// as soon as the leader wants caps of `session` back, or after `wait_ms` with none.
#[derive(Debug)]
pub struct WaitRecall;

/// What [`WaitRecall`] waits for.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WaitRecallRequest {
    pub session: u64,
    /// Longest wait before an empty answer, in milliseconds (the leader caps it).
    pub wait_ms: u32,
}

impl Rpc for WaitRecall {
    const METHOD: Method = Method::WAIT_RECALL;
    type Request = WaitRecallRequest;
    /// The inodes whose caps the session should give back (empty: none within the wait).
    type Reply = Result<Vec<Ino>, ServiceError>;
}

/// What a metaserver says about its place in the group (answered by every member).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaStatusReply {
    /// This member's node id.
    pub id: u64,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: String,
    /// Current Raft term.
    pub term: u64,
    /// The leader this member knows, with its address.
    pub leader: Option<(u64, String)>,
    /// Index of the last entry in this member's log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to its namespace.
    pub applied_index: Option<u64>,
    /// Last log index covered by this member's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index have been removed from the log (compaction).
    pub purged_index: Option<u64>,
    /// Voters and learners with their addresses.
    pub members: Vec<(u64, String)>,
}

/// Status of one metaserver.
#[derive(Debug)]
pub struct MetaStatus;

impl Rpc for MetaStatus {
    const METHOD: Method = Method::META_STATUS;
    type Request = ();
    type Reply = MetaStatusReply;
}

/// A hash of a member's whole namespace and the log index it reflects, so replicas can be
/// compared: equal indexes must give equal digests.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DigestReply {
    /// Last applied log index (0 before anything was applied).
    pub applied_index: u64,
    /// BLAKE3 over every namespace table.
    pub digest: [u8; 32],
}

/// State digest of one metaserver (answered by every member, from its local state).
#[derive(Debug)]
pub struct StateDigest;

impl Rpc for StateDigest {
    const METHOD: Method = Method::META_DIGEST;
    type Request = ();
    type Reply = Result<DigestReply, ServiceError>;
}

/// Liveness of a chunkserver as the metadata leader sees it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkserverState {
    /// Heartbeating.
    Up,
    /// Missed a few heartbeats: no new data goes there, but it is not repaired around yet.
    Suspect,
    /// Silent for longer than the dead-after period: its shards are to be rebuilt elsewhere.
    Down,
    /// Heartbeating, but a majority of the mounts that report say they cannot reach it: no
    /// new data goes there until they can again.
    Unreachable,
}

/// One chunkserver as the leader knows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChunkserverInfo {
    /// Its persistent id.
    pub id: u64,
    /// Where its chunk service listens.
    pub addr: String,
    /// Liveness.
    pub state: ChunkserverState,
    /// Bytes it may fill.
    pub capacity: u64,
    /// Bytes it holds.
    pub used: u64,
    /// Shards it holds.
    pub shards: u64,
    /// It refuses puts for lack of space.
    pub full: bool,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Being drained (`tessera drain`): its shards are moving to other servers and it gets
    /// no new ones.
    pub draining: bool,
}

/// Every chunkserver the leader knows (leader only).
#[derive(Debug)]
pub struct ListChunkservers;

impl Rpc for ListChunkservers {
    const METHOD: Method = Method::LIST_CHUNKSERVERS;
    type Request = ();
    type Reply = Result<Vec<ChunkserverInfo>, ServiceError>;
}

/// Where to put the shards of a new stripe.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PlaceRequest {
    /// Distinct servers wanted (k + m).
    pub count: u8,
    /// Bytes each shard will take, so servers without room are skipped.
    pub shard_len: u64,
    /// Servers not to use (ones that just failed a put, or that the caller cannot reach).
    pub exclude: Vec<u64>,
    /// Fewest servers that will do (0: `count`). When fewer than `count` can be had but at
    /// least this many, those come back and the caller writes a degraded stripe.
    pub min: u8,
    /// Data shards of the stripe's code (`count` less parity): with it the leader turns
    /// preallocated bytes into the shard bytes they will take.
    pub k: u8,
    /// Every byte of the stripe falls in ranges its file preallocated: it may use the room
    /// held back for preallocations; other stripes may not.
    pub reserved: bool,
}

/// Pick `count` distinct live chunkservers with room, favouring free space (leader only).
/// Fewer come back when enough are up but fewer have room: the caller reports the shortage
/// (`ENOSPC`); too few servers up is `Unavailable`, which callers retry.
#[derive(Debug)]
pub struct PlaceStripe;

impl Rpc for PlaceStripe {
    const METHOD: Method = Method::PLACE_STRIPE;
    type Request = PlaceRequest;
    type Reply = Result<Vec<ChunkserverInfo>, ServiceError>;
}

/// Most stripes one `PlaceStripes` call may place (a flush of 128 MiB in 4 MiB stripes
/// needs 32; packed small writes fewer).
pub const MAX_PLACE_STRIPES: usize = 4096;

/// [`PlaceStripe`] for every stripe of a flush in one round trip (leader only): one list
/// per request, in order, each as `PlaceStripe` would answer it. Too few servers up for
/// any of them is `Unavailable` for the whole call.
#[derive(Debug)]
pub struct PlaceStripes;

impl Rpc for PlaceStripes {
    const METHOD: Method = Method::PLACE_STRIPES;
    type Request = Vec<PlaceRequest>;
    type Reply = Result<Vec<Vec<ChunkserverInfo>>, ServiceError>;
}

/// How many live stripes have all their shards on servers that are up, how many miss some
/// (but no more than their parity can cover), and how many miss more than that.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StripeHealth {
    /// Every shard on a server that is up.
    pub healthy: u64,
    /// 1 to `m` shards on servers that are down or unknown: readable, needs repair.
    pub degraded: u64,
    /// More than `m` shards unavailable: unreadable until servers come back.
    pub lost: u64,
}

/// Stripe health as the leader sees it (leader only; scans every stripe).
#[derive(Debug)]
pub struct ClusterHealth;

impl Rpc for ClusterHealth {
    const METHOD: Method = Method::CLUSTER_HEALTH;
    type Request = ();
    type Reply = Result<StripeHealth, ServiceError>;
}

/// A damaged shard a client or an admin tool found: shard `shard` of the stripe, recorded on
/// `server`, is missing or corrupt there, or the server served bytes of it that failed
/// verification against the shard id.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DamagedShard {
    pub server: u64,
    pub shard: crate::shard::ShardId,
    pub corrupt: bool,
    /// The server answered a read with wrong bytes although it did not report the shard
    /// damaged (see [`crate::chunk::BadReply`]): rebuild the shard on another server, since
    /// rebuilding it in place would leave it with the server that lied.
    pub bad_reply: bool,
}

impl From<crate::chunk::BadReply> for DamagedShard {
    fn from(b: crate::chunk::BadReply) -> DamagedShard {
        DamagedShard {
            server: b.server,
            shard: b.shard,
            corrupt: true,
            bad_reply: true,
        }
    }
}

/// Hand damaged shards to the leader's repair scheduler, as a scrub report would (leader
/// only). `tessera fsck --repair` and mounts (for reads that failed verification) use it.
#[derive(Debug)]
pub struct ReportShards;

impl Rpc for ReportShards {
    const METHOD: Method = Method::REPORT_SHARDS;
    type Request = Vec<DamagedShard>;
    type Reply = Result<(), ServiceError>;
}

/// What one mount's own calls found: the chunkservers it cannot reach now. Sent every few
/// seconds (an empty list included: it counts the mount as a voter). The leader stops
/// placing shards on a server that a majority of the mounts heard from in the last
/// [`REACHABILITY_WINDOW_MS`] report unreachable, so one confused mount cannot evict a
/// healthy server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReachabilityReport {
    /// A random id of the reporting mount, fixed for its life.
    pub reporter: u64,
    /// Chunkserver ids.
    pub unreachable: Vec<u64>,
}

/// How long a reachability report counts.
pub const REACHABILITY_WINDOW_MS: u64 = 10_000;

/// The cluster's rules for writing stripes, as the leader tells mounts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSettings {
    /// A stripe is committed once at least `k + spare` of its shards are stored (never more
    /// than `k + m`); missing shards are rebuilt by repair. `fsync` promises that many.
    pub spare: u8,
}

/// Report unreachable chunkservers; the reply has the write settings (leader only).
#[derive(Debug)]
pub struct ReportReachability;

impl Rpc for ReportReachability {
    const METHOD: Method = Method::REPORT_REACHABILITY;
    type Request = ReachabilityReport;
    type Reply = Result<WriteSettings, ServiceError>;
}

/// A change to the metadata group's membership (leader only). Every change goes through this
/// one call, which the leader serialises: a new member joins as a learner, catches up with
/// the log, and only then becomes a voter.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add member `id` listening at `addr` (started with `tessera meta --id ID --peers
    /// ID=ADDR`, without `--init`).
    Add { id: u64, addr: String },
    /// Remove member `id` from the group (it may then be stopped).
    Remove { id: u64 },
    /// Hand leadership to member `id`.
    TransferLeader { id: u64 },
}

/// Change the metadata group's membership; the reply describes the new membership.
#[derive(Debug)]
pub struct ChangeMembership;

impl Rpc for ChangeMembership {
    const METHOD: Method = Method::CHANGE_MEMBERSHIP;
    type Request = MembershipChange;
    type Reply = Result<String, ServiceError>;
}

/// Start (or stop) draining a chunkserver: no new shards go to it, and repair moves every
/// shard it holds to other servers (leader only; soft state, so `tessera drain` repeats it
/// until done, which also carries it across a leader change).
#[derive(Debug)]
pub struct DrainChunkserver;

/// Body of a [`DrainChunkserver`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainRequest {
    pub id: u64,
    /// `false` cancels a drain.
    pub drain: bool,
}

impl Rpc for DrainChunkserver {
    const METHOD: Method = Method::DRAIN_CHUNKSERVER;
    type Request = DrainRequest;
    type Reply = Result<(), ServiceError>;
}

/// Rebalance: move shards from the fullest chunkservers to the emptiest until every server's
/// used fraction is within the band of the mean (leader only). The leader also does this by
/// itself unless started with `--rebalance manual`; `start` asks for a round now.
#[derive(Debug)]
pub struct Rebalance;

/// Body of a [`Rebalance`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceRequest {
    /// Start a round now (`false` only reports).
    pub start: bool,
}

/// Where rebalancing stands, as the leader sees it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct RebalanceStatus {
    /// The leader moves shards by itself when servers leave the band.
    pub auto: bool,
    /// A round is planned or moving shards now.
    pub running: bool,
    /// Every up server's used fraction is within the band of the mean.
    pub balanced: bool,
    /// The band, as a fraction of capacity (0.05: five percentage points).
    pub band: f64,
    /// Largest distance of a server's used fraction from the mean, as a fraction.
    pub spread: f64,
    /// Bytes the current round plans to move, and how many of them have moved.
    pub planned_bytes: u64,
    pub moved_bytes: u64,
    /// Shards moved and moves that failed since this leader started.
    pub moved_shards: u64,
    pub failed_moves: u64,
}

impl Rpc for Rebalance {
    const METHOD: Method = Method::REBALANCE;
    type Request = RebalanceRequest;
    type Reply = Result<RebalanceStatus, ServiceError>;
}
