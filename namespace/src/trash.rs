//! The trash: a file whose last name goes is kept, with its data, for the retention time
//! (a cluster setting, `counter::TRASH_RETENTION_S`), then freed. Nothing is copied: the
//! inode stays as it was (nlink 0, its chunks still referencing their stripes), and a row in
//! `trash[ino]` says when and from where it went. Restoring gives it a name again.
//!
//! A kept file is not an orphan: the last release of an open one does not free it (see
//! `session.rs`); purging one that is still open turns it into an orphan, freed at its
//! last release as any unlinked open file. Directories are never kept (they go only when
//! empty). The leader expires files by proposing [`Op::PurgeTrash`] with `expired_only`
//! for the files [`expired`] lists; the check is repeated when the command applies.
//!
//! [`Op::PurgeTrash`]: tessera_proto::meta::Op::PurgeTrash

use std::collections::HashMap;

use super::codec::key_u64;
use super::names::check_name;
use super::nodes::{add_entry, free_or_orphan};
use super::records::TrashRec;
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, StoreRead, Table};
use crate::error::NamespaceError;
use tessera_proto::fs::{FsError, Ino, ROOT_INO};
use tessera_proto::meta::{Response, TrashEntry};

const NS_PER_S: i64 = 1_000_000_000;

/// The retention in seconds (0: files are freed at once).
pub(crate) fn retention_s<S: StoreRead + ?Sized>(s: &S) -> Result<u64, NamespaceError> {
    s.counter(counter::TRASH_RETENTION_S)
}

/// The retention if anyone set it (`None` on a namespace from before the trash, or one the
/// leader has not got to yet).
pub fn retention_setting<S: StoreRead + ?Sized>(s: &S) -> Result<Option<u64>, NamespaceError> {
    s.rec(Table::Counters, counter::TRASH_RETENTION_S)
}

pub(crate) fn set_retention<S: Store + ?Sized>(s: &mut S, seconds: u64) -> OpResult<Response> {
    s.put_counter(counter::TRASH_RETENTION_S, seconds)?;
    Ok(Response::Done)
}

/// Keeps `ino`, whose last name (`parent`/`name`) just went, if the trash is on and it is
/// not a directory. Returns whether it was kept (otherwise the caller frees it as before).
pub(crate) fn keep<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    is_dir: bool,
    from: (Ino, &[u8]),
    now: i64,
) -> Result<bool, NamespaceError> {
    if is_dir || retention_s(s)? == 0 {
        return Ok(false);
    }
    let rec = TrashRec {
        deleted_ns: now,
        parent: from.0,
        name: from.1.to_vec(),
    };
    s.put_rec(Table::Trash, &keys::inode(ino), &rec)?;
    Ok(true)
}

pub(crate) fn is_kept<S: StoreRead + ?Sized>(s: &S, ino: Ino) -> Result<bool, NamespaceError> {
    Ok(s.get(Table::Trash, &keys::inode(ino))?.is_some())
}

fn need_kept<S: StoreRead + ?Sized>(s: &S, ino: Ino) -> OpResult<TrashRec> {
    Ok(s.rec(Table::Trash, &keys::inode(ino))?
        .ok_or(FsError::NotFound)?)
}

/// Gives a kept file a name again: `to`, or the one it was deleted under.
pub(crate) fn restore<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    to: Option<(Ino, Vec<u8>)>,
    now: i64,
) -> OpResult<Response> {
    let kept = need_kept(s, ino)?;
    let (parent, name) = to.unwrap_or((kept.parent, kept.name));
    check_name(&name)?;
    let rec = s.need_inode(ino)?;
    s.need_live_dir(parent)?;
    if s.dentry(parent, &name)?.is_some() {
        return Err(FsError::Exists.into());
    }
    add_entry(s, parent, &name, ino, rec.kind, now)?;
    let rec = s.update_inode(ino, |r| {
        r.nlink = 1;
        r.ctime = now;
    })?;
    s.delete(Table::Trash, &keys::inode(ino))?;
    Ok(Response::Attr(rec.attr(ino)))
}

/// Frees kept files now (see [`tessera_proto::meta::Op::PurgeTrash`]).
pub(crate) fn purge<S: Store + ?Sized>(
    s: &mut S,
    inos: &[Ino],
    expired_only: bool,
    now: i64,
) -> OpResult<Response> {
    let retention_ns = (retention_s(s)? as i64).saturating_mul(NS_PER_S);
    for &ino in inos {
        let Some(kept) = s.rec::<TrashRec>(Table::Trash, &keys::inode(ino))? else {
            continue;
        };
        if expired_only && kept.deleted_ns.saturating_add(retention_ns) > now {
            continue;
        }
        s.delete(Table::Trash, &keys::inode(ino))?;
        let opens = s.need_inode(ino)?.opens;
        free_or_orphan(s, ino, opens, now)?;
    }
    Ok(Response::Done)
}

/// Up to `limit` kept files whose retention ran out by `now` (for the leader's expiry), and
/// the earliest deletion time among the files left: `Some(t)` says no file still kept was
/// deleted before `t` (`now` when none is left: later deletes are stamped later), so nothing
/// is due before `t` plus the retention; `None` when `limit` was reached (look again).
pub fn expired<S: StoreRead + ?Sized>(
    s: &S,
    now: i64,
    limit: usize,
) -> Result<(Vec<Ino>, Option<i64>), NamespaceError> {
    let retention_ns = (retention_s(s)? as i64).saturating_mul(NS_PER_S);
    let mut out = Vec::new();
    let mut earliest_left = now;
    for_each_kept(s, |ino, kept| {
        if kept.deleted_ns.saturating_add(retention_ns) > now {
            earliest_left = earliest_left.min(kept.deleted_ns);
            return Ok(true);
        }
        out.push(ino);
        Ok(out.len() < limit)
    })?;
    let left = (out.len() < limit).then_some(earliest_left);
    Ok((out, left))
}

/// Calls `f` with every kept file in inode order until it returns `false`. Paged, so a large
/// trash is never read whole at once.
fn for_each_kept<S: StoreRead + ?Sized>(
    s: &S,
    mut f: impl FnMut(Ino, TrashRec) -> Result<bool, NamespaceError>,
) -> Result<(), NamespaceError> {
    let mut after = keys::inode(0);
    loop {
        let page = s.scan(Table::Trash, &after, None, 1024)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = successor(last);
        for (key, value) in &page {
            let kept: TrashRec = super::codec::decode(Table::Trash, key, value)?;
            if !f(key_u64(Table::Trash, key, 0)?, kept)? {
                return Ok(());
            }
        }
    }
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// [`tessera_proto::meta::Query::Trash`]: the retention and up to `limit` kept files with
/// inode numbers above `after`, and with `totals` the files and bytes of the whole trash.
pub(crate) fn list<S: StoreRead + ?Sized>(
    s: &S,
    after: Ino,
    limit: u32,
    totals: bool,
) -> OpResult<Response> {
    let start = keys::inode(after.saturating_add(1));
    let mut paths = HashMap::new();
    let mut entries = Vec::new();
    for (key, value) in s.scan(Table::Trash, &start, None, limit as usize)? {
        let ino = key_u64(Table::Trash, &key, 0)?;
        let kept: TrashRec = super::codec::decode(Table::Trash, &key, &value)?;
        let attr = s.need_inode(ino)?.attr(ino);
        let parent_path = dir_path(s, kept.parent, &mut paths, 0)?;
        entries.push(TrashEntry {
            attr,
            deleted_ns: kept.deleted_ns,
            parent: kept.parent,
            name: kept.name,
            parent_path,
        });
    }
    let totals = if totals { Some(sum(s)?) } else { None };
    Ok(Response::Trash {
        retention_s: retention_s(s)?,
        entries,
        totals,
    })
}

/// Files in the trash and their bytes (logical sizes).
fn sum<S: StoreRead + ?Sized>(s: &S) -> OpResult<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for_each_kept(s, |ino, _| {
        files += 1;
        bytes += s.inode(ino)?.map_or(0, |r| r.size);
        Ok(true)
    })?;
    Ok((files, bytes))
}

/// The path of directory `dir` from the root ("/a/b"), or `None` if it no longer has one.
/// Found by walking parent pointers and looking each directory up in its parent's entries;
/// `known` caches answers across one listing; the walk is bounded so a corrupt cycle ends.
pub(crate) fn dir_path<S: StoreRead + ?Sized>(
    s: &S,
    dir: Ino,
    known: &mut HashMap<Ino, Option<Vec<u8>>>,
    depth: u32,
) -> OpResult<Option<Vec<u8>>> {
    if dir == ROOT_INO {
        return Ok(Some(b"/".to_vec()));
    }
    if depth > 4096 {
        return Ok(None);
    }
    if let Some(p) = known.get(&dir) {
        return Ok(p.clone());
    }
    let path = match s.inode(dir)? {
        Some(rec) if rec.kind.is_dir() && rec.nlink > 0 => {
            let name = name_in(s, rec.parent, dir)?;
            match (dir_path(s, rec.parent, known, depth + 1)?, name) {
                (Some(mut p), Some(name)) => {
                    if p != b"/" {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&name);
                    Some(p)
                }
                _ => None,
            }
        }
        _ => None,
    };
    known.insert(dir, path.clone());
    Ok(path)
}

/// The name under which `parent` lists `ino`.
pub(crate) fn name_in<S: StoreRead + ?Sized>(
    s: &S,
    parent: Ino,
    ino: Ino,
) -> Result<Option<Vec<u8>>, NamespaceError> {
    let prefix = keys::inode(parent);
    for (key, value) in super::store::scan_prefix(s, Table::Dentries, &prefix)? {
        let entry: super::records::DentryRec = super::codec::decode(Table::Dentries, &key, &value)?;
        if entry.ino == ino {
            return Ok(Some(key[prefix.len()..].to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::NS_PER_S;
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use crate::{StoreRead, Table};
    use tessera_proto::fs::{FsError, Ino};
    use tessera_proto::meta::TrashEntry;

    fn with_trash(seconds: u64) -> Ns {
        let mut ns = Ns::new();
        ns.sys(Op::SetTrashRetention { seconds }).unwrap();
        ns
    }

    fn unlink(ns: &mut Ns, parent: Ino, name: &str) {
        ns.cmd(Op::Unlink {
            parent,
            name: name.into(),
        })
        .unwrap();
    }

    fn listed(ns: &Ns) -> (u64, Vec<TrashEntry>) {
        match ns.q(Query::Trash {
            after: 0,
            limit: 100,
            totals: true,
        }) {
            Ok(Response::Trash {
                retention_s,
                entries,
                totals,
            }) => {
                let bytes = entries.iter().map(|e| e.attr.size).sum();
                assert_eq!(totals, Some((entries.len() as u64, bytes)));
                (retention_s, entries)
            }
            other => panic!("trash listing: {other:?}"),
        }
    }

    fn purge(ns: &mut Ns, inos: Vec<Ino>, expired_only: bool) {
        ns.sys(Op::PurgeTrash { inos, expired_only }).unwrap();
    }

    #[test]
    fn without_retention_an_unlinked_file_is_freed_at_once() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        unlink(&mut ns, root, "f");
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
        assert_eq!(listed(&ns), (0, Vec::new()));
    }

    #[test]
    fn an_unlinked_file_is_kept_listed_with_its_path_and_restored_where_it_was() {
        let mut ns = with_trash(3600);
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let e = ns.mkdir(d, "e");
        let f = ns.create(e, "f");
        unlink(&mut ns, e, "f");
        let (retention, entries) = listed(&ns);
        assert_eq!(retention, 3600);
        assert_eq!(entries.len(), 1);
        let t = &entries[0];
        assert_eq!((t.attr.ino, t.attr.nlink, t.parent), (f, 0, e));
        assert_eq!(t.name, b"f");
        assert_eq!(t.parent_path.as_deref(), Some(&b"/d/e"[..]));
        // Still there as an inode, not by name.
        assert_eq!(ns.attr(f).unwrap().nlink, 0);
        assert_eq!(
            ns.q(Query::Lookup {
                parent: e,
                name: "f".into()
            }),
            Err(FsError::NotFound)
        );

        // Restoring onto a taken name is refused; then it comes back under its name.
        let g = ns.create(e, "f");
        let restore = Op::RestoreTrash { ino: f, to: None };
        assert_eq!(ns.sys(restore.clone()), Err(FsError::Exists));
        unlink(&mut ns, e, "f");
        purge(&mut ns, vec![g], false);
        let a = Ns::attr_reply(ns.sys(restore.clone())).unwrap();
        assert_eq!((a.ino, a.nlink), (f, 1));
        assert_eq!(listed(&ns).1, Vec::new());
        assert_eq!(ns.sys(restore), Err(FsError::NotFound));
        assert_eq!(ns.attr(g), Err(FsError::NotFound));
    }

    #[test]
    fn a_file_whose_directory_is_gone_restores_elsewhere_only() {
        let mut ns = with_trash(3600);
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let f = ns.create(d, "f");
        unlink(&mut ns, d, "f");
        ns.cmd(Op::Rmdir {
            parent: root,
            name: "d".into(),
        })
        .unwrap();
        assert_eq!(listed(&ns).1[0].parent_path, None);
        let back = Op::RestoreTrash { ino: f, to: None };
        assert_eq!(ns.sys(back), Err(FsError::NotFound));
        let to = Op::RestoreTrash {
            ino: f,
            to: Some((root, b"saved".to_vec())),
        };
        assert_eq!(Ns::attr_reply(ns.sys(to)).unwrap().ino, f);
    }

    #[test]
    fn a_file_replaced_by_rename_is_kept_too() {
        let mut ns = with_trash(3600);
        let root = ns.root();
        let old = ns.create(root, "old");
        ns.create(root, "new");
        ns.cmd(Op::Rename {
            parent: root,
            name: "new".into(),
            new_parent: root,
            new_name: "old".into(),
            mode: Default::default(),
        })
        .unwrap();
        let entries = listed(&ns).1;
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].attr.ino, &entries[0].name[..]),
            (old, &b"old"[..])
        );
    }

    #[test]
    fn expiry_frees_only_what_ran_out_and_an_open_file_at_its_last_release() {
        let mut ns = with_trash(10);
        let root = ns.root();
        let a = ns.create(root, "a");
        let b = ns.create(root, "b");
        ns.cmd(Op::Open { ino: b }).unwrap();
        unlink(&mut ns, root, "a");
        unlink(&mut ns, root, "b");
        // A kept file cannot be opened again (it has no name to open it by).
        assert_eq!(ns.cmd(Op::Open { ino: a }), Err(FsError::NotFound));
        let deleted_a = listed(&ns).1[0].deleted_ns;
        assert_eq!(
            crate::expired_trash(&ns.store, ns.now, 10).unwrap(),
            (Vec::<Ino>::new(), Some(deleted_a)),
            "nothing is due before the first delete's time plus the retention"
        );
        purge(&mut ns, vec![a, b], true);
        assert_eq!(listed(&ns).1.len(), 2, "not expired yet");

        ns.now += 11 * NS_PER_S;
        assert_eq!(
            crate::expired_trash(&ns.store, ns.now, 1).unwrap(),
            (vec![a], None),
            "the limit reached: look again at once"
        );
        assert_eq!(
            crate::expired_trash(&ns.store, ns.now, 10).unwrap(),
            (vec![a, b], Some(ns.now))
        );
        purge(&mut ns, vec![a, b], true);
        assert_eq!(listed(&ns).1, Vec::new());
        assert_eq!(ns.attr(a), Err(FsError::NotFound));
        // b is open: an orphan now, freed when its last open goes.
        assert!(ns.attr(b).is_ok());
        assert_eq!(
            ns.store.scan(Table::Orphans, &[], None, 10).unwrap().len(),
            1
        );
        ns.cmd(Op::Release { ino: b }).unwrap();
        assert_eq!(ns.attr(b), Err(FsError::NotFound));
    }

    #[test]
    fn the_last_release_of_a_kept_open_file_keeps_it() {
        let mut ns = with_trash(3600);
        let root = ns.root();
        let f = ns.create(root, "f");
        ns.cmd(Op::Open { ino: f }).unwrap();
        unlink(&mut ns, root, "f");
        ns.cmd(Op::Release { ino: f }).unwrap();
        assert_eq!(ns.attr(f).unwrap().nlink, 0);
        assert_eq!(listed(&ns).1.len(), 1);
        assert!(
            ns.store
                .scan(Table::Orphans, &[], None, 10)
                .unwrap()
                .is_empty()
        );
    }
}
