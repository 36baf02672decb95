//! Namespace operations with POSIX results: each is one metadata call (or two, where POSIX
//! needs the parent's attributes), returning `FsError` for every failure so a caller (the
//! FUSE adapter, an admin tool, a test) never sees transport details.
//!
//! A metadata service that cannot be reached within the `MetaClient`'s deadline is `EIO`
//! (design: a lost cluster gives EIO, never a wedged kernel); `error.rs` makes it so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_proto::fs::{
    Attr, DirEntry, FileKind, FsError, Ino, LockFlavor, LockInfo, LockKind, ROOT_INO, RenameMode,
    SetAttr, StatFs, XattrMode,
};
use tessera_proto::meta::{ChunkserverState, Op, Query, Reply, Response};

use crate::error::ClientError;
use crate::meta::MetaClient;

/// On a mount without POSIX ACLs (`--no-acl`: the kernel does not enforce them) their
/// attributes are refused as on a file system mounted `noacl`, which also answers `ls -l`'s
/// ACL probe of every file without a round trip.
fn is_acl(name: &[u8]) -> bool {
    name.starts_with(b"system.posix_acl_")
}

/// A read-only virtual attribute of the root: the bytes of the files in the trash, in
/// decimal (`getfattr -n tessera.trash_bytes MOUNT`), which `statvfs` has no field for.
/// Not listed by `listxattr`, as CephFS's `ceph.dir.*` attributes are not.
pub const TRASH_BYTES: &[u8] = b"tessera.trash_bytes";

/// `ENOENT` for an inode number means the kernel's cached name is stale (see `getattr`).
fn stale(e: FsError) -> FsError {
    if e == FsError::NotFound {
        FsError::Stale
    } else {
        e
    }
}

fn unexpected(what: &'static str, r: &Response) -> FsError {
    ClientError::unexpected(what, r).into()
}

fn attr_of(what: &'static str, r: Reply) -> Result<Attr, FsError> {
    match r? {
        Response::Attr(a) => Ok(a),
        other => Err(unexpected(what, &other)),
    }
}

fn done(what: &'static str, r: Reply) -> Result<(), FsError> {
    match r? {
        Response::Done | Response::Attr(_) => Ok(()),
        other => Err(unexpected(what, &other)),
    }
}

/// Who creates an inode (the caller's uid and gid, from the FUSE request).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// The namespace half of the client: POSIX operations over a [`MetaClient`].
/// What [`Namespace::open`] answers.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The file's attributes as of the open.
    pub attr: Attr,
    /// The access time the open moved without the leader (under caps), to be sent.
    pub accessed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Namespace {
    meta: Arc<MetaClient>,
    /// Recent answers for `security.capability` (see [`CAPS`]).
    caps: Arc<Mutex<CapsCache>>,
    /// Set-group-id bit and group of recently seen directories (see [`DIR_TTL`]).
    dirs: Arc<Mutex<DirCache>>,
    /// POSIX ACLs are served (stored, inherited, kept in step with the mode by the
    /// namespace; enforced by the kernel).
    acls: bool,
    /// When the namespace last said no ACL was ever stored (see [`ACLS_UNUSED_TTL`]).
    acls_unused: Arc<Mutex<AclsUnused>>,
}

/// The namespace's last "no ACL was ever stored", and how many ACLs this mount set (an
/// answer asked for before one of them is not kept).
#[derive(Debug, Default)]
struct AclsUnused {
    at: Option<Instant>,
    sets: u64,
}

/// The kernel reads each inode's access ACL before it checks a permission by the group
/// class, and `ls -l` asks for every file: a metadata read per inode, doubling the time of
/// `ls -lR`. While no ACL was ever stored in the namespace, the mount answers "none" itself,
/// asking the namespace again after this long, the time the kernel trusts cached attributes
/// (and cached ACLs with them). An ACL set through this mount counts at once.
const ACLS_UNUSED_TTL: Duration = Duration::from_secs(1);

/// When each directory's attributes were seen, and its (perm, gid).
type DirCache = HashMap<Ino, (Instant, u16, u32)>;

/// A new inode takes its group (and a directory the set-group-id bit) from a set-group-id
/// parent, so each create needs the parent's attributes: those seen within this long are
/// reused, as the kernel reuses cached attributes. This mount's own changes to a directory's
/// attributes take effect at once.
const DIR_TTL: Duration = Duration::from_secs(1);

/// When each inode's `security.capability` was read, and the answer.
type CapsCache = HashMap<Ino, (Instant, Result<Vec<u8>, FsError>)>;

/// The kernel reads `security.capability` before every write to a file (to drop file
/// capabilities on write), which would cost a metadata round trip per write; answers are
/// reused for this long, like cached attributes. This mount's own changes to the attribute
/// take effect at once.
const CAPS: &[u8] = b"security.capability";
const CAPS_TTL: Duration = Duration::from_secs(1);

impl Namespace {
    pub fn new(meta: Arc<MetaClient>) -> Self {
        Self {
            meta,
            caps: Arc::new(Mutex::new(HashMap::new())),
            dirs: Arc::new(Mutex::new(HashMap::new())),
            acls: true,
            acls_unused: Arc::default(),
        }
    }

    /// Without POSIX ACLs (`noacl`): their attributes are refused with `EOPNOTSUPP`.
    pub fn without_acls(mut self) -> Self {
        self.acls = false;
        self
    }

    /// Whether an ACL may be stored anywhere (see [`ACLS_UNUSED_TTL`]).
    async fn acls_may_exist(&self) -> Result<bool, FsError> {
        let sets = {
            let u = self.acls_unused_table();
            if u.at.is_some_and(|t| t.elapsed() < ACLS_UNUSED_TTL) {
                return Ok(false);
            }
            u.sets
        };
        let used = match self.read("acls used", Query::AclsUsed).await?? {
            Response::Flag(used) => used,
            other => return Err(unexpected("acls used", &other)),
        };
        let mut u = self.acls_unused_table();
        if !used && u.sets == sets {
            u.at = Some(Instant::now());
        }
        Ok(used)
    }

    fn acls_unused_table(&self) -> std::sync::MutexGuard<'_, AclsUnused> {
        self.acls_unused.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_acl_name(&self, name: &[u8]) -> Result<(), FsError> {
        if !self.acls && is_acl(name) {
            Err(FsError::NotSupported)
        } else {
            Ok(())
        }
    }

    fn caps_table(&self) -> std::sync::MutexGuard<'_, CapsCache> {
        self.caps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dirs_table(&self) -> std::sync::MutexGuard<'_, DirCache> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn meta(&self) -> &Arc<MetaClient> {
        &self.meta
    }

    async fn write(&self, what: &'static str, op: Op) -> Result<Reply, FsError> {
        Ok(self
            .meta
            .write(op)
            .await
            .map_err(|e| ClientError::meta(what, e))?)
    }

    async fn read(&self, what: &'static str, q: Query) -> Result<Reply, FsError> {
        Ok(self
            .meta
            .read(q)
            .await
            .map_err(|e| ClientError::meta(what, e))?)
    }

    pub async fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let q = Query::Lookup {
            parent,
            name: name.to_vec(),
        };
        attr_of("lookup", self.read("lookup", q).await?)
    }

    /// Attributes of `ino`. An inode that no longer exists is `ESTALE`, not `ENOENT`: the
    /// name that led to it was removed by another mount since the kernel cached it, and on
    /// `ESTALE` the kernel looks the path up again instead of failing.
    pub async fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        attr_of(
            "getattr",
            self.read("getattr", Query::GetAttr { ino }).await?,
        )
        .map_err(stale)
    }

    pub async fn setattr(&self, ino: Ino, set: SetAttr) -> Result<Attr, FsError> {
        self.dirs_table().remove(&ino);
        let r = attr_of(
            "setattr",
            self.write("setattr", Op::SetAttr { ino, set }).await?,
        );
        // Dropped again: a create that read the old attributes meanwhile may have cached them.
        self.dirs_table().remove(&ino);
        r
    }

    /// Sets the inode flags of `ino` (`chattr`: `INODE_IMMUTABLE`, `INODE_APPEND`).
    pub async fn set_flags(&self, ino: Ino, flags: u32) -> Result<Attr, FsError> {
        attr_of(
            "setflags",
            self.write("setflags", Op::SetFlags { ino, flags }).await?,
        )
    }

    /// Owner and mode of a new inode under `parent`: a set-group-id directory passes its
    /// group on, and to subdirectories its set-group-id bit too (BSD/Linux semantics; the
    /// kernel leaves this to the file system even with `default_permissions`).
    async fn inherit(
        &self,
        parent: Ino,
        caller: Caller,
        perm: u16,
        dir: bool,
    ) -> Result<(u32, u16), FsError> {
        let cached = self
            .dirs_table()
            .get(&parent)
            .filter(|(at, _, _)| at.elapsed() < DIR_TTL)
            .map(|&(_, perm, gid)| (perm, gid));
        let (p_perm, p_gid) = match cached {
            Some(v) => v,
            None => {
                let p = self.getattr(parent).await?;
                let mut t = self.dirs_table();
                if t.len() > 10_000 {
                    t.clear();
                }
                t.insert(parent, (Instant::now(), p.perm, p.gid));
                (p.perm, p.gid)
            }
        };
        if p_perm & 0o2000 != 0 {
            let perm = if dir { perm | 0o2000 } else { perm };
            Ok((p_gid, perm))
        } else {
            Ok((caller.gid, perm))
        }
    }

    /// `mknod` and `create` (`open` also opens it in this session). The permission bits are
    /// `perm` without the caller's `umask`, unless the directory has a default ACL, which
    /// then decides (in the namespace, in the same command).
    #[allow(clippy::too_many_arguments)]
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        kind: FileKind,
        (perm, umask): (u16, u16),
        rdev: u32,
        caller: Caller,
        open: bool,
    ) -> Result<Attr, FsError> {
        let (gid, perm) = self.inherit(parent, caller, perm, false).await?;
        let op = Op::MakeNode {
            parent,
            name: name.to_vec(),
            kind,
            perm,
            umask,
            uid: caller.uid,
            gid,
            rdev,
            open,
        };
        let a = attr_of("mknod", self.write("mknod", op).await?)?;
        // A file made just now carries no file capabilities: the kernel's question before
        // each of the first writes needs no round trip.
        self.remember_caps(a.ino, Err(FsError::NoData));
        Ok(a)
    }

    /// `open(O_TMPFILE)`: a file with no name in `parent`, open in this session, made as
    /// `mknod` makes one (set-group-ID directory, default ACL or umask).
    pub async fn tmpfile(
        &self,
        parent: Ino,
        (perm, umask): (u16, u16),
        caller: Caller,
    ) -> Result<Attr, FsError> {
        let (gid, perm) = self.inherit(parent, caller, perm, false).await?;
        let op = Op::MakeTmpfile {
            parent,
            perm,
            umask,
            uid: caller.uid,
            gid,
        };
        let a = attr_of("tmpfile", self.write("tmpfile", op).await?)?;
        self.remember_caps(a.ino, Err(FsError::NoData));
        Ok(a)
    }

    pub async fn mkdir(
        &self,
        parent: Ino,
        name: &[u8],
        (perm, umask): (u16, u16),
        caller: Caller,
    ) -> Result<Attr, FsError> {
        let (gid, perm) = self.inherit(parent, caller, perm, true).await?;
        let op = Op::MakeNode {
            parent,
            name: name.to_vec(),
            kind: FileKind::Directory,
            perm,
            umask,
            uid: caller.uid,
            gid,
            rdev: 0,
            open: false,
        };
        attr_of("mkdir", self.write("mkdir", op).await?)
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> Result<Attr, FsError> {
        let (gid, _) = self.inherit(parent, caller, 0o777, false).await?;
        let op = Op::Symlink {
            parent,
            name: name.to_vec(),
            target: target.to_vec(),
            uid: caller.uid,
            gid,
        };
        attr_of("symlink", self.write("symlink", op).await?)
    }

    pub async fn link(&self, ino: Ino, new_parent: Ino, new_name: &[u8]) -> Result<Attr, FsError> {
        let op = Op::Link {
            ino,
            new_parent,
            new_name: new_name.to_vec(),
        };
        attr_of("link", self.write("link", op).await?)
    }

    pub async fn unlink(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        let op = Op::Unlink {
            parent,
            name: name.to_vec(),
        };
        done("unlink", self.write("unlink", op).await?)
    }

    pub async fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        let op = Op::Rmdir {
            parent,
            name: name.to_vec(),
        };
        done("rmdir", self.write("rmdir", op).await?)
    }

    pub async fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
        caller: Caller,
    ) -> Result<(), FsError> {
        let mut mode = RenameMode::from_flags(flags, caller.uid, caller.gid)?;
        if let RenameMode::Whiteout { gid, .. } = &mut mode {
            // The whiteout is a new node in the source's directory: a setgid directory
            // gives it the directory's group, as any other new node there.
            *gid = self.inherit(parent, caller, 0, false).await?.0;
        }
        let op = Op::Rename {
            parent,
            name: name.to_vec(),
            new_parent,
            new_name: new_name.to_vec(),
            mode,
        };
        done("rename", self.write("rename", op).await?)
    }

    pub async fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        match self.read("readlink", Query::ReadLink { ino }).await?? {
            Response::Target(t) => Ok(t),
            other => Err(unexpected("readlink", &other)),
        }
    }

    /// Records an open of `ino` by this session (unlink then keeps the inode alive). An open
    /// for reading is also the access: `Some(strict)` moves the access time in the same
    /// entry (always if `strict`, else under `relatime`).
    /// Under caps (`--caps`) the mount answers the open alone when it holds a cap on the
    /// file (the leader learns of it when it must); an access time it moves is in the
    /// answer's attributes and in [`Opened::accessed_at`], for the caller to send
    /// ([`accessed_at`](Self::accessed_at)).
    pub async fn open(&self, ino: Ino, access: Option<bool>) -> Result<Opened, FsError> {
        if let Some((attr, accessed_at)) = self.meta.open_locally(ino, access) {
            return Ok(Opened { attr, accessed_at });
        }
        let op = match access {
            Some(strict) => Op::OpenToRead { ino, strict },
            None => Op::Open { ino },
        };
        let attr = attr_of("open", self.write("open", op).await?).map_err(stale)?;
        Ok(Opened {
            attr,
            accessed_at: None,
        })
    }

    /// Records accesses timed by this mount (opens it answered under caps), in one Raft
    /// entry.
    pub async fn accessed_at(&self, at: Vec<(Ino, i64)>, strict: bool) -> Result<(), FsError> {
        done(
            "accessed",
            self.write("accessed", Op::AccessedAt { at, strict })
                .await?,
        )
    }

    /// Records reads of files and listings of directories (access times), in one Raft entry.
    pub async fn accessed(&self, inos: Vec<Ino>, strict: bool) -> Result<(), FsError> {
        done(
            "accessed",
            self.write("accessed", Op::Accessed { inos, strict })
                .await?,
        )
    }

    /// Drops one open of `ino` made under caps without the leader; false if the release is
    /// to be sent ([`release_many`](Self::release_many)).
    pub fn release_locally(&self, ino: Ino) -> bool {
        self.meta.release_locally(ino)
    }

    /// Drops one open of each of `inos` by this session, in one Raft entry.
    pub async fn release_many(&self, inos: Vec<Ino>) -> Result<(), FsError> {
        done(
            "release",
            self.write("release", Op::ReleaseMany { inos }).await?,
        )
    }

    /// Up to `limit` entries with cookies after `after`.
    pub async fn readdir(
        &self,
        ino: Ino,
        after: u64,
        limit: u32,
        plus: bool,
    ) -> Result<Vec<DirEntry>, FsError> {
        let q = Query::ReadDir {
            ino,
            after,
            limit,
            plus,
        };
        match self.read("readdir", q).await?? {
            Response::Entries(e) => Ok(e),
            other => Err(unexpected("readdir", &other)),
        }
    }

    /// File-system totals: capacity is the sum of the live chunkservers' capacities.
    pub async fn statfs(&self) -> Result<StatFs, FsError> {
        let (total_bytes, total_files) = self.capacity().await?;
        let q = Query::StatFs {
            total_bytes,
            total_files,
        };
        match self.read("statfs", q).await?? {
            Response::StatFs(s) => Ok(s),
            other => Err(unexpected("statfs", &other)),
        }
    }

    /// [`Self::statfs`] as `df` on a path sees it: inside a directory quota, the quota is
    /// the size and its usage the used part.
    pub async fn statfs_at(&self, ino: Ino) -> Result<StatFs, FsError> {
        let (total_bytes, total_files) = self.capacity().await?;
        let q = Query::StatFsAt {
            ino,
            total_bytes,
            total_files,
        };
        match self.read("statfs", q).await?? {
            Response::StatFs(s) => Ok(s),
            other => Err(unexpected("statfs", &other)),
        }
    }

    /// Bytes the live chunkservers hold, and the inode budget.
    async fn capacity(&self) -> Result<(u64, u64), FsError> {
        let servers = self
            .meta
            .list_chunkservers()
            .await
            .map_err(|e| ClientError::meta("statfs", e))?;
        let total_bytes = servers
            .iter()
            .filter(|s| s.state != ChunkserverState::Down)
            .map(|s| s.capacity)
            .sum();
        // Inodes cost only metadata: report a large, fixed budget.
        Ok((total_bytes, 1 << 32))
    }

    /// Bytes of the files in the trash (a scan of the whole trash on the leader).
    async fn trash_bytes(&self) -> Result<u64, FsError> {
        let q = Query::Trash {
            after: 0,
            limit: 0,
            totals: true,
        };
        match self.read("trash", q).await?? {
            Response::Trash { totals, .. } => Ok(totals.map_or(0, |(_, bytes)| bytes)),
            other => Err(unexpected("trash", &other)),
        }
    }

    pub async fn setxattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        self.check_acl_name(name)?;
        if name == TRASH_BYTES {
            return Err(FsError::NotPermitted);
        }
        if name == CAPS {
            self.caps_table().remove(&ino);
        }
        let op = Op::SetXattr {
            ino,
            name: name.to_vec(),
            value: value.to_vec(),
            mode: XattrMode::from_flags(flags)?,
        };
        let written = self.write("setxattr", op).await;
        if is_acl(name) {
            // Setting an access ACL may change the mode (set-group-ID included); from now
            // on ACLs exist, also for an answer to `acls_may_exist` still on its way.
            self.dirs_table().remove(&ino);
            let mut u = self.acls_unused_table();
            u.at = None;
            u.sets += 1;
        }
        done("setxattr", written?)
    }

    pub async fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        self.check_acl_name(name)?;
        if name == TRASH_BYTES && ino == ROOT_INO {
            return Ok(self.trash_bytes().await?.to_string().into_bytes());
        }
        if is_acl(name) && !self.acls_may_exist().await? {
            return Err(FsError::NoData);
        }
        if name == CAPS {
            if let Some((at, r)) = self.caps_table().get(&ino)
                && at.elapsed() < CAPS_TTL
            {
                return r.clone();
            }
            let r = self.getxattr_uncached(ino, name).await;
            if matches!(r, Ok(_) | Err(FsError::NoData)) {
                self.remember_caps(ino, r.clone());
            }
            return r;
        }
        self.getxattr_uncached(ino, name).await
    }

    fn remember_caps(&self, ino: Ino, answer: Result<Vec<u8>, FsError>) {
        let mut t = self.caps_table();
        if t.len() > 100_000 {
            t.clear();
        }
        t.insert(ino, (Instant::now(), answer));
    }

    async fn getxattr_uncached(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let q = Query::GetXattr {
            ino,
            name: name.to_vec(),
        };
        match self.read("getxattr", q).await?? {
            Response::Xattr(v) => Ok(v),
            other => Err(unexpected("getxattr", &other)),
        }
    }

    /// Attribute names in the `listxattr` format: each followed by a NUL.
    pub async fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        match self.read("listxattr", Query::ListXattr { ino }).await?? {
            Response::XattrNames(names) => {
                let mut out = Vec::new();
                for n in names {
                    out.extend_from_slice(&n);
                    out.push(0);
                }
                Ok(out)
            }
            other => Err(unexpected("listxattr", &other)),
        }
    }

    pub async fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<(), FsError> {
        if name == CAPS {
            self.caps_table().remove(&ino);
        }
        let op = Op::RemoveXattr {
            ino,
            name: name.to_vec(),
        };
        done("removexattr", self.write("removexattr", op).await?)
    }

    /// The first lock of another owner that conflicts with the described one.
    pub async fn getlk(
        &self,
        ino: Ino,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Result<Option<LockInfo>, FsError> {
        let q = Query::GetLock {
            ino,
            session: self.meta.session(),
            owner,
            flavor: LockFlavor::Posix,
            kind,
            start,
            end,
        };
        match self.read("getlk", q).await?? {
            Response::Lock(l) => Ok(l),
            other => Err(unexpected("getlk", &other)),
        }
    }

    /// Takes, changes or drops a lock. With `wait`, a conflict is retried with backoff
    /// (the service never blocks) until it is granted, or `EINTR` once `interrupted` says
    /// the caller was interrupted (checked between attempts, never while one is in flight,
    /// so a lock is never granted to a caller told `EINTR`); without it a conflict is
    /// `EAGAIN`.
    #[allow(clippy::too_many_arguments)]
    pub async fn setlk(
        &self,
        ino: Ino,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
        pid: u32,
        wait: bool,
        interrupted: impl Fn() -> bool,
    ) -> Result<(), FsError> {
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            let op = Op::SetLock {
                ino,
                owner,
                // fuser 0.18 does not pass the kernel's FUSE_LK_FLOCK flag, so flock locks
                // (owned by the open file) travel as POSIX whole-file locks too.
                flavor: LockFlavor::Posix,
                kind,
                start,
                end,
                pid,
            };
            match self.write("setlk", op).await? {
                Err(FsError::WouldBlock) if wait => {
                    if interrupted() {
                        return Err(FsError::Interrupted);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                r => return done("setlk", r),
            }
        }
    }
}
