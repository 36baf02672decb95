//! `rename` and `renameat2` (NOREPLACE, EXCHANGE, WHITEOUT), atomic because one command does
//! it all.
//!
//! The checks follow Linux's `do_renameat2` and `vfs_rename` in order:
//! 1. names (`EINVAL`, `ENAMETOOLONG`), both parents (`ENOENT`, `ENOTDIR`; a removed target
//!    directory is `ENOENT`), the source entry (`ENOENT`);
//! 2. EXCHANGE needs a target (`ENOENT`), NOREPLACE refuses one (`EEXIST`), even when source
//!    and target are the same file;
//! 3. moving a directory into itself or below itself is `EINVAL`; a target that is an
//!    ancestor of the source is `ENOTEMPTY` (`EINVAL` for EXCHANGE);
//! 4. source and target naming the same inode: success, nothing changes;
//! 5. plain rename only: directory onto non-directory `ENOTDIR`, non-directory onto directory
//!    `EISDIR`, onto a non-empty directory `ENOTEMPTY`, a directory into a parent with too
//!    many subdirectories `EMLINK`.
//!
//! Effects: the moved inode's ctime, both parents' mtime and ctime, the replaced inode loses
//! a link. WHITEOUT then makes a whiteout (character device 0:0, mode 0) under the source's
//! name, in the same command, so no one ever sees the name free (overlayfs relies on it). A moved entry gets a fresh readdir cookie in its new place; exchanged entries keep
//! theirs (the names stay where they were, only what they point to swaps).

use super::command::Response;
use super::dir::{make, need_removable};
use super::flags;
use super::names::check_name;
use super::nodes::{NewInode, add_entry, drop_link, is_ancestor, remove_entry, repoint_entry};
use super::records::DentryRec;
use super::state::{OpResult, Tables, TablesMut};
use super::store::Store;
use tessera_proto::fs::{FileKind, FsError, Ino, LINK_MAX, RenameMode};

/// What a rename names, gathered before anything changes.
struct Ends {
    parent: Ino,
    new_parent: Ino,
    src: DentryRec,
    dst: Option<DentryRec>,
}

pub(crate) fn rename<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    name: &[u8],
    new_parent: Ino,
    new_name: &[u8],
    mode: RenameMode,
    now: i64,
) -> OpResult<Response> {
    check_name(name)?;
    check_name(new_name)?;
    let from_dir = s.need_dir(parent)?;
    let to_dir = s.need_live_dir(new_parent)?;
    let src = s.dentry(parent, name)?.ok_or(FsError::NotFound)?;
    let dst = s.dentry(new_parent, new_name)?;
    match (mode, &dst) {
        (RenameMode::Exchange, None) => return Err(FsError::NotFound.into()),
        (m, Some(_)) if m.refuses_target() => return Err(FsError::Exists.into()),
        _ => {}
    }
    if src.kind.is_dir() && is_ancestor(s, src.ino, new_parent)? {
        return Err(FsError::Invalid.into());
    }
    if let Some(d) = &dst
        && d.kind.is_dir()
        && is_ancestor(s, d.ino, parent)?
    {
        return Err(match mode {
            RenameMode::Exchange => FsError::Invalid,
            _ => FsError::NotEmpty,
        }
        .into());
    }
    if dst.is_some_and(|d| d.ino == src.ino) {
        return Ok(Response::Done);
    }
    // Both names go from their directories (an exchange removes both as well): each must
    // be removable; the target directory must take a new entry.
    need_removable(s, &from_dir, src.ino)?;
    flags::need_mutable(&to_dir)?;
    if let Some(d) = &dst {
        need_removable(s, &to_dir, d.ino)?;
    }
    let ends = Ends {
        parent,
        new_parent,
        src,
        dst,
    };
    match mode {
        RenameMode::Exchange => exchange(s, &ends, name, new_name, now)?,
        RenameMode::Replace | RenameMode::NoReplace => replace(s, &ends, name, new_name, now)?,
        RenameMode::Whiteout { uid, gid, .. } => {
            replace(s, &ends, name, new_name, now)?;
            let whiteout = NewInode {
                kind: FileKind::CharDevice,
                perm: 0,
                uid,
                gid,
                rdev: 0,
                target: Vec::new(),
                ino: None,
            };
            make(s, parent, name, whiteout, None, now)?;
        }
    }
    Ok(Response::Done)
}

fn replace<S: Store + ?Sized>(
    s: &mut S,
    e: &Ends,
    name: &[u8],
    new_name: &[u8],
    now: i64,
) -> OpResult<()> {
    let src_dir = e.src.kind.is_dir();
    if let Some(d) = &e.dst {
        match (src_dir, d.kind.is_dir()) {
            (true, false) => return Err(FsError::NotDir.into()),
            (false, true) => return Err(FsError::IsDir.into()),
            _ => {}
        }
        if d.kind.is_dir() && s.need_inode(d.ino)?.size > 0 {
            return Err(FsError::NotEmpty.into());
        }
        if d.kind.is_dir() {
            super::snapshot::need_no_snapshots(s, d.ino)?;
        }
    }
    // A directory arriving from elsewhere adds a link to the new parent, unless it replaces
    // a directory there (which gives one back).
    let replaces_dir = e.dst.is_some_and(|d| d.kind.is_dir());
    if src_dir
        && e.parent != e.new_parent
        && !replaces_dir
        && s.need_inode(e.new_parent)?.nlink >= LINK_MAX
    {
        return Err(FsError::TooManyLinks.into());
    }

    remove_entry(s, e.parent, name, &e.src, now)?;
    if let Some(d) = &e.dst {
        remove_entry(s, e.new_parent, new_name, d, now)?;
        drop_link(s, d.ino, (e.new_parent, new_name), now)?;
    }
    add_entry(s, e.new_parent, new_name, e.src.ino, e.src.kind, now)?;
    let new_parent = e.new_parent;
    s.update_inode(e.src.ino, |r| {
        if src_dir {
            r.parent = new_parent;
        }
        r.ctime = now;
    })?;
    Ok(())
}

fn exchange<S: Store + ?Sized>(
    s: &mut S,
    e: &Ends,
    name: &[u8],
    new_name: &[u8],
    now: i64,
) -> OpResult<()> {
    let Some(dst) = e.dst else {
        return Err(FsError::NotFound.into());
    };
    repoint_entry(s, e.parent, name, &e.src, dst.ino, dst.kind, now)?;
    repoint_entry(s, e.new_parent, new_name, &dst, e.src.ino, e.src.kind, now)?;
    for (ino, dir) in [(e.src.ino, e.new_parent), (dst.ino, e.parent)] {
        s.update_inode(ino, |r| {
            if r.kind.is_dir() {
                r.parent = dir;
            }
            r.ctime = now;
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::Op;
    use crate::testkit::Ns;
    use tessera_proto::fs::{FileKind, FsError, RenameMode};

    #[test]
    fn directory_into_its_own_subtree_is_einval() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        let b = ns.mkdir(a, "b");
        let c = ns.mkdir(b, "c");
        assert_eq!(
            ns.rename(root, "a", c, "x", RenameMode::Replace),
            Err(FsError::Invalid)
        );
        assert_eq!(
            ns.rename(root, "a", a, "x", RenameMode::Replace),
            Err(FsError::Invalid)
        );
        assert_eq!(
            ns.rename(root, "a", b, "x", RenameMode::Exchange),
            Err(FsError::NotFound)
        );
        assert_eq!(ns.names(c), Vec::<String>::new());
        // A target that is an ancestor of the source.
        assert_eq!(
            ns.rename(b, "c", root, "a", RenameMode::Replace),
            Err(FsError::NotEmpty)
        );
        assert_eq!(
            ns.rename(b, "c", root, "a", RenameMode::Exchange),
            Err(FsError::Invalid)
        );
    }

    #[test]
    fn onto_itself_is_a_no_op() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        ns.cmd(Op::Link {
            ino: f,
            new_parent: root,
            new_name: "g".into(),
        })
        .unwrap();
        let before = (ns.attr(root).unwrap(), ns.attr(f).unwrap());
        ns.rename(root, "f", root, "f", RenameMode::Replace)
            .unwrap();
        ns.rename(root, "f", root, "g", RenameMode::Replace)
            .unwrap();
        ns.rename(root, "f", root, "g", RenameMode::Exchange)
            .unwrap();
        assert_eq!((ns.attr(root).unwrap(), ns.attr(f).unwrap()), before);
        assert_eq!(ns.names(root), vec!["f", "g"]);
        assert_eq!(
            ns.rename(root, "f", root, "f", RenameMode::NoReplace),
            Err(FsError::Exists)
        );
    }

    #[test]
    fn replace_rules_follow_linux() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        let g = ns.create(root, "g");
        let d = ns.mkdir(root, "d");
        let e = ns.mkdir(root, "e");
        ns.create(e, "x");
        assert_eq!(
            ns.rename(root, "d", root, "f", RenameMode::Replace),
            Err(FsError::NotDir)
        );
        assert_eq!(
            ns.rename(root, "f", root, "d", RenameMode::Replace),
            Err(FsError::IsDir)
        );
        assert_eq!(
            ns.rename(root, "d", root, "e", RenameMode::Replace),
            Err(FsError::NotEmpty)
        );
        assert_eq!(
            ns.rename(root, "f", root, "g", RenameMode::NoReplace),
            Err(FsError::Exists)
        );
        assert_eq!(
            ns.rename(root, "zz", root, "g", RenameMode::Replace),
            Err(FsError::NotFound)
        );
        ns.rename(root, "f", root, "g", RenameMode::Replace)
            .unwrap();
        assert_eq!(ns.attr(g), Err(FsError::NotFound));
        assert_eq!(ns.lookup(root, "g").unwrap().ino, f);
        assert_eq!(ns.attr(f).unwrap().ctime_ns, ns.now);
        // Replacing an empty directory gives its link back to the parent.
        let root_links = ns.attr(root).unwrap().nlink;
        ns.cmd(Op::Unlink {
            parent: e,
            name: "x".into(),
        })
        .unwrap();
        ns.rename(root, "d", root, "e", RenameMode::Replace)
            .unwrap();
        assert_eq!(ns.attr(root).unwrap().nlink, root_links - 1);
        assert_eq!(ns.lookup(root, "e").unwrap().ino, d);
        assert_eq!(ns.names(root), vec!["g", "e"]);
    }

    #[test]
    fn moving_a_directory_updates_links_and_dotdot() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        let b = ns.mkdir(root, "b");
        let c = ns.mkdir(a, "c");
        ns.rename(a, "c", b, "c", RenameMode::Replace).unwrap();
        assert_eq!(ns.attr(a).unwrap().nlink, 2);
        assert_eq!(ns.attr(b).unwrap().nlink, 3);
        assert_eq!(ns.attr(a).unwrap().mtime_ns, ns.now);
        assert_eq!(ns.attr(b).unwrap().mtime_ns, ns.now);
        // ".." now names b.
        let entries = ns.q(crate::command::Query::ReadDir {
            ino: c,
            after: 0,
            limit: 10,
            plus: false,
        });
        let Ok(crate::command::Response::Entries(e)) = entries else {
            panic!()
        };
        assert_eq!((e[1].name.as_slice(), e[1].ino), (&b".."[..], b));
    }

    #[test]
    fn exchange_swaps_and_fixes_link_counts() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        let b = ns.mkdir(root, "b");
        let d = ns.mkdir(a, "d");
        let f = ns.create(b, "f");
        ns.rename(a, "d", b, "f", RenameMode::Exchange).unwrap();
        assert_eq!(ns.lookup(a, "d").unwrap().ino, f);
        assert_eq!(ns.lookup(b, "f").unwrap().ino, d);
        assert_eq!(ns.attr(a).unwrap().nlink, 2);
        assert_eq!(ns.attr(b).unwrap().nlink, 3);
        assert_eq!(
            ns.rename(a, "d", b, "zz", RenameMode::Exchange),
            Err(FsError::NotFound)
        );
    }

    #[test]
    fn whiteout_takes_the_source_name_in_the_same_step() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let f = ns.create(root, "f");
        let g = ns.create(d, "g");
        let whiteout = |no_replace| RenameMode::Whiteout {
            no_replace,
            uid: 5,
            gid: 6,
        };
        assert_eq!(
            ns.rename(root, "f", d, "g", whiteout(true)),
            Err(FsError::Exists)
        );
        ns.rename(root, "f", d, "g", whiteout(false)).unwrap();
        assert_eq!(ns.lookup(d, "g").unwrap().ino, f);
        assert_eq!(ns.attr(g), Err(FsError::NotFound));
        let w = ns.lookup(root, "f").unwrap();
        assert_ne!(w.ino, f);
        assert_eq!(
            (w.kind, w.perm, w.rdev, w.uid, w.gid, w.nlink),
            (FileKind::CharDevice, 0, 0, 5, 6, 1)
        );
        // A directory moves the same way; its old name becomes a whiteout too.
        ns.rename(root, "d", root, "e", whiteout(true)).unwrap();
        assert_eq!(ns.lookup(root, "e").unwrap().ino, d);
        assert_eq!(ns.lookup(root, "d").unwrap().kind, FileKind::CharDevice);
        assert_eq!(ns.names(root), vec!["f", "e", "d"]);
    }
}
