//! Creating and removing names: mknod/create, mkdir, symlink, link, unlink, rmdir.
//!
//! Check order, shared by every handler (and mirrored by the reference model in the tests):
//! arguments first (name, kind, target), then the parent directory (`ENOENT`, `ENOTDIR`), then
//! the entry (`EEXIST`/`ENOENT`), then the kind of what it names, then limits (`EMLINK`).

use super::command::Response;
use super::flags;
use super::layout;
use super::names::{check_name, check_target};
use super::nodes::{NewInode, add_entry, create_inode, drop_link, remove_entry};
use super::records::{InodeRec, OrphanRec};
use super::session;
use super::snapshot;
use super::state::{OpError, OpResult, Tables, TablesMut, keys};
use super::store::{Store, Table};
use crate::error::NamespaceError;
use tessera_proto::fs::{FileKind, FsError, Ino, LINK_MAX};

/// Creates `name` in `parent` as a new inode; with `open_in` the creating session also opens
/// it in the same command (FUSE `create`), so a crash cannot leave it created but unopened.
pub(crate) fn make<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    name: &[u8],
    new: NewInode,
    open_in: Option<u64>,
    now: i64,
) -> OpResult<Response> {
    check_name(name)?;
    if new.kind == FileKind::Symlink {
        check_target(&new.target)?;
    }
    let dir = s.need_live_dir(parent)?;
    if s.dentry(parent, name)?.is_some() {
        return Err(FsError::Exists.into());
    }
    flags::need_mutable(&dir)?;
    let kind = new.kind;
    if kind.is_dir() && dir.nlink >= LINK_MAX {
        return Err(FsError::TooManyLinks.into());
    }
    let (ino, rec) = create_inode(s, new, parent, now)?;
    layout::inherit(s, parent, ino, kind)?;
    add_entry(s, parent, name, ino, kind, now)?;
    if let Some(session) = open_in {
        session::open(s, session, ino)?;
    }
    Ok(Response::Attr(rec.attr(ino)))
}

/// `O_TMPFILE`: a new file under `parent` with no name (nlink 0, so an orphan from the
/// start), opened by `session`, marked so that `link` may give it a name.
pub(crate) fn make_unnamed<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    new: NewInode,
    session: u64,
    now: i64,
) -> OpResult<Response> {
    if new.kind != FileKind::Regular {
        return Err(FsError::Invalid.into());
    }
    let dir = s.need_live_dir(parent)?;
    flags::need_mutable(&dir)?;
    let (ino, _) = create_inode(s, new, parent, now)?;
    layout::inherit(s, parent, ino, FileKind::Regular)?;
    session::open(s, session, ino)?;
    s.update_inode(ino, |r| {
        r.nlink = 0;
        r.flags |= flags::UNNAMED;
    })?;
    s.put_rec(Table::Orphans, &keys::inode(ino), &OrphanRec { since: now })?;
    Ok(Response::Attr(s.need_inode(ino)?.attr(ino)))
}

/// `EPERM` if the entry naming `ino` in `dir` may not go: the directory is immutable or
/// append-only, or so is the inode (Linux `may_delete`).
pub(crate) fn need_removable<S: Store + ?Sized>(s: &S, dir: &InodeRec, ino: Ino) -> OpResult<()> {
    flags::need_unpinned(dir)?;
    if let Some(rec) = s.inode(ino)? {
        flags::need_unpinned(&rec)?;
    }
    Ok(())
}

/// `mknod`/`create`: anything but directories and symlinks, which have their own calls.
pub(crate) fn check_mknod_kind(kind: FileKind) -> Result<(), FsError> {
    match kind {
        FileKind::Directory | FileKind::Symlink => Err(FsError::Invalid),
        _ => Ok(()),
    }
}

/// A new hard link `new_parent/new_name` to `ino`.
pub(crate) fn link<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    new_parent: Ino,
    new_name: &[u8],
    now: i64,
) -> OpResult<Response> {
    check_name(new_name)?;
    let rec = s.need_inode(ino)?;
    // An unlinked-but-open file cannot get a name back (Linux: ENOENT), but a file made
    // with O_TMPFILE can, once.
    let unnamed = rec.flags & flags::UNNAMED != 0;
    if rec.nlink == 0 && !unnamed {
        return Err(FsError::NotFound.into());
    }
    if rec.kind.is_dir() {
        return Err(FsError::NotPermitted.into());
    }
    let dir = s.need_live_dir(new_parent)?;
    if s.dentry(new_parent, new_name)?.is_some() {
        return Err(FsError::Exists.into());
    }
    flags::need_unpinned(&rec)?;
    flags::need_mutable(&dir)?;
    if rec.nlink >= LINK_MAX {
        return Err(FsError::TooManyLinks.into());
    }
    add_entry(s, new_parent, new_name, ino, rec.kind, now)?;
    let rec = s.update_inode(ino, |r| {
        r.nlink += 1;
        r.ctime = now;
        r.flags &= !flags::UNNAMED;
    })?;
    if unnamed {
        s.delete(Table::Orphans, &keys::inode(ino))?;
    }
    Ok(Response::Attr(rec.attr(ino)))
}

/// Removes a non-directory name (`EISDIR` for a directory, as Linux `unlink`).
pub(crate) fn unlink<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    name: &[u8],
    now: i64,
) -> OpResult<Response> {
    check_name(name)?;
    let dir = s.need_dir(parent)?;
    let entry = s.dentry(parent, name)?.ok_or(FsError::NotFound)?;
    if entry.kind.is_dir() {
        return Err(FsError::IsDir.into());
    }
    need_removable(s, &dir, entry.ino)?;
    remove_entry(s, parent, name, &entry, now)?;
    drop_link(s, entry.ino, (parent, name), now)?;
    Ok(Response::Done)
}

/// Removes an empty directory.
pub(crate) fn rmdir<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    name: &[u8],
    now: i64,
) -> OpResult<Response> {
    check_name(name)?;
    let dir = s.need_dir(parent)?;
    let entry = s.dentry(parent, name)?.ok_or(FsError::NotFound)?;
    if !entry.kind.is_dir() {
        return Err(FsError::NotDir.into());
    }
    need_removable(s, &dir, entry.ino)?;
    let child = s
        .inode(entry.ino)?
        .ok_or(OpError::Meta(NamespaceError::Invariant {
            what: "directory entry names a missing inode",
            ino: entry.ino,
        }))?;
    if child.size > 0 {
        return Err(FsError::NotEmpty.into());
    }
    snapshot::need_no_snapshots(s, entry.ino)?;
    remove_entry(s, parent, name, &entry, now)?;
    drop_link(s, entry.ino, (parent, name), now)?;
    Ok(Response::Done)
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FileKind, FsError};

    fn tmpfile(ns: &mut Ns, parent: tessera_proto::fs::Ino) -> tessera_proto::fs::Ino {
        let r = ns.cmd(Op::MakeTmpfile {
            parent,
            perm: 0o666,
            umask: 0o022,
            uid: 1,
            gid: 1,
        });
        let a = Ns::attr_reply(r).unwrap();
        assert_eq!((a.nlink, a.perm, a.flags), (0, 0o644, 0));
        a.ino
    }

    /// O_TMPFILE: no name, freed with its last open unless linked first, and linkable
    /// once; an unlinked file is not.
    #[test]
    fn unnamed_files_get_a_name_by_link_or_go_at_release() {
        let mut ns = Ns::new();
        let root = ns.root();
        let names_before = ns.names(root);
        let t = tmpfile(&mut ns, root);
        assert_eq!(ns.names(root), names_before);
        ns.cmd(Op::Link {
            ino: t,
            new_parent: root,
            new_name: "kept".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(t).unwrap().nlink, 1);
        ns.cmd(Op::Release { ino: t }).unwrap();
        assert_eq!(ns.lookup(root, "kept").unwrap().ino, t);

        let gone = tmpfile(&mut ns, root);
        ns.cmd(Op::Release { ino: gone }).unwrap();
        assert_eq!(ns.attr(gone), Err(FsError::NotFound));

        // A file that had a name and lost it stays nameless.
        let f = ns.mknod(root, "f", FileKind::Regular).unwrap().ino;
        ns.cmd(Op::Open { ino: f }).unwrap();
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        let relink = Op::Link {
            ino: f,
            new_parent: root,
            new_name: "g".into(),
        };
        assert_eq!(ns.cmd(relink).map(|_| ()), Err(FsError::NotFound));
    }

    #[test]
    fn create_sets_times_and_parent_counts() {
        let mut ns = Ns::new();
        let root = ns.root();
        let before = ns.attr(root).unwrap();
        let f = ns.mknod(root, "f", FileKind::Regular).unwrap();
        assert_eq!((f.nlink, f.size, f.perm, f.uid), (1, 0, 0o644, 1));
        assert_eq!(f.atime_ns, ns.now);
        let after = ns.attr(root).unwrap();
        assert_eq!(after.size, before.size + 1);
        assert_eq!(after.nlink, 2);
        assert_eq!((after.mtime_ns, after.ctime_ns), (ns.now, ns.now));
        assert_eq!(ns.lookup(root, "f").unwrap(), f);
        assert_eq!(ns.mknod(root, "f", FileKind::Fifo), Err(FsError::Exists));
    }

    #[test]
    fn mkdir_and_rmdir_adjust_parent_nlink() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        assert_eq!(ns.attr(d).unwrap().nlink, 2);
        assert_eq!(ns.attr(root).unwrap().nlink, 3);
        ns.cmd(Op::Rmdir {
            parent: root,
            name: "d".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(root).unwrap().nlink, 2);
        assert_eq!(ns.attr(d), Err(FsError::NotFound));
    }

    #[test]
    fn rmdir_non_empty_is_enotempty() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        ns.create(d, "f");
        let r = ns.cmd(Op::Rmdir {
            parent: root,
            name: "d".into(),
        });
        assert_eq!(r, Err(FsError::NotEmpty));
        assert!(ns.lookup(root, "d").is_ok());
    }

    #[test]
    fn rmdir_file_is_enotdir_and_unlink_dir_is_eisdir() {
        let mut ns = Ns::new();
        let root = ns.root();
        ns.create(root, "f");
        ns.mkdir(root, "d");
        let r = ns.cmd(Op::Rmdir {
            parent: root,
            name: "f".into(),
        });
        assert_eq!(r, Err(FsError::NotDir));
        let r = ns.cmd(Op::Unlink {
            parent: root,
            name: "d".into(),
        });
        assert_eq!(r, Err(FsError::IsDir));
        let r = ns.cmd(Op::Unlink {
            parent: root,
            name: "nope".into(),
        });
        assert_eq!(r, Err(FsError::NotFound));
    }

    #[test]
    fn name_of_256_bytes_is_enametoolong() {
        let mut ns = Ns::new();
        let root = ns.root();
        assert_eq!(ns.mkdir_r(root, &[b'a'; 256]), Err(FsError::NameTooLong));
        assert!(ns.mkdir_r(root, &[b'a'; 255]).is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert_eq!(ns.mkdir_r(root, bad), Err(FsError::Invalid));
        }
    }

    #[test]
    fn link_to_directory_is_eperm() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let r = ns.cmd(Op::Link {
            ino: d,
            new_parent: root,
            new_name: "d2".into(),
        });
        assert_eq!(r, Err(FsError::NotPermitted));
    }

    #[test]
    fn link_counts_and_last_unlink_frees() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let f = ns.create(root, "f");
        let a = Ns::attr_reply(ns.cmd(Op::Link {
            ino: f,
            new_parent: d,
            new_name: "g".into(),
        }));
        assert_eq!(a.unwrap().nlink, 2);
        let r = ns.cmd(Op::Link {
            ino: f,
            new_parent: d,
            new_name: "g".into(),
        });
        assert_eq!(r, Err(FsError::Exists));
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(f).unwrap().nlink, 1);
        ns.cmd(Op::Unlink {
            parent: d,
            name: "g".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
    }

    #[test]
    fn special_files_and_symlinks() {
        let mut ns = Ns::new();
        let root = ns.root();
        let r = ns.cmd(Op::Mknod {
            parent: root,
            name: "tty".into(),
            kind: FileKind::CharDevice,
            perm: 0o600,
            uid: 0,
            gid: 0,
            rdev: 0x0501,
            open: false,
        });
        assert_eq!(Ns::attr_reply(r).unwrap().rdev, 0x0501);
        assert_eq!(ns.mknod(root, "p", FileKind::Fifo).unwrap().rdev, 0);
        assert_eq!(
            ns.mknod(root, "s", FileKind::Socket).unwrap().kind,
            FileKind::Socket
        );
        assert_eq!(
            ns.mknod(root, "d", FileKind::Directory),
            Err(FsError::Invalid)
        );
        let r = ns.cmd(Op::Symlink {
            parent: root,
            name: "l".into(),
            target: b"../x".to_vec(),
            uid: 0,
            gid: 0,
        });
        let l = Ns::attr_reply(r).unwrap();
        assert_eq!((l.kind, l.size, l.perm), (FileKind::Symlink, 4, 0o777));
        assert_eq!(
            ns.q(Query::ReadLink { ino: l.ino }),
            Ok(Response::Target(b"../x".to_vec()))
        );
        assert_eq!(ns.q(Query::ReadLink { ino: root }), Err(FsError::Invalid));
        let r = ns.cmd(Op::Symlink {
            parent: root,
            name: "e".into(),
            target: Vec::new(),
            uid: 0,
            gid: 0,
        });
        assert_eq!(r, Err(FsError::NotFound));
    }

    #[test]
    fn nothing_can_be_created_in_a_removed_directory() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        ns.cmd(Op::Open { ino: d }).unwrap();
        ns.cmd(Op::Rmdir {
            parent: root,
            name: "d".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(d).unwrap().nlink, 0);
        assert_eq!(ns.mknod(d, "f", FileKind::Regular), Err(FsError::NotFound));
        assert_eq!(ns.mknod(99, "f", FileKind::Regular), Err(FsError::NotFound));
        let f = ns.create(root, "f");
        assert_eq!(ns.mknod(f, "x", FileKind::Regular), Err(FsError::NotDir));
    }
}
