//! The fuser adapter: each callback copies what it borrows, hands the reply to a tokio task
//! and returns, so no lock or thread serialises operations and every request is bounded by
//! the client library's deadlines. POSIX logic lives in `tessera-client` (whose `error.rs`
//! turns every failure into an `FsError`); an `FsError` becomes an errno reply in
//! `errno.rs` only.

mod atimes;
mod attr;
mod dir_listings;
mod errno;
mod handles;
mod inode_flags;
mod lock_takers;
pub mod metrics;
mod open_dirs;
mod privilege;
mod releases;
mod signals;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fuser::{
    AccessFlags, CopyFileRangeFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, Notifier, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tessera_proto::fs::{
    Attr, DirEntry, FileKind, FsError, INODE_FLAGS, Ino, LockKind, SetAttr, XATTR_ACL_ACCESS,
};

pub use atimes::AtimeMode;
use atimes::Atimes;
use dir_listings::DirListings;
pub use errno::errno;
use handles::Handles;
use lock_takers::LockTakers;
use metrics::{Answering, FsOp, fs_metrics, timed, timed_since};
use open_dirs::OpenDirs;
use releases::Releases;
use tessera_client::data::{DataPath, InodeData};
use tessera_client::ops::{Caller, Namespace, Opened};

/// Entries per readdir round trip.
const READDIR_BATCH: u32 = 256;

/// Linux `F_RDLCK`, `F_WRLCK`, `F_UNLCK`.
const F_RDLCK: i32 = 0;
const F_WRLCK: i32 = 1;
const F_UNLCK: i32 = 2;

/// Linux `SEEK_DATA`, `SEEK_HOLE` (the kernel answers the other `lseek` kinds itself).
const SEEK_DATA: i32 = 3;
const SEEK_HOLE: i32 = 4;

/// Linux `fallocate` mode flags the kernel passes to FUSE daemons.
const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// Settings of the adapter.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// How long the kernel may trust attributes and names without asking again. An open
    /// always revalidates, so this bounds staleness of `stat` only, not of file contents.
    pub ttl: Duration,
    /// When reads move access times (`atimes.rs`).
    pub atime: AtimeMode,
    /// POSIX ACLs: stored and inherited by the namespace, enforced by the kernel (FUSE's
    /// POSIX ACL support). Off (`noacl`), their attributes are refused.
    pub acl: bool,
    /// Which serving process of a supervised mount this is (1, 2, ...; 0 without a
    /// supervisor): handle numbers carry it, and older handles are adopted (`handles.rs`).
    pub generation: u64,
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1),
            atime: AtimeMode::default(),
            acl: true,
            generation: 0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    ns: Namespace,
    data: Arc<DataPath>,
    handles: Handles,
    open_dirs: OpenDirs,
    /// Whole small listings kept per directory handle for the rest of their scan.
    dir_listings: DirListings,
    notifier: OnceLock<Notifier>,
    /// (inode, lock owner) pairs this mount has taken locks for: only those need an
    /// unlock on close (a lock-free close costs no metadata write).
    locked: Mutex<HashSet<(u64, u64)>>,
    /// Owners that locked through each handle: closing an open file description drops
    /// its OFD locks (see `lock_takers.rs`).
    lock_takers: LockTakers,
    /// Releases go out in the background, in batches (see `releases.rs`).
    releases: Releases,
    /// Access times go out in the background, in batches (see `atimes.rs`).
    atimes: Atimes,
    ttl: Duration,
    /// POSIX ACLs are served ([`FsOptions::acl`]).
    acl: bool,
    /// Requests handed to tasks and not answered yet (a planned handover waits for 0).
    in_flight: Arc<AtomicUsize>,
}

/// Counts one request in [`Inner::in_flight`] while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: &Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The file system the kernel talks to.
#[derive(Debug)]
pub struct TesseraFs {
    inner: Arc<Inner>,
    rt: tokio::runtime::Handle,
}

fn name_of(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

/// A create's permission bits and the caller's umask, left for the namespace to combine:
/// with FUSE's POSIX ACL support the kernel no longer applies the umask, and a directory's
/// default ACL replaces it.
fn perm_umask(mode: u32, umask: u32) -> (u16, u16) {
    ((mode & 0o7777) as u16, (umask & 0o777) as u16)
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn lock_kind(typ: i32) -> Result<LockKind, FsError> {
    match typ {
        F_RDLCK => Ok(LockKind::Shared),
        F_WRLCK => Ok(LockKind::Exclusive),
        F_UNLCK => Ok(LockKind::Unlock),
        _ => Err(FsError::Invalid),
    }
}

impl Inner {
    fn entry(&self, reply: ReplyEntry, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => {
                let a = self.data.with_local_size(a);
                reply.entry(&self.ttl, &attr::file_attr(&a), Generation(a.generation))
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// The state of handle `fh` on `ino` (a previous serving process's handle is adopted).
    fn handle(&self, fh: FileHandle, ino: u64) -> Result<Arc<InodeData>, FsError> {
        self.handles
            .get_or_adopt(fh.0, ino, || self.data.open(ino))
            .ok_or(FsError::BadHandle)
    }

    /// Drops the locks `owner` holds on `ino` if this mount ever took one for it.
    async fn unlock_owner(&self, ino: u64, owner: u64) -> Result<(), FsError> {
        let had = self
            .locked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(ino, owner));
        self.lock_takers.dropped(ino, owner);
        // A previous serving process may have taken locks on an inode opened before it
        // handed over: this process cannot know, so it always unlocks those.
        if had || self.handles.inherited(ino) {
            self.ns
                .setlk(ino, owner, LockKind::Unlock, 0, u64::MAX, 0, false, || {
                    false
                })
                .await?;
        }
        Ok(())
    }

    /// `statfs` with the room that preallocations hold (in this mount's code's shard
    /// bytes) counted as used.
    /// With `at`, as seen from that inode (inside a directory quota: the quota).
    async fn free_space(&self, at: Option<Ino>) -> Result<tessera_proto::fs::StatFs, FsError> {
        let mut s = match at {
            Some(ino) => self.ns.statfs_at(ino).await?,
            None => self.ns.statfs().await?,
        };
        let held = self.data.shard_bytes_for(s.reserved_bytes) / u64::from(s.frsize.max(1));
        s.bfree = s.bfree.saturating_sub(held);
        s.bavail = s.bavail.saturating_sub(held);
        Ok(s)
    }

    /// Answers a create: the new file is open through a new handle.
    fn created(&self, made: Result<Attr, FsError>, reply: ReplyCreate) {
        match made {
            Ok(a) => {
                self.data.keep_cache(&a);
                let fh = self.handles.insert(self.data.open(a.ino));
                reply.created(
                    &self.ttl,
                    &attr::file_attr(&a),
                    Generation(a.generation),
                    FileHandle(fh),
                    FopenFlags::empty(),
                )
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Directory entries after `offset` for handle `fh`: from the listing the handle keeps
    /// when its scan read the whole directory at once (`dir_listings.rs`), else asked for.
    async fn list(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> Result<Vec<DirEntry>, FsError> {
        if offset > 0
            && let Some(kept) = self.dir_listings.after(fh, offset, plus)
        {
            return Ok(kept);
        }
        let entries = self.ns.readdir(ino, offset, READDIR_BATCH, plus).await?;
        if offset == 0 {
            self.dir_listings
                .read_from_start(fh, &entries, READDIR_BATCH as usize, plus);
        }
        Ok(entries)
    }

    /// The kernel's cached attributes of `ino` are stale (another mount changed the file):
    /// drop them, so a read past the old size asks again.
    fn forget_attrs(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(INodeNo(ino), -1, 0)
        {
            tracing::debug!(ino, "attribute invalidation failed: {e}");
        }
    }
}

impl TesseraFs {
    pub fn new(
        ns: Namespace,
        data: Arc<DataPath>,
        options: FsOptions,
        rt: tokio::runtime::Handle,
    ) -> Self {
        let ns = if options.acl { ns } else { ns.without_acls() };
        let releases = Releases::start(ns.clone(), &rt);
        let atimes = Atimes::start(options.atime, ns.clone(), &rt);
        Self {
            inner: Arc::new(Inner {
                releases,
                atimes,
                ns,
                data,
                handles: Handles::new(options.generation),
                open_dirs: OpenDirs::default(),
                dir_listings: DirListings::new(options.generation),
                notifier: OnceLock::new(),
                locked: Mutex::new(HashSet::new()),
                lock_takers: LockTakers::default(),
                ttl: options.ttl,
                acl: options.acl,
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
            rt,
        }
    }

    /// Gives the adapter the session's notifier (available once mounted).
    pub fn notifier_slot(&self) -> NotifierSlot {
        NotifierSlot(self.inner.clone())
    }

    fn run<F, Fut>(&self, op: FsOp, f: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let counted = InFlight::new(&self.inner.in_flight);
        let fut = f(self.inner.clone());
        self.rt.spawn(timed(op, async move {
            fut.await;
            drop(counted);
        }));
    }

    /// Whether every request handed to a task was answered and every queued release sent:
    /// what a planned handover waits for once no more requests are read.
    pub fn quiet_probe(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let (n, releases) = (self.inner.in_flight.clone(), self.inner.releases.clone());
        move || n.load(Ordering::SeqCst) == 0 && releases.pending() == 0
    }
}

/// Where the mount puts the session's notifier once the session exists.
#[derive(Debug)]
pub struct NotifierSlot(Arc<Inner>);

impl NotifierSlot {
    pub fn set(&self, n: Notifier) {
        let _ = self.0.notifier.set(n);
    }
}

impl Filesystem for TesseraFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each capability separately: an older kernel lacking one still mounts.
        for cap in [
            InitFlags::FUSE_POSIX_LOCKS,
            InitFlags::FUSE_FLOCK_LOCKS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
            // File handles (name_to_handle_at, NFS re-export): the kernel resolves a handle
            // it no longer caches by looking up "." in the inode it names.
            InitFlags::FUSE_EXPORT_SUPPORT,
        ] {
            if let Err(missing) = config.add_capabilities(cap) {
                tracing::info!("kernel lacks FUSE capability {missing:?}");
            }
        }
        // The kernel then checks ACLs itself (it reads and caches system.posix_acl_access);
        // with DONT_MASK it also leaves the umask to the daemon, which must ignore it under
        // a default ACL.
        if self.inner.acl
            && let Err(missing) =
                config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK)
        {
            tracing::warn!("kernel lacks FUSE capability {missing:?}: POSIX ACLs are not enforced");
        }
        let _ = config.set_max_write(1 << 20);
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name_of(name);
        self.run(FsOp::Lookup, |i| async move {
            let r = i.ns.lookup(parent.0, &name).await;
            i.entry(reply, r)
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run(FsOp::Getattr, |i| async move {
            i.atimes.settle(ino.0).await;
            match i.ns.getattr(ino.0).await {
                Ok(a) => {
                    i.open_dirs.saw(&a);
                    reply.attr(&i.ttl, &attr::file_attr(&i.data.with_local_size(a)))
                }
                Err(e @ (FsError::Stale | FsError::NotFound)) => match i.open_dirs.removed(ino.0) {
                    Some(a) => reply.attr(&i.ttl, &attr::file_attr(&a)),
                    None => reply.error(errno(e)),
                },
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: attr::set_time(atime),
            mtime: attr::set_time(mtime),
        };
        self.run(FsOp::Setattr, |i| async move {
            let r = match size {
                Some(size) => {
                    let a = i.data.truncate(ino.0, size, i.ns.setattr(ino.0, set)).await;
                    if let Ok(a) = &a {
                        i.data.saw(a);
                        // A cut may end preallocated ranges: stop counting on them here.
                        i.data.forget_reserved(ino.0);
                    }
                    a
                }
                None => i.ns.setattr(ino.0, set).await,
            };
            match r {
                Ok(a) => reply.attr(&i.ttl, &attr::file_attr(&i.data.with_local_size(a))),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.run(FsOp::Readlink, |i| async move {
            match i.ns.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name_of(name), caller(req));
        self.run(FsOp::Mknod, |i| async move {
            let r = match FileKind::from_mode(mode) {
                Some(FileKind::Directory | FileKind::Symlink) | None => Err(FsError::Invalid),
                Some(kind) => {
                    i.ns.mknod(
                        parent.0,
                        &name,
                        kind,
                        perm_umask(mode, umask),
                        rdev,
                        who,
                        false,
                    )
                    .await
                }
            };
            i.entry(reply, r)
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name_of(name), caller(req));
        self.run(FsOp::Mkdir, |i| async move {
            let r =
                i.ns.mkdir(parent.0, &name, perm_umask(mode, umask), who)
                    .await;
            i.entry(reply, r)
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_of(name);
        self.run(FsOp::Unlink, |i| async move {
            Inner::empty(reply, i.ns.unlink(parent.0, &name).await)
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_of(name);
        self.run(FsOp::Rmdir, |i| async move {
            Inner::empty(reply, i.ns.rmdir(parent.0, &name).await)
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name_of(link_name), caller(req));
        let target = target.as_os_str().as_bytes().to_vec();
        self.run(FsOp::Symlink, |i| async move {
            let r = i.ns.symlink(parent.0, &name, &target, who).await;
            i.entry(reply, r)
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname, who) = (name_of(name), name_of(newname), caller(req));
        self.run(FsOp::Rename, |i| async move {
            let r =
                i.ns.rename(parent.0, &name, newparent.0, &newname, flags.bits(), who)
                    .await;
            Inner::empty(reply, r)
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = name_of(newname);
        self.run(FsOp::Link, |i| async move {
            let r = i.ns.link(ino.0, newparent.0, &newname).await;
            i.entry(reply, r)
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let reads = flags.acc_mode() != OpenAccMode::O_WRONLY;
        let writes = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let append = flags.0 & inode_flags::O_APPEND != 0;
        let truncate = flags.0 & inode_flags::O_TRUNC != 0;
        self.run(FsOp::Open, |i| async move {
            let access = if reads { i.atimes.open_access() } else { None };
            match i.ns.open(ino.0, access).await {
                Ok(Opened {
                    attr: a,
                    accessed_at,
                }) => {
                    // Flags from the open's own (committed) attributes, so a `chattr` on
                    // another mount counts at once; the open is given back at once.
                    if let Err(e) = inode_flags::check_open(&a, writes, append, truncate) {
                        i.releases.queue(ino.0);
                        return reply.error(errno(e));
                    }
                    if let Some(at) = accessed_at {
                        // Moved here (an open under caps): sent in the background, shown
                        // by this mount at once.
                        i.atimes.moved_here(ino.0, at);
                        i.forget_attrs(ino.0);
                    } else if access.is_some() && i.atimes.moved_by_open(&a) {
                        i.forget_attrs(ino.0);
                    }
                    // Close-to-open: the open saw the committed attributes; if they are not
                    // what this mount last saw, its page cache and cached size are stale.
                    let flags = if i.data.keep_cache(&a) {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        i.forget_attrs(ino.0);
                        FopenFlags::empty()
                    };
                    let fh = i.handles.insert(i.data.open(ino.0));
                    reply.opened(FileHandle(fh), flags)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, who) = (name_of(name), caller(req));
        let perm = perm_umask(mode, umask);
        self.run(FsOp::Create, |i| async move {
            let r =
                i.ns.mknod(parent.0, &name, FileKind::Regular, perm, 0, who, true)
                    .await;
            // The kernel asks to create only where it believes the name is free; another
            // mount may have created it since. Without O_EXCL that is an open of the
            // existing file, which ESTALE makes the kernel redo from a fresh lookup (with
            // its own permission checks and O_TRUNC) instead of failing with EEXIST.
            let r = match r {
                Err(FsError::Exists) if flags & inode_flags::O_EXCL == 0 => Err(FsError::Stale),
                other => other,
            };
            i.created(r, reply);
        });
    }

    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        // O_TMPFILE (through the vendored fuser's FUSE_TMPFILE): made and opened as
        // `create` does, with no name; the kernel lets `linkat` name it (unless O_EXCL).
        let (who, perm) = (caller(req), perm_umask(mode, umask));
        self.run(FsOp::Tmpfile, |i| async move {
            let r = i.ns.tmpfile(parent.0, perm, who).await;
            i.created(r, reply);
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run(FsOp::Read, |i| async move {
            let d = i.handle(fh, ino.0).ok();
            match i.data.read(ino.0, d.as_ref(), offset, size).await {
                Ok(b) => {
                    i.atimes.read(ino.0);
                    fs_metrics().read_bytes.add(b.len() as u64);
                    reply.data(&b)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Buffering is a short in-memory step: done here, it saves a thread hop per write
        // (most of a small write's cost). Only a write that must wait for a flush is handed
        // to a task.
        let answering = Answering::new(FsOp::Write);
        let len = data.len() as u32;
        let d = match self.inner.handle(fh, ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(errno(e)),
        };
        match self.inner.data.buffer_write(&d, offset, data) {
            Ok(false) => {
                fs_metrics().written_bytes.add(u64::from(len));
                reply.written(len)
            }
            Ok(true) => {
                let (i, started) = (self.inner.clone(), answering.hand_off());
                let counted = InFlight::new(&i.in_flight);
                self.rt.spawn(timed_since(FsOp::Write, started, async move {
                    let _counted = counted;
                    match i.data.flush(&d).await {
                        Ok(()) => {
                            fs_metrics().written_bytes.add(u64::from(len));
                            reply.written(len)
                        }
                        Err(e) => reply.error(errno(e)),
                    }
                }));
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run(FsOp::Flush, |i| async move {
            let r = async {
                let d = i.handle(fh, ino.0)?;
                let had = d.has_buffered();
                let flushed = i.data.flush(&d).await;
                if had {
                    // The kernel cached `st_blocks` estimated from the buffer; the commit
                    // made it exact.
                    i.forget_attrs(ino.0);
                }
                // close() drops the process's POSIX locks on the file.
                i.unlock_owner(ino.0, lock_owner.0).await?;
                flushed
            }
            .await;
            Inner::empty(reply, r)
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run(FsOp::Release, |i| async move {
            let r = async {
                let d = i
                    .handles
                    .remove_or_adopt(fh.0, ino.0, || i.data.open(ino.0))
                    .ok_or(FsError::BadHandle)?;
                // Every step runs even if an earlier one failed: the open must not leak.
                let closed = i.data.close(&d).await;
                let mut unlocked = match lock_owner {
                    Some(owner) => i.unlock_owner(ino.0, owner.0).await,
                    None => Ok(()),
                };
                for owner in i.lock_takers.released(fh.0) {
                    unlocked = unlocked.and(i.unlock_owner(ino.0, owner).await);
                }
                i.releases.queue(ino.0);
                closed.and(unlocked)
            }
            .await;
            Inner::empty(reply, r)
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(FsOp::Fsync, |i| async move {
            let r = async {
                let d = i.handle(fh, ino.0)?;
                let flushed = i.data.flush(&d).await;
                // The kernel may hold `st_blocks` estimated from buffered bytes that this
                // flush or an earlier timed one committed: after fsync it must be exact.
                i.forget_attrs(ino.0);
                flushed
            }
            .await;
            Inner::empty(reply, r)
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Each handle may keep a small listing for the rest of its scan (`dir_listings.rs`),
        // and an open directory that is removed must still `fstat` (`open_dirs.rs`).
        self.run(FsOp::Opendir, |i| async move {
            match i.ns.getattr(ino.0).await {
                Ok(a) => i.open_dirs.opened(a),
                // Already removed (`open(".")` in a removed working directory succeeds on
                // ext4 too): the open goes on, counted against attributes kept from before
                // if this mount has any.
                Err(e) => {
                    if !i.open_dirs.opened_again(ino.0) {
                        tracing::debug!(ino = ino.0, "opendir without attributes: {e}");
                    }
                }
            }
            reply.opened(FileHandle(i.dir_listings.open()), FopenFlags::empty())
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _answering = Answering::new(FsOp::Releasedir);
        self.inner.open_dirs.released(ino.0);
        self.inner.dir_listings.release(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run(FsOp::Readdir, |i| async move {
            match i.list(ino.0, fh.0, offset, false).await {
                Ok(entries) => {
                    if offset == 0 {
                        i.atimes.accessed(ino.0);
                    }
                    for e in entries {
                        let name = OsStr::from_bytes(&e.name);
                        if reply.add(INodeNo(e.ino), e.cookie, attr::kind(e.kind), name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.run(FsOp::Readdirplus, |i| async move {
            match i.list(ino.0, fh.0, offset, true).await {
                Ok(entries) => {
                    if offset == 0 {
                        i.atimes.accessed(ino.0);
                    }
                    for e in entries {
                        let Some(a) = e.attr else {
                            continue;
                        };
                        let a = i.data.with_local_size(a);
                        let name = OsStr::from_bytes(&e.name);
                        let fa = attr::file_attr(&a);
                        if reply.add(
                            INodeNo(e.ino),
                            e.cookie,
                            name,
                            &i.ttl,
                            &fa,
                            Generation(a.generation),
                        ) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is durable in the Raft log before it is answered.
        let _answering = Answering::new(FsOp::Fsyncdir);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.run(FsOp::Statfs, |i| async move {
            match i.free_space(Some(ino.0)).await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            let _answering = Answering::new(FsOp::Setxattr);
            return reply.error(errno(FsError::Invalid));
        }
        let (name, value) = (name_of(name), value.to_vec());
        let acl_by = (name == XATTR_ACL_ACCESS)
            .then(|| privilege::SetIdCaller::of(req.pid(), req.uid(), req.gid()));
        self.run(FsOp::Setxattr, |i| async move {
            let r = async {
                i.ns.setxattr(ino.0, &name, &value, flags as u32).await?;
                // The namespace set the mode from the ACL; set-group-ID is the caller's
                // part (see `privilege.rs`).
                if let Some(caller) = acl_by {
                    let a = i.ns.getattr(ino.0).await?;
                    let perm = caller.perm_after_acl(&a);
                    if perm != a.perm {
                        let set = SetAttr {
                            perm: Some(perm),
                            ..SetAttr::default()
                        };
                        i.ns.setattr(ino.0, set).await?;
                    }
                }
                Ok(())
            }
            .await;
            Inner::empty(reply, r)
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name_of(name);
        self.run(FsOp::Getxattr, |i| async move {
            let r = i.ns.getxattr(ino.0, &name).await;
            xattr_reply(reply, size, r)
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run(FsOp::Listxattr, |i| async move {
            let r = i.ns.listxattr(ino.0).await;
            xattr_reply(reply, size, r)
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_of(name);
        self.run(FsOp::Removexattr, |i| async move {
            Inner::empty(reply, i.ns.removexattr(ino.0, &name).await)
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // With default_permissions the kernel checks modes itself and does not ask.
        let _answering = Answering::new(FsOp::Access);
        reply.ok();
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        self.run(FsOp::Getlk, |i| async move {
            let r = async {
                let kind = lock_kind(typ)?;
                i.ns.getlk(ino.0, lock_owner.0, kind, start, end).await
            }
            .await;
            match r {
                Ok(None) => reply.locked(start, end, F_UNLCK, 0),
                Ok(Some(l)) => {
                    let typ = if l.kind == LockKind::Shared {
                        F_RDLCK
                    } else {
                        F_WRLCK
                    };
                    reply.locked(l.start, l.end, typ, l.pid)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let tid = req.pid();
        self.run(FsOp::Setlk, |i| async move {
            let r = async {
                let kind = lock_kind(typ)?;
                if kind != LockKind::Unlock {
                    i.locked
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((ino.0, lock_owner.0));
                    i.lock_takers.took(fh.0, ino.0, lock_owner.0);
                }
                let interrupted = move || signals::interrupted(tid);
                i.ns.setlk(
                    ino.0,
                    lock_owner.0,
                    kind,
                    start,
                    end,
                    pid,
                    sleep,
                    interrupted,
                )
                .await
            }
            .await;
            Inner::empty(reply, r)
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        if !flags.is_empty() {
            let _answering = Answering::new(FsOp::CopyFileRange);
            return reply.error(errno(FsError::Invalid));
        }
        self.run(FsOp::CopyFileRange, |i| async move {
            let r = async {
                let (src, dst) = (i.handle(fh_in, ino_in.0)?, i.handle(fh_out, ino_out.0)?);
                i.data.flush(&src).await?;
                i.data.flush(&dst).await?;
                // No bytes move: the target's range refers to the source's stripes.
                let copied = i
                    .data
                    .copy_range(&src, offset_in, &dst, offset_out, len)
                    .await;
                // The target's `st_blocks` changed; the kernel may keep what it cached.
                i.forget_attrs(ino_out.0);
                copied
            }
            .await;
            match r {
                // At most 1 GiB per call (see `copy.rs`), so the count fits.
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.run(FsOp::Lseek, |i| async move {
            let r = async {
                let hole = match whence {
                    SEEK_DATA => false,
                    SEEK_HOLE => true,
                    _ => return Err(FsError::Invalid),
                };
                let off = u64::try_from(offset).map_err(|_| FsError::NoSuchOffset)?;
                let d = i.handle(fh, ino.0)?;
                i.data.flush(&d).await?;
                i.data.seek(ino.0, Some(&d), off, hole).await
            }
            .await;
            match r.map(i64::try_from) {
                Ok(Ok(at)) => reply.offset(at),
                Ok(Err(_)) => reply.error(errno(FsError::FileTooLarge)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        let Some(which) = inode_flags::FlagsIoctl::of(cmd) else {
            let _answering = Answering::new(FsOp::Ioctl);
            return reply.error(fuser::Errno::ENOTTY);
        };
        let wanted = match which.flags_in(in_data) {
            Ok(wanted) => wanted,
            Err(e) => {
                let _answering = Answering::new(FsOp::Ioctl);
                return reply.error(errno(e));
            }
        };
        let may_pin = privilege::holds_cap(req.pid(), req.uid(), inode_flags::CAP_LINUX_IMMUTABLE);
        self.run(FsOp::Ioctl, |i| async move {
            let r = async {
                let a = i.ns.getattr(ino.0).await?;
                let Some(flags) = wanted else {
                    return Ok(a.flags & INODE_FLAGS);
                };
                // The kernel checked this already (`fileattr_set_prepare`); a request
                // that reached us otherwise is held to the same rule.
                if inode_flags::needs_cap(a.flags, flags) && !may_pin {
                    return Err(FsError::NotPermitted);
                }
                let a = i.ns.set_flags(ino.0, flags).await?;
                i.forget_attrs(ino.0);
                Ok(a.flags & INODE_FLAGS)
            }
            .await;
            match r {
                Ok(flags) => reply.ioctl(0, &which.flags_out(flags, out_size)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // The kernel forwards only these three flags (COLLAPSE_RANGE and INSERT_RANGE get
        // EOPNOTSUPP in fuse_file_fallocate before a daemon sees them), and refuses PUNCH_HOLE
        // without KEEP_SIZE and PUNCH_HOLE with ZERO_RANGE itself.
        if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
            let _answering = Answering::new(FsOp::Fallocate);
            return reply.error(errno(FsError::NotSupported));
        }
        let keep_size = mode & FALLOC_FL_KEEP_SIZE != 0;
        let zero = mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0;
        let set_id = privilege::SetIdCaller::of(req.pid(), req.uid(), req.gid());
        self.run(FsOp::Fallocate, |i| async move {
            let r = async {
                let d = i.handle(fh, ino.0)?;
                i.data.flush(&d).await?;
                let end = offset.checked_add(length).ok_or(FsError::FileTooLarge)?;
                let a = i.ns.getattr(ino.0).await?;
                // With KEEP_SIZE nothing changes past the size.
                let end_in = if keep_size { end.min(a.size) } else { end };
                if !zero {
                    // As on ext4, preallocating more than the free space (less what other
                    // preallocations hold) fails; what fits is reserved until written.
                    let s = i.free_space(None).await?;
                    let free = s.bavail.saturating_mul(u64::from(s.frsize));
                    let stored = i.data.stored_in(ino.0, Some(&d), offset, end).await?;
                    let need = length.saturating_sub(stored);
                    if i.data.shard_bytes_in_file(ino.0, need).await? > free {
                        return Err(FsError::NoSpace);
                    }
                    i.data.reserve(ino.0, offset, length).await?;
                }
                if zero {
                    // Hole slices: the range reads as zeros and holds no data; `st_blocks`
                    // may drop, which the kernel's cached attributes would not show.
                    i.data.zero(&d, offset, end_in).await?;
                    i.forget_attrs(ino.0);
                }
                // Space is not reserved (shards are written on demand), so preallocation
                // only grows the file: the new range reads as zeros. Like a write, every
                // mode clears the set-ID bits (see `privilege.rs`).
                let grow = Some(end_in).filter(|&e| e > a.size && !zero);
                let perm = Some(set_id.perm_after_change(&a)).filter(|p| *p != a.perm);
                if grow.is_some() || perm.is_some() {
                    let set = SetAttr {
                        size: grow,
                        perm,
                        ..SetAttr::default()
                    };
                    let a = i.ns.setattr(ino.0, set).await?;
                    i.data.saw(&a);
                }
                Ok(())
            }
            .await;
            Inner::empty(reply, r)
        });
    }
}

/// The `getxattr`/`listxattr` size protocol: size 0 asks for the length only; a buffer
/// too small is `ERANGE`.
fn xattr_reply(reply: ReplyXattr, size: u32, r: Result<Vec<u8>, FsError>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(errno(FsError::OutOfRange)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(e)),
    }
}
