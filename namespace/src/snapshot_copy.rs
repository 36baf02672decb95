//! Copying a snapshot's tree in steps, with copy-before-change, so taking a snapshot of a
//! large tree stalls no one for long and is still one point in time.
//!
//! `SnapshotCreate` copies the directory's own record and queues its listing; the rest is
//! copied by a *job*: as much as the create command's budget allows (small trees are done
//! then), the rest by `SnapshotStep` commands the leader proposes, each copying about 1,000
//! entries (12 ms of apply time), while other commands run between them.
//!
//! The snapshot is the tree as it was when the create applied, because nothing in the part
//! not copied yet changes before it is copied: after any other command ran in its overlay,
//! [`preserve`] looks at the rows it changed (an inode's record, xattrs, chunks; a
//! directory entry) and, where one belongs to the region still to copy, first copies that
//! entry (with the record it names) from the state before the command; the command then
//! runs again on top, so it sees, for example, the stripe references the copy took. Which
//! part is still to copy:
//! - a directory is *queued* (`snapshot_queue[(job, dir)]`, with a cursor: the last name
//!   the walk copied) once its record was copied and until its whole listing is; copying an
//!   entry copies the child's record (`snapshot_copied[(job, ino)]` maps it to its copy; a
//!   second name of a file links the same copy) and queues a child directory;
//! - an entry of a queued directory past the cursor is copied ahead of the walk when it is
//!   about to change (the walk then finds it in the copy and skips it); a name that did not
//!   exist at the snapshot and is about to be made is remembered in `snapshot_excluded` so
//!   the walk skips it;
//! - an inode not copied yet has not moved since the snapshot (moving it changes an entry
//!   naming it, which copies it first), so it is in the region exactly when walking up from
//!   it through directories not copied yet reaches a queued directory; the directories on
//!   the way are copied entry by entry (a directory's name is found by scanning its parent's
//!   entries, once per directory and job). That walk is the cost every changing command
//!   pays while a job copies (none otherwise); a copy ahead of the walk is one entry per
//!   directory level, whatever the directories' sizes.
//!
//! When the queue is empty the snapshot's root gets its name in `.snapshots` (before that
//! nobody can reach it), and the job's bookkeeping rows are deleted in further steps.

use serde::{Deserialize, Serialize};
use tessera_proto::fs::{FileKind, Ino, ROOT_INO};

use super::codec::{Key, decode, key_u64};
use super::data;
use super::flags;
use super::nodes::add_entry;
use super::overlay::Writes;
use super::records::{ChunkRec, DentryRec, InodeRec};
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{INODE_TABLES, Store, StoreRead, Table, prefix_end, scan_prefix};
use crate::error::NamespaceError;

/// `snapshot_jobs[job]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JobRec {
    pub dir: Ino,
    pub name: Vec<u8>,
    pub root: Ino,
    /// The copy is complete and named; its bookkeeping rows are being deleted.
    pub cleaning: bool,
    /// Not a copy: a deleted snapshot whose inodes are being freed (queued directories
    /// still have entries).
    pub freeing: bool,
    pub dirs: u64,
    pub files: u64,
    pub bytes: u64,
}

fn pair(job: u64, ino: Ino) -> Vec<u8> {
    Key::new().u64(job).u64(ino).done()
}

fn copied<S: StoreRead + ?Sized>(s: &S, job: u64, ino: Ino) -> Result<Option<Ino>, NamespaceError> {
    s.rec(Table::SnapshotCopied, &pair(job, ino))
}

/// The cursor (last name copied, empty for none) of a queued directory.
fn queued<S: StoreRead + ?Sized>(
    s: &S,
    job: u64,
    dir: Ino,
) -> Result<Option<Vec<u8>>, NamespaceError> {
    s.rec(Table::SnapshotQueue, &pair(job, dir))
}

pub(crate) fn job<S: StoreRead + ?Sized>(
    s: &S,
    job: u64,
) -> Result<Option<JobRec>, NamespaceError> {
    s.rec(Table::SnapshotJobs, &keys::inode(job))
}

/// A new inode like `from` (attributes, times, xattrs, chunk rows with a stripe reference
/// per slice), not yet linked anywhere: one link for a non-directory (the caller adds its
/// entry), "." and its entry for a directory (entries are counted as they are added).
/// Marked [`super::snapshot::SNAPSHOT`] for a snapshot, unmarked for a restore.
pub(crate) fn copy_inode<S: Store + ?Sized>(
    s: &mut S,
    from: Ino,
    rec: &InodeRec,
    parent: Ino,
    snapshot: bool,
) -> OpResult<Ino> {
    let ino = super::nodes::next_ino(s)?;
    let is_dir = rec.kind.is_dir();
    let mut copy = rec.clone();
    copy.nlink = if is_dir { 2 } else { 1 };
    copy.parent = if is_dir { parent } else { 0 };
    if is_dir {
        copy.size = 0;
        copy.next_cookie = tessera_proto::fs::COOKIE_FIRST;
    }
    copy.opens = 0;
    // Preallocated, unwritten ranges read as zeros either way; the copy holds none.
    copy.reserved = Vec::new();
    copy.generation = s.counter(counter::GENERATION)?;
    let mark = super::snapshot::SNAPSHOT;
    copy.flags = if snapshot {
        rec.flags | mark
    } else {
        rec.flags & !mark
    } & !flags::UNNAMED;
    s.put_inode(ino, &copy)?;
    let new_prefix = keys::inode(ino);
    for (key, value) in scan_prefix(s, Table::Xattrs, &keys::inode(from))? {
        s.put(
            Table::Xattrs,
            &[&new_prefix[..], &key[8..]].concat(),
            &value,
        )?;
    }
    for (key, value) in scan_prefix(s, Table::Chunks, &keys::inode(from))? {
        let chunk: ChunkRec = decode(Table::Chunks, &key, &value)?;
        for r in chunk.slices.iter().filter_map(|sl| sl.data) {
            data::incref(s, &r.stripe, &[])?;
        }
        s.put(
            Table::Chunks,
            &[&new_prefix[..], &key[8..]].concat(),
            &value,
        )?;
    }
    Ok(ino)
}

impl JobRec {
    fn count(&mut self, rec: &InodeRec) {
        if rec.kind.is_dir() {
            self.dirs += 1;
        } else {
            self.files += 1;
            if rec.kind == FileKind::Regular {
                self.bytes = self.bytes.saturating_add(rec.size);
            }
        }
    }
}

fn next_job<S: Store + ?Sized>(s: &mut S) -> Result<u64, NamespaceError> {
    let job = s.counter(counter::NEXT_SNAPSHOT_JOB)?.max(1);
    s.put_counter(counter::NEXT_SNAPSHOT_JOB, job + 1)?;
    Ok(job)
}

/// The first directory still queued in `job`.
fn next_queued<S: StoreRead + ?Sized>(s: &S, job: u64) -> Result<Option<Ino>, NamespaceError> {
    let prefix = keys::inode(job);
    let end = prefix_end(&prefix);
    match s
        .scan(Table::SnapshotQueue, &prefix, end.as_deref(), 1)?
        .first()
    {
        Some((key, _)) => key_u64(Table::SnapshotQueue, key, 8).map(Some),
        None => Ok(None),
    }
}

/// Starts copying `dir` as a snapshot whose root's parent is `holder`: copies the
/// directory's record and queues its listing. Returns the job and the root's copy.
pub(crate) fn start<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    holder: Ino,
) -> OpResult<(u64, JobRec)> {
    let rec = s.need_inode(dir)?;
    let job = next_job(s)?;
    let root = copy_inode(s, dir, &rec, holder, true)?;
    s.put_rec(Table::SnapshotCopied, &pair(job, dir), &root)?;
    s.put_rec(Table::SnapshotQueue, &pair(job, dir), &Vec::<u8>::new())?;
    let mut jr = JobRec {
        dir,
        name: name.to_vec(),
        root,
        cleaning: false,
        freeing: false,
        dirs: 0,
        files: 0,
        bytes: 0,
    };
    jr.count(&rec);
    s.put_rec(Table::SnapshotJobs, &keys::inode(job), &jr)?;
    Ok((job, jr))
}

fn entry_key(job: u64, dir: Ino, name: &[u8]) -> Vec<u8> {
    Key::new().u64(job).u64(dir).bytes(name).done()
}

/// Copies entry `name` -> `entry` into `to_dir`, the copy of its directory: the inode it
/// names is copied (and queued if a directory), or, if copied already (a second name of a
/// file), gains a name.
fn copy_entry<S: Store + ?Sized>(
    s: &mut S,
    job: u64,
    jr: &mut JobRec,
    to_dir: Ino,
    name: &[u8],
    entry: &DentryRec,
    now: i64,
) -> OpResult<Ino> {
    let child = match copied(s, job, entry.ino)? {
        Some(copy) => {
            s.update_inode(copy, |r| r.nlink += 1)?;
            copy
        }
        None => {
            let rec = s.inode(entry.ino)?.ok_or(NamespaceError::Invariant {
                what: "directory entry names a missing inode",
                ino: entry.ino,
            })?;
            let copy = copy_inode(s, entry.ino, &rec, to_dir, true)?;
            s.put_rec(Table::SnapshotCopied, &pair(job, entry.ino), &copy)?;
            if entry.kind.is_dir() {
                s.put_rec(
                    Table::SnapshotQueue,
                    &pair(job, entry.ino),
                    &Vec::<u8>::new(),
                )?;
            }
            jr.count(&rec);
            copy
        }
    };
    add_entry_keeping_times(s, to_dir, name, child, entry.kind, now)?;
    Ok(child)
}

/// [`add_entry`] into a copied directory, which keeps the original's times (adding an entry
/// would stamp it "now").
pub(crate) fn add_entry_keeping_times<S: Store + ?Sized>(
    s: &mut S,
    to_dir: Ino,
    name: &[u8],
    child: Ino,
    kind: FileKind,
    now: i64,
) -> OpResult<()> {
    let times = s.need_inode(to_dir)?;
    add_entry(s, to_dir, name, child, kind, now)?;
    s.update_inode(to_dir, |r| {
        r.atime = times.atime;
        r.mtime = times.mtime;
        r.ctime = times.ctime;
    })?;
    Ok(())
}

/// Copies up to `budget` more entries of queued directory `dir` into its copy; takes it
/// off the queue once its listing is copied whole. Returns the entries copied.
fn copy_listing<S: Store + ?Sized>(
    s: &mut S,
    job: u64,
    jr: &mut JobRec,
    dir: Ino,
    budget: u64,
    now: i64,
) -> OpResult<u64> {
    let Some(cursor) = queued(s, job, dir)? else {
        return Ok(0);
    };
    let to_dir = copied(s, job, dir)?.ok_or(NamespaceError::Invariant {
        what: "a queued snapshot directory without its copy",
        ino: dir,
    })?;
    let prefix = keys::inode(dir);
    let start = if cursor.is_empty() {
        prefix.clone()
    } else {
        [&prefix[..], &cursor[..], &[0]].concat()
    };
    let end = prefix_end(&prefix);
    let limit = usize::try_from(budget.saturating_add(1)).unwrap_or(usize::MAX);
    let rows = s.scan(Table::Dentries, &start, end.as_deref(), limit)?;
    let mut done = 0;
    let mut last = None;
    for (key, value) in &rows {
        if done >= budget {
            break;
        }
        let entry: DentryRec = decode(Table::Dentries, key, value)?;
        let name = &key[8..];
        last = Some(name.to_vec());
        done += 1;
        // Copied ahead of the walk, or made after the snapshot.
        if s.dentry(to_dir, name)?.is_some()
            || s.get(Table::SnapshotExcluded, &entry_key(job, dir, name))?
                .is_some()
        {
            continue;
        }
        copy_entry(s, job, jr, to_dir, name, &entry, now)?;
    }
    if (rows.len() as u64) <= budget {
        s.delete(Table::SnapshotQueue, &pair(job, dir))?;
    } else if let Some(last) = last {
        s.put_rec(Table::SnapshotQueue, &pair(job, dir), &last)?;
    }
    Ok(done)
}

/// [`tessera_proto::meta::Op::SnapshotStep`]: copies about `budget` entries of `job`, names
/// the snapshot once all is copied, then deletes the job's rows. Whether it is finished.
pub(crate) fn step<S: Store + ?Sized>(
    s: &mut S,
    job_id: u64,
    budget: u64,
    now: i64,
) -> OpResult<bool> {
    let Some(mut jr) = job(s, job_id)? else {
        return Ok(true);
    };
    let budget = budget.max(1);
    let prefix = keys::inode(job_id);
    if jr.freeing {
        return free_step(s, job_id, budget, now);
    }
    if jr.cleaning {
        let limit = usize::try_from(budget).unwrap_or(usize::MAX);
        let mut left = limit;
        for table in [Table::SnapshotCopied, Table::SnapshotExcluded] {
            let rows = s.scan(table, &prefix, prefix_end(&prefix).as_deref(), left)?;
            for (key, _) in &rows {
                s.delete(table, key)?;
            }
            left -= rows.len();
            if left == 0 {
                return Ok(false);
            }
        }
        s.delete(Table::SnapshotJobs, &prefix)?;
        return Ok(true);
    }
    let mut left = budget;
    loop {
        let Some(dir) = next_queued(s, job_id)? else {
            super::snapshot::finish(s, &jr, now)?;
            jr.cleaning = true;
            break;
        };
        if left == 0 {
            break;
        }
        let done = copy_listing(s, job_id, &mut jr, dir, left, now)?;
        left = left.saturating_sub(done.max(1));
    }
    s.put_rec(Table::SnapshotJobs, &prefix, &jr)?;
    Ok(false)
}

/// Starts freeing a deleted snapshot's tree below `root` (its entry already removed) and
/// frees up to `budget` entries of it now; the leader's steps free the rest.
pub(crate) fn start_freeing<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    root: Ino,
    budget: u64,
    now: i64,
) -> OpResult<()> {
    let job = next_job(s)?;
    let jr = JobRec {
        dir,
        name: name.to_vec(),
        root,
        cleaning: false,
        freeing: true,
        dirs: 0,
        files: 0,
        bytes: 0,
    };
    s.put_rec(Table::SnapshotJobs, &keys::inode(job), &jr)?;
    s.put_rec(Table::SnapshotQueue, &pair(job, root), &Vec::<u8>::new())?;
    free_step(s, job, budget, now)?;
    Ok(())
}

/// Frees up to `budget` entries of a deleted snapshot: removes them from their directory
/// (queueing subdirectories), drops a name of each file (freed at its last, or kept as an
/// orphan while open, like any unlinked file), and frees a directory once it is empty.
fn free_step<S: Store + ?Sized>(s: &mut S, job: u64, budget: u64, now: i64) -> OpResult<bool> {
    let prefix = keys::inode(job);
    let mut left = budget;
    loop {
        let Some(dir) = next_queued(s, job)? else {
            s.delete(Table::SnapshotJobs, &prefix)?;
            return Ok(true);
        };
        if left == 0 {
            return Ok(false);
        }
        let dir_prefix = keys::inode(dir);
        let limit = usize::try_from(left).unwrap_or(usize::MAX);
        let rows = s.scan(
            Table::Dentries,
            &dir_prefix,
            prefix_end(&dir_prefix).as_deref(),
            limit,
        )?;
        for (key, value) in &rows {
            let entry: DentryRec = decode(Table::Dentries, key, value)?;
            s.delete(Table::Dentries, key)?;
            s.delete(Table::DirCookies, &keys::cookie(dir, entry.cookie))?;
            if entry.kind.is_dir() {
                s.put_rec(
                    Table::SnapshotQueue,
                    &pair(job, entry.ino),
                    &Vec::<u8>::new(),
                )?;
            } else {
                super::quota::remove_link(s, entry.ino, dir, &key[8..])?;
                let rec = s.update_inode(entry.ino, |r| r.nlink = r.nlink.saturating_sub(1))?;
                if rec.nlink == 0 {
                    super::nodes::free_or_orphan(s, entry.ino, rec.opens, now)?;
                }
            }
        }
        left = left.saturating_sub((rows.len() as u64).max(1));
        if (rows.len() as u64) < u64::try_from(limit).unwrap_or(u64::MAX) {
            // Listing empty: the directory goes too.
            s.delete(Table::SnapshotQueue, &pair(job, dir))?;
            let rec = s.update_inode(dir, |r| {
                r.nlink = 0;
                r.size = 0;
            })?;
            super::nodes::free_or_orphan(s, dir, rec.opens, now)?;
        }
    }
}

/// Jobs with parts still to copy.
pub fn copying<S: StoreRead + ?Sized>(s: &S) -> Result<Vec<(u64, JobRec)>, NamespaceError> {
    let mut out = Vec::new();
    for (key, value) in s.scan(Table::SnapshotJobs, &[], None, usize::MAX)? {
        let jr: JobRec = decode(Table::SnapshotJobs, &key, &value)?;
        if !jr.cleaning && !jr.freeing {
            out.push((key_u64(Table::SnapshotJobs, &key, 0)?, jr));
        }
    }
    Ok(out)
}

/// Every job not finished (the leader proposes steps for them).
pub fn unfinished<S: StoreRead + ?Sized>(s: &S) -> Result<Vec<u64>, NamespaceError> {
    s.scan(Table::SnapshotJobs, &[], None, usize::MAX)?
        .iter()
        .map(|(k, _)| key_u64(Table::SnapshotJobs, k, 0))
        .collect()
}

/// A row a command changes that a snapshot being copied may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// An inode's record, xattrs or chunks.
    Inode(Ino),
    /// A directory entry, with what it named before the command.
    Entry {
        dir: Ino,
        name: Vec<u8>,
        was: Option<DentryRec>,
    },
}

/// What `writes` change of what a snapshot may hold. Empty unless a job is copying.
pub(crate) fn changed<S: StoreRead + ?Sized>(
    base: &S,
    writes: &Writes,
) -> Result<Vec<Change>, NamespaceError> {
    if base.scan(Table::SnapshotJobs, &[], None, 1)?.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for ((table, key), value) in writes {
        // A cookie row changes with its entry.
        if !INODE_TABLES.contains(table) || *table == Table::DirCookies {
            continue;
        }
        let was = base.get(*table, key)?;
        if was.as_deref() == value.as_deref() {
            continue;
        }
        let ino = key_u64(*table, key, 0)?;
        let change = if *table == Table::Dentries {
            let was = match was {
                Some(bytes) => Some(decode(Table::Dentries, key, &bytes)?),
                None => None,
            };
            Change::Entry {
                dir: ino,
                name: key[8..].to_vec(),
                was,
            }
        } else {
            Change::Inode(ino)
        };
        if !out.contains(&change) {
            out.push(change);
        }
    }
    Ok(out)
}

/// Copies, for every job still copying, what `changed` rows (of the state `s` holds now,
/// before the command) hold of its region and is not copied yet. Whether anything was.
pub(crate) fn preserve<S: Store + ?Sized>(
    s: &mut S,
    changed: &[Change],
    now: i64,
) -> OpResult<bool> {
    let mut any = false;
    for (job_id, mut jr) in copying(s)? {
        let before = jr.clone();
        for change in changed {
            any |= match change {
                Change::Inode(ino) => ensure_inode(s, job_id, &mut jr, *ino, now)?,
                Change::Entry { dir, name, was } => {
                    ensure_entry(s, job_id, &mut jr, *dir, name, was.as_ref(), now)?
                }
            };
        }
        if jr != before {
            s.put_rec(Table::SnapshotJobs, &keys::inode(job_id), &jr)?;
        }
    }
    Ok(any)
}

/// Whether the walk of a directory with `cursor` (the last name it copied, empty for
/// none) has passed `name`.
fn walked(cursor: &[u8], name: &[u8]) -> bool {
    !cursor.is_empty() && name <= cursor
}

/// The copy of directory `dir` if it is in the job's region, copying it (entry by entry
/// down from the nearest queued directory above) if it is not copied yet. `None` for a
/// directory outside the region.
fn ensure_dir_copy<S: Store + ?Sized>(
    s: &mut S,
    job: u64,
    jr: &mut JobRec,
    dir: Ino,
    now: i64,
) -> OpResult<Option<Ino>> {
    // Up from `dir` through directories not copied yet, to one that is.
    let mut chain = Vec::new();
    let mut d = dir;
    let limit = s.counter(counter::INODES)? + 1;
    let mut copy = loop {
        if let Some(copy) = copied(s, job, d)? {
            break copy;
        }
        if d == ROOT_INO || chain.len() as u64 > limit {
            return Ok(None);
        }
        match s.inode(d)? {
            Some(rec) if rec.kind.is_dir() && rec.nlink > 0 => {
                chain.push((d, rec.parent));
                d = rec.parent;
            }
            _ => return Ok(None),
        }
    };
    // Down again, one entry per level: each directory on the way must be in a listing the
    // walk has not passed (else it was not in the tree at the snapshot).
    for &(below, parent) in chain.iter().rev() {
        let Some(cursor) = queued(s, job, parent)? else {
            return Ok(None);
        };
        // Not named there: a `.snapshots` directory or a snapshot's root, not in the tree.
        let Some(name) = super::trash::name_in(s, parent, below)? else {
            return Ok(None);
        };
        if walked(&cursor, &name)
            || s.get(Table::SnapshotExcluded, &entry_key(job, parent, &name))?
                .is_some()
        {
            return Ok(None);
        }
        let entry = s.dentry(parent, &name)?.ok_or(NamespaceError::Invariant {
            what: "a directory entry vanished during a command",
            ino: parent,
        })?;
        copy = copy_entry(s, job, jr, copy, &name, &entry, now)?;
    }
    Ok(Some(copy))
}

/// Copies entry `name` of `dir` as it was (`was`; `None`: it did not exist, so the walk
/// must skip the name) if `dir` is in the job's region and the walk has not reached it.
fn ensure_entry<S: Store + ?Sized>(
    s: &mut S,
    job: u64,
    jr: &mut JobRec,
    dir: Ino,
    name: &[u8],
    was: Option<&DentryRec>,
    now: i64,
) -> OpResult<bool> {
    let Some(to_dir) = ensure_dir_copy(s, job, jr, dir, now)? else {
        return Ok(false);
    };
    let Some(cursor) = queued(s, job, dir)? else {
        return Ok(false);
    };
    if walked(&cursor, name) || s.dentry(to_dir, name)?.is_some() {
        return Ok(false);
    }
    let excluded = entry_key(job, dir, name);
    if s.get(Table::SnapshotExcluded, &excluded)?.is_some() {
        return Ok(false);
    }
    match was {
        Some(entry) => {
            copy_entry(s, job, jr, to_dir, name, entry, now)?;
        }
        None => s.put_rec(Table::SnapshotExcluded, &excluded, &())?,
    }
    Ok(true)
}

/// Copies inode `ino` (with one entry naming it) if it is in the job's region and not
/// copied yet.
fn ensure_inode<S: Store + ?Sized>(
    s: &mut S,
    job: u64,
    jr: &mut JobRec,
    ino: Ino,
    now: i64,
) -> OpResult<bool> {
    if copied(s, job, ino)?.is_some() {
        return Ok(false);
    }
    let Some(rec) = s.inode(ino)? else {
        return Ok(false);
    };
    if rec.kind.is_dir() {
        return Ok(ensure_dir_copy(s, job, jr, ino, now)?.is_some());
    }
    for (key, _) in scan_prefix(s, Table::FileLinks, &keys::inode(ino))? {
        let dir = key_u64(Table::FileLinks, &key, 8)?;
        let name = key[16..].to_vec();
        let entry = s.dentry(dir, &name)?;
        if ensure_entry(s, job, jr, dir, &name, entry.as_ref(), now)? {
            return Ok(true);
        }
    }
    Ok(false)
}
