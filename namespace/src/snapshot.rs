//! Snapshots (`tessera snapshot`): a read-only image of a directory's subtree at one point
//! of the namespace history, reached on every mount as `DIR/.snapshots/NAME`.
//!
//! A snapshot is a copy of the subtree's metadata as it stood when `SnapshotCreate` applied:
//! made in steps of bounded size, with what changes meanwhile copied before it changes
//! (`snapshot_copy.rs`), so it is one point of the namespace history and no command waits
//! long. The copy is real inodes in the ordinary tables (so every read path, cache and
//! mount works on it unchanged) whose chunk records name the same stripes as the originals;
//! each copied slice takes a stripe reference, so no data is copied and shard space does
//! not change, and a live file rewritten or deleted later leaves the snapshot's stripes
//! alive. Cost per inode of the subtree: one inode row, its entry (name, cookie, and for
//! files a `file_links` row), its xattrs and its chunk rows (docs/design-notes.md
//! "Snapshots"). A snapshot is named in `.snapshots` once its copy is complete; a deleted
//! one disappears at once and is freed in steps the same way.
//!
//! Copies carry the internal flag [`SNAPSHOT`]; [`refuse_changes`] turns any command that
//! would change one into `EROFS`, whatever the command (so no handler needs its own check).
//! The exceptions are what reading needs: opens and releases (the `opens` count) and the
//! access time, which is kept as it was. `DIR/.snapshots` is a directory of its own (also
//! flagged), found by [`holder`]: `lookup` answers the name though `DIR` has no such entry,
//! so `readdir` of `DIR` does not show it. Snapshots do not count in quotas (quota walks go
//! by entries, and the holder is none); a restore makes live files and counts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tessera_proto::fs::{FileKind, FsError, INODE_READ_ONLY, Ino};
pub(crate) use tessera_proto::meta::SNAPSHOTS_NAME;
use tessera_proto::meta::{Op, Response, SnapshotEntry};

use super::codec::{Key, decode, key_u64};
use super::flags;
use super::names::check_name;
use super::nodes::{NewInode, add_entry, create_inode, free_or_orphan, remove_entry};
use super::overlay::Writes;
use super::records::{DentryRec, InodeRec};
use super::snapshot_copy::{self, JobRec, add_entry_keeping_times, copy_inode};
use super::state::{OpError, OpResult, Tables, TablesMut, keys};
use super::store::{INODE_TABLES, Store, StoreRead, Table, scan_prefix};
use super::trash::dir_path;
use crate::error::NamespaceError;

/// Inode flag: the inode belongs to a snapshot (or is a `.snapshots` directory) and may not
/// change. Shown in the attributes (so a mount refuses opens for writing), never as a
/// Linux inode flag.
pub(crate) const SNAPSHOT: u32 = INODE_READ_ONLY;

/// `snapshots[(dir, name)]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRec {
    pub root: Ino,
    pub created_ns: i64,
    pub dirs: u64,
    pub files: u64,
    pub bytes: u64,
    /// The job still copying it (`snapshot_copy.rs`); `None` once it is complete.
    pub job: Option<u64>,
}

fn snapshot_key(dir: Ino, name: &[u8]) -> Vec<u8> {
    Key::new().u64(dir).bytes(name).done()
}

fn is_snapshot(rec: &InodeRec) -> bool {
    rec.flags & SNAPSHOT != 0
}

/// Whether the command is one of the snapshot commands, which alone change snapshots.
pub(crate) fn is_snapshot_op(op: &Op) -> bool {
    matches!(
        op,
        Op::SnapshotCreate { .. }
            | Op::SnapshotStep { .. }
            | Op::SnapshotDelete { .. }
            | Op::SnapshotRestore { .. }
    )
}

/// `dir`'s `.snapshots` directory, if it ever had a snapshot.
pub(crate) fn holder<S: StoreRead + ?Sized>(
    s: &S,
    dir: Ino,
) -> Result<Option<Ino>, NamespaceError> {
    s.rec(Table::SnapshotDirs, &keys::inode(dir))
}

/// `ENOTEMPTY` for a directory that holds snapshots: removing it (rmdir, or a rename over
/// it) would leave them unreachable.
pub(crate) fn need_no_snapshots<S: StoreRead + ?Sized>(s: &S, dir: Ino) -> OpResult<()> {
    if holder(s, dir)?.is_some() {
        return Err(FsError::NotEmpty.into());
    }
    Ok(())
}

/// A restore's copy: the whole subtree in the one command, as live files.
struct Restorer {
    now: i64,
    /// Non-directories copied so far: a second name of the same inode links the same copy.
    made: HashMap<Ino, Ino>,
}

impl Restorer {
    /// Copies `src` (and for a directory everything below it) as `to_parent`/`to_name`.
    fn copy_tree<S: Store + ?Sized>(
        &mut self,
        s: &mut S,
        src: Ino,
        to_parent: Ino,
        to_name: &[u8],
    ) -> OpResult<Ino> {
        let now = self.now;
        let rec = s.need_inode(src)?;
        let root = copy_inode(s, src, &rec, to_parent, false)?;
        add_entry(s, to_parent, to_name, root, rec.kind, now)?;
        if !rec.kind.is_dir() {
            return Ok(root);
        }
        let mut dirs = vec![(src, root)];
        while let Some((from_dir, to_dir)) = dirs.pop() {
            for (key, value) in scan_prefix(s, Table::Dentries, &keys::inode(from_dir))? {
                let entry: DentryRec = decode(Table::Dentries, &key, &value)?;
                let name = &key[8..];
                let child = match self.made.get(&entry.ino) {
                    Some(&copy) => {
                        s.update_inode(copy, |r| r.nlink += 1)?;
                        copy
                    }
                    None => {
                        let child_rec = s.inode(entry.ino)?.ok_or(NamespaceError::Invariant {
                            what: "directory entry names a missing inode",
                            ino: entry.ino,
                        })?;
                        let copy = copy_inode(s, entry.ino, &child_rec, to_dir, false)?;
                        if entry.kind.is_dir() {
                            dirs.push((entry.ino, copy));
                        } else {
                            self.made.insert(entry.ino, copy);
                        }
                        copy
                    }
                };
                add_entry_keeping_times(s, to_dir, name, child, entry.kind, now)?;
            }
        }
        Ok(root)
    }
}

/// [`Op::SnapshotCreate`]: starts the copy and copies up to `budget` entries itself (all
/// of a small tree); the leader's [`Op::SnapshotStep`]s do the rest (`snapshot_copy.rs`).
///
/// [`Op::SnapshotStep`]: tessera_proto::meta::Op::SnapshotStep
pub(crate) fn create<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    budget: u64,
    now: i64,
) -> OpResult<Response> {
    check_name(name)?;
    let rec = s.need_live_dir(dir)?;
    if is_snapshot(&rec) {
        return Err(FsError::ReadOnly.into());
    }
    if s.get(Table::Snapshots, &snapshot_key(dir, name))?.is_some() {
        return Err(FsError::Exists.into());
    }
    let holder = match holder(s, dir)? {
        Some(h) => h,
        None => make_holder(s, dir, &rec, now)?,
    };
    let (job, jr) = snapshot_copy::start(s, dir, name, holder)?;
    let snap = SnapshotRec {
        root: jr.root,
        created_ns: now,
        dirs: 0,
        files: 0,
        bytes: 0,
        job: Some(job),
    };
    s.put_rec(Table::Snapshots, &snapshot_key(dir, name), &snap)?;
    if !snapshot_copy::step(s, job, budget, now)?
        && snapshot_copy::job(s, job)?.is_some_and(|j| j.cleaning)
    {
        snapshot_copy::step(s, job, budget, now)?;
    }
    let snap = s
        .rec(Table::Snapshots, &snapshot_key(dir, name))?
        .unwrap_or(snap);
    let entry = entry(s, dir, name, &snap, &mut HashMap::new())?;
    Ok(Response::Snapshots(vec![entry]))
}

/// Names a snapshot whose copy is complete (`.snapshots/NAME`), with its counts.
pub(crate) fn finish<S: Store + ?Sized>(s: &mut S, jr: &JobRec, now: i64) -> OpResult<()> {
    let holder = holder(s, jr.dir)?.ok_or(NamespaceError::Invariant {
        what: "a snapshot job without a .snapshots directory",
        ino: jr.dir,
    })?;
    add_entry(s, holder, &jr.name, jr.root, FileKind::Directory, now)?;
    let key = snapshot_key(jr.dir, &jr.name);
    let Some(mut snap) = s.rec::<SnapshotRec>(Table::Snapshots, &key)? else {
        return Err(NamespaceError::Invariant {
            what: "a snapshot job without its snapshot row",
            ino: jr.dir,
        }
        .into());
    };
    snap.dirs = jr.dirs;
    snap.files = jr.files;
    snap.bytes = jr.bytes;
    snap.job = None;
    s.put_rec(Table::Snapshots, &key, &snap)?;
    Ok(())
}

/// `dir/.snapshots`: owned like `dir`, readable by all, changed by snapshot commands only.
fn make_holder<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    dir_rec: &InodeRec,
    now: i64,
) -> OpResult<Ino> {
    let new = NewInode {
        kind: FileKind::Directory,
        perm: 0o555,
        uid: dir_rec.uid,
        gid: dir_rec.gid,
        rdev: 0,
        target: Vec::new(),
        ino: None,
    };
    let (ino, _) = create_inode(s, new, dir, now)?;
    s.update_inode(ino, |r| r.flags = SNAPSHOT)?;
    s.put_rec(Table::SnapshotDirs, &keys::inode(dir), &ino)?;
    Ok(ino)
}

/// [`Op::SnapshotDelete`].
pub(crate) fn delete<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    now: i64,
) -> OpResult<Response> {
    let key = snapshot_key(dir, name);
    let Some(snap) = s.rec::<SnapshotRec>(Table::Snapshots, &key)? else {
        return Err(FsError::NotFound.into());
    };
    if snap.job.is_some() {
        return Err(FsError::Busy.into());
    }
    let holder = holder(s, dir)?.ok_or(NamespaceError::Invariant {
        what: "a snapshot row without a .snapshots directory",
        ino: dir,
    })?;
    let entry = s.dentry(holder, name)?.ok_or(NamespaceError::Invariant {
        what: "a snapshot row without its entry in .snapshots",
        ino: holder,
    })?;
    remove_entry(s, holder, name, &entry, now)?;
    s.delete(Table::Snapshots, &key)?;
    // Gone from view at once; freed in steps like a copy (`snapshot_copy.rs`).
    snapshot_copy::start_freeing(s, dir, name, entry.ino, DELETE_BUDGET, now)?;
    if scan_prefix(s, Table::Snapshots, &keys::inode(dir))?.is_empty() {
        s.delete(Table::SnapshotDirs, &keys::inode(dir))?;
        let rec = s.update_inode(holder, |r| {
            r.nlink = 0;
            r.ctime = now;
        })?;
        free_or_orphan(s, holder, rec.opens, now)?;
    }
    Ok(Response::Done)
}

/// Entries a delete frees itself before the leader's steps take over (a few in unit tests,
/// so they go through the steps).
const DELETE_BUDGET: u64 = if cfg!(test) { 2 } else { 1000 };

/// [`Op::SnapshotRestore`].
pub(crate) fn restore<S: Store + ?Sized>(
    s: &mut S,
    from: Ino,
    to_parent: Ino,
    to_name: &[u8],
    now: i64,
) -> OpResult<Response> {
    check_name(to_name)?;
    let rec = s.need_inode(from)?;
    // The `.snapshots` directory itself is no snapshot's content.
    if !is_snapshot(&rec) || rec.nlink == 0 || is_holder(s, from, &rec)? {
        return Err(FsError::Invalid.into());
    }
    let parent = s.need_live_dir(to_parent)?;
    if is_snapshot(&parent) {
        return Err(FsError::ReadOnly.into());
    }
    flags::need_mutable(&parent)?;
    if s.dentry(to_parent, to_name)?.is_some() {
        return Err(FsError::Exists.into());
    }
    let mut copier = Restorer {
        now,
        made: HashMap::new(),
    };
    let ino = copier.copy_tree(s, from, to_parent, to_name)?;
    Ok(Response::Attr(s.need_inode(ino)?.attr(ino)))
}

fn is_holder<S: StoreRead + ?Sized>(s: &S, ino: Ino, rec: &InodeRec) -> OpResult<bool> {
    Ok(rec.kind.is_dir() && holder(s, rec.parent)? == Some(ino))
}

/// [`tessera_proto::meta::Query::Snapshots`].
pub(crate) fn list<S: StoreRead + ?Sized>(s: &S, dir: Option<Ino>) -> OpResult<Response> {
    let prefix = dir.map(keys::inode).unwrap_or_default();
    let mut paths = HashMap::new();
    let mut out = Vec::new();
    for (key, value) in scan_prefix(s, Table::Snapshots, &prefix)? {
        let snap: SnapshotRec = decode(Table::Snapshots, &key, &value)?;
        let dir = key_u64(Table::Snapshots, &key, 0)?;
        out.push(entry(s, dir, &key[8..], &snap, &mut paths)?);
    }
    Ok(Response::Snapshots(out))
}

fn entry<S: StoreRead + ?Sized>(
    s: &S,
    dir: Ino,
    name: &[u8],
    snap: &SnapshotRec,
    paths: &mut HashMap<Ino, Option<Vec<u8>>>,
) -> OpResult<SnapshotEntry> {
    // While copying, what is copied so far.
    let counts = match snap.job {
        Some(job) => snapshot_copy::job(s, job)?.map(|j| (j.dirs, j.files, j.bytes)),
        None => None,
    };
    let (dirs, files, bytes) = counts.unwrap_or((snap.dirs, snap.files, snap.bytes));
    Ok(SnapshotEntry {
        dir,
        dir_path: dir_path(s, dir, paths, 0)?,
        name: name.to_vec(),
        root: snap.root,
        created_ns: snap.created_ns,
        dirs,
        files,
        bytes,
        ready: snap.job.is_none(),
        job: snap.job,
    })
}

/// `EROFS` if `writes` (a command's, not a snapshot command's) change a snapshot inode:
/// its row, entries, xattrs or chunks. Allowed, because reading needs them: a change of
/// the row's open count, and of its access time, which is put back as it was (a snapshot's
/// times do not move). Inodes of a deleted snapshot (no links) are freed as usual.
pub(crate) fn refuse_changes<S: StoreRead + ?Sized>(base: &S, writes: &mut Writes) -> OpResult<()> {
    if base.scan(Table::SnapshotDirs, &[], None, 1)?.is_empty() {
        return Ok(());
    }
    let mut frozen: HashMap<Ino, Option<InodeRec>> = HashMap::new();
    for ((table, key), value) in writes.iter_mut() {
        if !INODE_TABLES.contains(table) {
            continue;
        }
        let ino = key_u64(*table, key, 0)?;
        let rec = match frozen.get(&ino) {
            Some(known) => known.clone(),
            None => {
                let rec = base.inode(ino)?.filter(|r| is_snapshot(r) && r.nlink > 0);
                frozen.insert(ino, rec.clone());
                rec
            }
        };
        let Some(old) = rec else {
            continue;
        };
        if base.get(*table, key)?.as_deref() == value.as_deref() {
            continue;
        }
        let new = match (table, value.as_deref()) {
            (Table::Inodes, Some(bytes)) => InodeRec::decode(key, bytes)?,
            _ => return Err(OpError::Fs(FsError::ReadOnly)),
        };
        let kept = InodeRec {
            opens: new.opens,
            ..old.clone()
        };
        let only_reading = InodeRec {
            atime: old.atime,
            ..new
        } == kept;
        if !only_reading {
            return Err(OpError::Fs(FsError::ReadOnly));
        }
        *value = Some(kept.encode());
    }
    Ok(())
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
