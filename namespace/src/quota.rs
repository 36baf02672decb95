//! Directory quotas: limits on the logical bytes and the inodes below a directory, kept
//! exact by the state machine itself (`tessera quota`).
//!
//! Only directories with a quota carry usage (`quotas[dir]`: limits and counts); nothing is
//! kept per directory otherwise. What a quota directory `Q` counts, by definition:
//! - every inode with at least one name below `Q` (files, directories, symlinks, devices;
//!   `Q` itself not included), once, however many of its names are below `Q`;
//! - the `size` of every such non-directory (file length, symlink target length).
//!
//! So a file with hard links in two quota realms counts in both (once in each); a file
//! whose last name went (in the trash, or unlinked while open) counts nowhere. Quotas nest:
//! a file below two quota directories counts in both and both limits apply.
//!
//! Keeping that exact needs, for every inode a command changes, the quota directories
//! above it. A directory has one parent (`InodeRec::parent`); a file may have several
//! names, which `file_links[(ino, parent, name)]` lists (kept by `nodes.rs` for every
//! name of a non-directory). Around each command that can change usage, [`Track`] takes the
//! footprint (quota directories above, size) of the inodes the command names before it
//! runs and after, and moves the difference into the quota rows; when the difference adds
//! to a row past its limit the command fails with `EDQUOT` and changes nothing. Moving a
//! directory between realms walks the moved subtree (cost: one read per entry below it,
//! in the rename's command); a rename that stays within the same realms does not.
//! With no quota set anywhere the whole thing is one empty scan per command.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tessera_proto::fs::{FsError, Ino, ROOT_INO, RenameMode, StatFs};
use tessera_proto::meta::{Op, QuotaEntry, Response};

use super::codec::{Key, decode, key_u64};
use super::read;
use super::records::DentryRec;
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, StoreRead, Table, scan_prefix};
use crate::error::NamespaceError;

/// `quotas[dir]`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct QuotaRec {
    pub max_bytes: Option<u64>,
    pub max_inodes: Option<u64>,
    pub used_bytes: u64,
    pub used_inodes: u64,
}

fn link_key(ino: Ino, parent: Ino, name: &[u8]) -> Vec<u8> {
    Key::new().u64(ino).u64(parent).bytes(name).done()
}

/// Records that `parent`/`name` names the non-directory `ino`.
pub(crate) fn add_link<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    parent: Ino,
    name: &[u8],
) -> Result<(), NamespaceError> {
    s.put_rec(Table::FileLinks, &link_key(ino, parent, name), &())
}

pub(crate) fn remove_link<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    parent: Ino,
    name: &[u8],
) -> Result<(), NamespaceError> {
    s.delete(Table::FileLinks, &link_key(ino, parent, name))
}

/// Writes the `file_links` row of every name of a non-directory (a loaded backup leaves
/// them out: they repeat the entries).
pub(crate) fn rebuild_links<S: Store + ?Sized>(s: &mut S) -> Result<(), NamespaceError> {
    for (key, value) in s.scan(Table::Dentries, &[], None, usize::MAX)? {
        let entry: DentryRec = decode(Table::Dentries, &key, &value)?;
        if !entry.kind.is_dir() {
            let parent = key_u64(Table::Dentries, &key, 0)?;
            add_link(s, entry.ino, parent, &key[8..])?;
        }
    }
    Ok(())
}

fn quota<S: StoreRead + ?Sized>(s: &S, dir: Ino) -> Result<Option<QuotaRec>, NamespaceError> {
    s.rec(Table::Quotas, &keys::inode(dir))
}

fn any<S: StoreRead + ?Sized>(s: &S) -> Result<bool, NamespaceError> {
    Ok(!s.scan(Table::Quotas, &[], None, 1)?.is_empty())
}

/// Quota directories at or above `dir`, innermost first, remembered per command.
#[derive(Default)]
struct Above(HashMap<Ino, Vec<Ino>>);

impl Above {
    fn of<S: StoreRead + ?Sized>(&mut self, s: &S, dir: Ino) -> Result<Vec<Ino>, NamespaceError> {
        let limit = s.counter(counter::INODES)? + 1;
        let mut chain = Vec::new();
        let mut cur = dir;
        let mut found = loop {
            if let Some(known) = self.0.get(&cur) {
                break known.clone();
            }
            if chain.len() as u64 > limit {
                return Err(NamespaceError::Invariant {
                    what: "directory parent chain has a cycle",
                    ino: dir,
                });
            }
            chain.push(cur);
            if cur == ROOT_INO {
                break Vec::new();
            }
            // A missing or removed directory is in no realm (the command naming it fails,
            // or it is gone and its quota row with it).
            match s.inode(cur)? {
                Some(rec) if rec.kind.is_dir() && rec.nlink > 0 => cur = rec.parent,
                _ => break Vec::new(),
            }
        };
        for &d in chain.iter().rev() {
            if s.get(Table::Quotas, &keys::inode(d))?.is_some() {
                found.insert(0, d);
            }
            self.0.insert(d, found.clone());
        }
        Ok(found)
    }
}

/// Where an inode counts and how many bytes: `None` when it counts nowhere (missing, or
/// its last name went).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    realms: BTreeSet<Ino>,
    bytes: u64,
}

fn footprint<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    above: &mut Above,
) -> Result<Option<Footprint>, NamespaceError> {
    let Some(rec) = s.inode(ino)? else {
        return Ok(None);
    };
    if rec.nlink == 0 || ino == ROOT_INO {
        return Ok(None);
    }
    let mut realms = BTreeSet::new();
    if rec.kind.is_dir() {
        realms.extend(above.of(s, rec.parent)?);
    } else {
        for parent in link_parents(s, ino)? {
            realms.extend(above.of(s, parent)?);
        }
    }
    let bytes = if rec.kind.is_dir() { 0 } else { rec.size };
    Ok(Some(Footprint { realms, bytes }))
}

/// The directories holding a name of the non-directory `ino`.
pub(crate) fn link_parents<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
) -> Result<Vec<Ino>, NamespaceError> {
    let rows = scan_prefix(s, Table::FileLinks, &keys::inode(ino))?;
    let mut out: Vec<Ino> = rows
        .iter()
        .map(|(k, _)| key_u64(Table::FileLinks, k, 8))
        .collect::<Result<_, _>>()?;
    out.dedup();
    Ok(out)
}

/// Every inode below `dir` (and `dir`), distinct. Also writes the `file_links` row of every
/// name it passes, so names made before the table existed are known from then on.
fn walk<S: Store + ?Sized>(
    s: &mut S,
    dir: Ino,
    out: &mut BTreeSet<Ino>,
) -> Result<(), NamespaceError> {
    let mut dirs = vec![dir];
    out.insert(dir);
    while let Some(d) = dirs.pop() {
        let prefix = keys::inode(d);
        for (key, value) in scan_prefix(s, Table::Dentries, &prefix)? {
            let entry: DentryRec = decode(Table::Dentries, &key, &value)?;
            if entry.kind.is_dir() {
                dirs.push(entry.ino);
            } else {
                add_link(s, entry.ino, d, &key[prefix.len()..])?;
            }
            out.insert(entry.ino);
        }
    }
    Ok(())
}

/// The footprints of the inodes a command may change, taken before it runs.
pub(crate) struct Track {
    before: BTreeMap<Ino, Option<Footprint>>,
    /// Entries the command creates: their inodes are known only afterwards.
    made: Vec<(Ino, Vec<u8>)>,
    /// Entries the command creates with everything below them (a snapshot restore).
    made_trees: Vec<(Ino, Vec<u8>)>,
}

impl Track {
    /// `None` when there is no quota, or `op` cannot change usage.
    pub(crate) fn start<S: Store + ?Sized>(s: &mut S, op: &Op) -> OpResult<Option<Track>> {
        if !any(s)? {
            return Ok(None);
        }
        let mut inos = BTreeSet::new();
        let mut made = Vec::new();
        let mut made_trees = Vec::new();
        let mut above = Above::default();
        if let Op::MakeNodeAs { node, .. } = op {
            return Self::start(s, node);
        }
        match op {
            Op::Mknod { parent, name, .. }
            | Op::Mkdir { parent, name, .. }
            | Op::Symlink { parent, name, .. }
            | Op::MakeNode { parent, name, .. } => made.push((*parent, name.clone())),
            Op::Link { ino, .. }
            | Op::SetAttr { ino, .. }
            | Op::Reserve { ino, .. }
            | Op::CommitSlice { ino, .. }
            | Op::RestoreTrash { ino, .. } => {
                inos.insert(*ino);
            }
            Op::SnapshotRestore {
                to_parent, to_name, ..
            } => made_trees.push((*to_parent, to_name.clone())),
            Op::Unlink { parent, name } | Op::Rmdir { parent, name } => {
                inos.extend(s.dentry(*parent, name)?.map(|d| d.ino));
            }
            Op::Rename {
                parent,
                name,
                new_parent,
                new_name,
                mode,
            } => {
                let across = above.of(s, *parent)? != above.of(s, *new_parent)?;
                let ends = [s.dentry(*parent, name)?, s.dentry(*new_parent, new_name)?];
                for end in ends.into_iter().flatten() {
                    // What moves between realms is the whole subtree below a directory.
                    if across && end.kind.is_dir() {
                        walk(s, end.ino, &mut inos)?;
                    } else {
                        inos.insert(end.ino);
                    }
                }
                if matches!(mode, RenameMode::Whiteout { .. }) {
                    made.push((*parent, name.clone()));
                }
            }
            _ => return Ok(None),
        }
        let mut before = BTreeMap::new();
        for ino in inos {
            before.insert(ino, footprint(s, ino, &mut above)?);
        }
        Ok(Some(Track {
            before,
            made,
            made_trees,
        }))
    }

    /// Moves the change in usage into the quota rows; `EDQUOT` when it adds to one past its
    /// limit (the caller then drops every write of the command).
    pub(crate) fn finish<S: Store + ?Sized>(self, s: &mut S) -> OpResult<()> {
        let mut inos: BTreeSet<Ino> = self.before.keys().copied().collect();
        for (parent, name) in &self.made {
            inos.extend(s.dentry(*parent, name)?.map(|d| d.ino));
        }
        for (parent, name) in &self.made_trees {
            match s.dentry(*parent, name)? {
                Some(d) if d.kind.is_dir() => walk(s, d.ino, &mut inos)?,
                Some(d) => {
                    inos.insert(d.ino);
                }
                None => {}
            }
        }
        let mut above = Above::default();
        let mut delta: BTreeMap<Ino, (i128, i64)> = BTreeMap::new();
        for ino in inos {
            if let Some(Some(was)) = self.before.get(&ino) {
                for r in &was.realms {
                    let d = delta.entry(*r).or_default();
                    d.0 -= i128::from(was.bytes);
                    d.1 -= 1;
                }
            }
            match footprint(s, ino, &mut above)? {
                Some(now) => {
                    for r in &now.realms {
                        let d = delta.entry(*r).or_default();
                        d.0 += i128::from(now.bytes);
                        d.1 += 1;
                    }
                }
                // A quota directory that went takes its quota with it.
                None if s.inode(ino)?.is_none_or(|r| r.nlink == 0) => {
                    s.delete(Table::Quotas, &keys::inode(ino))?
                }
                None => {}
            }
        }
        for (dir, (bytes, inodes)) in delta {
            if bytes == 0 && inodes == 0 {
                continue;
            }
            let Some(mut q) = quota(s, dir)? else {
                continue;
            };
            let used_bytes = i128::from(q.used_bytes) + bytes;
            let used_inodes = i128::from(q.used_inodes) + i128::from(inodes);
            debug_assert!(
                used_bytes >= 0 && used_inodes >= 0,
                "quota {dir} would count {used_bytes} bytes, {used_inodes} inodes"
            );
            if (bytes > 0 && q.max_bytes.is_some_and(|m| used_bytes > i128::from(m)))
                || (inodes > 0 && q.max_inodes.is_some_and(|m| used_inodes > i128::from(m)))
            {
                return Err(FsError::QuotaExceeded.into());
            }
            q.used_bytes = u64::try_from(used_bytes).unwrap_or(0);
            q.used_inodes = u64::try_from(used_inodes).unwrap_or(0);
            s.put_rec(Table::Quotas, &keys::inode(dir), &q)?;
        }
        Ok(())
    }
}

/// [`Op::SetQuota`].
pub(crate) fn set<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    max_bytes: Option<u64>,
    max_inodes: Option<u64>,
) -> OpResult<Response> {
    s.need_live_dir(ino)?;
    let (used_bytes, used_inodes) = match quota(s, ino)? {
        Some(q) => (q.used_bytes, q.used_inodes),
        None => usage(s, ino)?,
    };
    let q = QuotaRec {
        max_bytes,
        max_inodes,
        used_bytes,
        used_inodes,
    };
    s.put_rec(Table::Quotas, &keys::inode(ino), &q)?;
    Ok(Response::Done)
}

/// [`Op::UnsetQuota`].
pub(crate) fn unset<S: Store + ?Sized>(s: &mut S, ino: Ino) -> OpResult<Response> {
    if quota(s, ino)?.is_none() {
        return Err(FsError::NotFound.into());
    }
    s.delete(Table::Quotas, &keys::inode(ino))?;
    Ok(Response::Done)
}

/// What `dir` holds now, by the definition in the module comment: one walk of the subtree.
fn usage<S: Store + ?Sized>(s: &mut S, dir: Ino) -> Result<(u64, u64), NamespaceError> {
    let mut inos = BTreeSet::new();
    walk(s, dir, &mut inos)?;
    inos.remove(&dir);
    let mut bytes = 0u64;
    for &ino in &inos {
        if let Some(rec) = s.inode(ino)?
            && !rec.kind.is_dir()
        {
            bytes = bytes.saturating_add(rec.size);
        }
    }
    Ok((bytes, inos.len() as u64))
}

/// [`tessera_proto::meta::Query::Quotas`].
pub(crate) fn list<S: StoreRead + ?Sized>(s: &S) -> OpResult<Response> {
    let mut paths = HashMap::new();
    let mut out = Vec::new();
    for (key, value) in s.scan(Table::Quotas, &[], None, usize::MAX)? {
        let ino = key_u64(Table::Quotas, &key, 0)?;
        let q: QuotaRec = decode(Table::Quotas, &key, &value)?;
        out.push(QuotaEntry {
            ino,
            path: super::trash::dir_path(s, ino, &mut paths, 0)?,
            max_bytes: q.max_bytes,
            max_inodes: q.max_inodes,
            used_bytes: q.used_bytes,
            used_inodes: q.used_inodes,
        });
    }
    Ok(Response::Quotas(out))
}

/// [`tessera_proto::meta::Query::StatFsAt`]: the whole file system's figures, with the
/// nearest byte limit and the nearest inode limit above `ino` (each may come from another
/// quota directory) as total, and their usage as used. Free space is never shown larger
/// than what the cluster has free.
pub(crate) fn statfs_at<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    total_bytes: u64,
    total_files: u64,
) -> OpResult<Response> {
    let Response::StatFs(mut st) = read::statfs(s, total_bytes, total_files)? else {
        return Err(FsError::Io.into());
    };
    if !any(s)? {
        return Ok(Response::StatFs(st));
    }
    let rec = s.need_inode(ino)?;
    let mut above = Above::default();
    let dir = if rec.kind.is_dir() {
        Some(ino)
    } else {
        link_parents(s, ino)?.first().copied()
    };
    let dirs = match dir {
        Some(d) => above.of(s, d)?,
        None => Vec::new(),
    };
    let quotas = dirs
        .iter()
        .map(|d| quota(s, *d))
        .collect::<Result<Vec<_>, _>>()?;
    let quotas: Vec<QuotaRec> = quotas.into_iter().flatten().collect();
    if let Some((max, q)) = quotas.iter().find_map(|q| q.max_bytes.map(|m| (m, q))) {
        limit_bytes(&mut st, max, q.used_bytes);
    }
    if let Some((max, q)) = quotas.iter().find_map(|q| q.max_inodes.map(|m| (m, q))) {
        st.files = max;
        st.ffree = max.saturating_sub(q.used_inodes).min(st.ffree);
    }
    Ok(Response::StatFs(st))
}

fn limit_bytes(st: &mut StatFs, max: u64, used: u64) {
    let block = u64::from(st.frsize.max(1));
    let free = max.saturating_sub(used) / block;
    st.blocks = max / block;
    st.bfree = free.min(st.bfree);
    st.bavail = free.min(st.bavail);
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
