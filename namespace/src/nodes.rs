//! Inode life cycle and directory entries: the bookkeeping every namespace operation shares
//! (link counts, entry counts, cookies, parent pointers, the `file_links` rows quotas use,
//! orphans, freeing).
//!
//! Each helper does a read-modify-write through the command's overlay, so a sequence of them
//! composes correctly even when two steps touch the same directory (rename within a directory).

use super::data;
use super::quota;
use super::records::{DentryRec, InodeRec, OrphanRec};
use super::state::{Tables, TablesMut, counter, keys};
use super::store::{Store, Table, scan_prefix};
use super::trash;
use crate::error::NamespaceError;
use tessera_proto::fs::{COOKIE_FIRST, FileKind, Ino, ROOT_INO};

/// The fields a new inode is created with.
#[derive(Debug)]
pub(crate) struct NewInode {
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub target: Vec<u8>,
    /// A number delegated to the session that sent the create (`delegate.rs`, checked by
    /// the caller), else `None` for the next free one.
    pub ino: Option<Ino>,
}

/// Allocates the next inode number and writes a fresh inode (not yet linked anywhere).
/// `parent` is recorded for directories only.
pub(crate) fn create_inode<S: Store + ?Sized>(
    s: &mut S,
    new: NewInode,
    parent: Ino,
    now: i64,
) -> Result<(Ino, InodeRec), NamespaceError> {
    let ino = match new.ino {
        Some(ino) => {
            s.add_counter(counter::INODES, 1)?;
            ino
        }
        None => next_ino(s)?,
    };
    let is_dir = new.kind.is_dir();
    let rec = InodeRec {
        kind: new.kind,
        perm: new.perm & 0o7777,
        nlink: if is_dir { 2 } else { 1 },
        uid: new.uid,
        gid: new.gid,
        rdev: match new.kind {
            FileKind::CharDevice | FileKind::BlockDevice => new.rdev,
            _ => 0,
        },
        size: new.target.len() as u64,
        atime: now,
        mtime: now,
        ctime: now,
        generation: s.counter(counter::GENERATION)?,
        parent: if is_dir { parent } else { 0 },
        next_cookie: COOKIE_FIRST,
        target: new.target,
        opens: 0,
        blocks: 0,
        flags: 0,
        reserved: Vec::new(),
    };
    s.put_inode(ino, &rec)?;
    Ok((ino, rec))
}

/// Allocates the next inode number (never reused) and counts one more inode.
pub(crate) fn next_ino<S: Store + ?Sized>(s: &mut S) -> Result<Ino, NamespaceError> {
    let ino = s.counter(counter::NEXT_INO)?;
    s.put_counter(counter::NEXT_INO, ino + 1)?;
    s.add_counter(counter::INODES, 1)?;
    Ok(ino)
}

/// An inode whose last name went: freed now, or kept as an orphan until its last release
/// while some session has it open.
pub(crate) fn free_or_orphan<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    opens: u32,
    now: i64,
) -> Result<(), NamespaceError> {
    if opens > 0 {
        s.put_rec(Table::Orphans, &keys::inode(ino), &OrphanRec { since: now })
    } else {
        free_inode(s, ino, now)
    }
}

/// Writes the root directory of an empty namespace and initialises the counters.
pub(crate) fn create_root<S: Store + ?Sized>(
    s: &mut S,
    uid: u32,
    gid: u32,
    perm: u16,
    now: i64,
) -> Result<InodeRec, NamespaceError> {
    s.put_counter(counter::NEXT_INO, ROOT_INO)?;
    s.put_counter(counter::NEXT_SESSION, 1)?;
    s.put_counter(counter::GENERATION, 1)?;
    let new = NewInode {
        kind: FileKind::Directory,
        perm,
        uid,
        gid,
        rdev: 0,
        target: Vec::new(),
        ino: None,
    };
    let (_, rec) = create_inode(s, new, ROOT_INO, now)?;
    Ok(rec)
}

/// Links `name` in `dir` to `ino`: a new cookie, one more entry, one more link for a
/// subdirectory, and new mtime/ctime on the directory.
pub(crate) fn add_entry<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    ino: Ino,
    kind: FileKind,
    now: i64,
) -> Result<(), NamespaceError> {
    let mut cookie = 0;
    s.update_inode(dir, |d| {
        debug_assert!(d.nlink >= 2, "directory {dir} has {} links", d.nlink);
        cookie = d.next_cookie;
        d.next_cookie += 1;
        d.size += 1;
        if kind.is_dir() {
            d.nlink += 1;
        }
        d.mtime = now;
        d.ctime = now;
    })?;
    s.put_rec(
        Table::Dentries,
        &keys::dentry(dir, name),
        &DentryRec { ino, kind, cookie },
    )?;
    if !kind.is_dir() {
        quota::add_link(s, ino, dir, name)?;
    }
    s.put_rec(
        Table::DirCookies,
        &keys::cookie(dir, cookie),
        &name.to_vec(),
    )
}

/// Removes `name` from `dir` (the inverse of [`add_entry`]); the inode is not touched.
pub(crate) fn remove_entry<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    entry: &DentryRec,
    now: i64,
) -> Result<(), NamespaceError> {
    s.delete(Table::Dentries, &keys::dentry(dir, name))?;
    s.delete(Table::DirCookies, &keys::cookie(dir, entry.cookie))?;
    if !entry.kind.is_dir() {
        quota::remove_link(s, entry.ino, dir, name)?;
    }
    s.update_inode(dir, |d| {
        // The entry was counted, and a subdirectory's ".." link too (2 + subdirectories).
        debug_assert!(
            d.size > 0,
            "directory {dir} loses an entry it did not count"
        );
        debug_assert!(
            !entry.kind.is_dir() || d.nlink > 2,
            "directory {dir} loses a subdirectory with {} links",
            d.nlink
        );
        d.size = d.size.saturating_sub(1);
        if entry.kind.is_dir() {
            d.nlink = d.nlink.saturating_sub(1);
        }
        d.mtime = now;
        d.ctime = now;
    })?;
    Ok(())
}

/// Points an existing entry at another inode, keeping its cookie (rename exchange).
pub(crate) fn repoint_entry<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    name: &[u8],
    old: &DentryRec,
    ino: Ino,
    kind: FileKind,
    now: i64,
) -> Result<(), NamespaceError> {
    s.put_rec(
        Table::Dentries,
        &keys::dentry(dir, name),
        &DentryRec {
            ino,
            kind,
            cookie: old.cookie,
        },
    )?;
    if !old.kind.is_dir() {
        quota::remove_link(s, old.ino, dir, name)?;
    }
    if !kind.is_dir() {
        quota::add_link(s, ino, dir, name)?;
    }
    s.update_inode(dir, |d| {
        match (old.kind.is_dir(), kind.is_dir()) {
            (true, false) => {
                debug_assert!(d.nlink > 2, "directory {dir} has {} links", d.nlink);
                d.nlink = d.nlink.saturating_sub(1)
            }
            (false, true) => d.nlink += 1,
            _ => {}
        }
        d.mtime = now;
        d.ctime = now;
    })?;
    Ok(())
}

/// Drops one name of `ino` (its entry, `from`, is already gone). A directory loses both its
/// entry and its "." at once. At zero links a file goes to the trash when it is on
/// (`trash.rs`); otherwise the inode is freed, or kept as an orphan while open.
pub(crate) fn drop_link<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    from: (Ino, &[u8]),
    now: i64,
) -> Result<(), NamespaceError> {
    let rec = s.update_inode(ino, |r| {
        // A file loses one of its names; a directory goes only when empty ("." and its one
        // entry left).
        debug_assert!(
            if r.kind.is_dir() {
                r.nlink == 2 && r.size == 0
            } else {
                r.nlink > 0
            },
            "inode {ino} ({:?}) drops a link with nlink {} and size {}",
            r.kind,
            r.nlink,
            r.size
        );
        r.nlink = if r.kind.is_dir() {
            0
        } else {
            r.nlink.saturating_sub(1)
        };
        r.ctime = now;
    })?;
    if rec.nlink == 0 && !trash::keep(s, ino, rec.kind.is_dir(), from, now)? {
        free_or_orphan(s, ino, rec.opens, now)?;
    }
    Ok(())
}

/// Frees an inode that has no names and no opens: its row, xattrs, chunks (releasing stripe
/// references), locks and orphan record.
pub(crate) fn free_inode<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    now: i64,
) -> Result<(), NamespaceError> {
    debug_assert!(
        matches!(s.inode(ino), Ok(Some(r)) if r.nlink == 0 && r.opens == 0),
        "inode {ino} freed while linked or open"
    );
    let key = keys::inode(ino);
    // Its preallocated, unwritten ranges are given back.
    if let Some(rec) = s.inode(ino)? {
        let reserved: u64 = rec.reserved.iter().map(|(a, b)| b - a).sum();
        s.add_counter(counter::RESERVED_BYTES, -(reserved as i64))?;
    }
    s.delete(Table::Inodes, &key)?;
    s.delete(Table::Orphans, &key)?;
    // Its names are gone already (`file_links` rows go with them); a file named before
    // that table existed has none.
    for table in [Table::Xattrs, Table::Locks, Table::FileLinks] {
        for (k, _) in scan_prefix(s, table, &key)? {
            s.delete(table, &k)?;
        }
    }
    data::cut_chunks(s, ino, 0, now)?;
    s.add_counter(counter::INODES, -1)
}

/// Whether `ancestor` is `dir` itself or a directory above it. Walks parent pointers up to
/// the root; the walk is bounded so a corrupt cycle becomes an error, not a hang.
pub(crate) fn is_ancestor<S: Store + ?Sized>(
    s: &S,
    ancestor: Ino,
    dir: Ino,
) -> Result<bool, NamespaceError> {
    let limit = s.counter(counter::INODES)? + 1;
    let mut cur = dir;
    for _ in 0..=limit {
        if cur == ancestor {
            return Ok(true);
        }
        if cur == ROOT_INO {
            return Ok(false);
        }
        cur = s
            .inode(cur)?
            .ok_or(NamespaceError::Invariant {
                what: "directory parent chain reaches a missing inode",
                ino: cur,
            })?
            .parent;
    }
    Err(NamespaceError::Invariant {
        what: "directory parent chain has a cycle",
        ino: dir,
    })
}
