//! Inode flags (`chattr`): immutable and append-only, kept in the inode record and enforced
//! here for every mount, with Linux's rules (`may_delete`, `may_setattr`, `vfs_link`,
//! `xattr_permission`, `may_open`):
//!
//! - an immutable inode changes in nothing but its flags and access time: no data, no
//!   attributes, no names added or removed (for a directory: no entries either), no
//!   extended attributes;
//! - an append-only file only grows at its end; an append-only directory gains entries but
//!   loses none; either keeps its owner, mode, explicit times and extended attributes, and
//!   cannot be removed, renamed or linked (touching its times to "now" is allowed).
//!
//! The kernel checks CAP_LINUX_IMMUTABLE before a FUSE daemon sees `FS_IOC_SETFLAGS`, and
//! the mount checks it again; opening for writing is refused by the mount from the
//! attributes the open returns (the namespace does not know an open's mode).

use super::command::Response;
use super::records::InodeRec;
use super::state::{OpResult, Tables, TablesMut};
use super::store::Store;
use tessera_proto::fs::{FsError, INODE_APPEND, INODE_FLAGS, INODE_IMMUTABLE, Ino};

/// Internal inode flag, never shown: the file was made by `O_TMPFILE` and has had no name
/// yet, so `link` may give it one though its nlink is 0.
pub(crate) const UNNAMED: u32 = 1 << 31;

/// `SetFlags`: flags outside `INODE_FLAGS` are `EOPNOTSUPP`. Sets the change time and
/// keeps internal flags.
pub(crate) fn set<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    flags: u32,
    now: i64,
) -> OpResult<Response> {
    s.need_inode(ino)?;
    if flags & !INODE_FLAGS != 0 {
        return Err(FsError::NotSupported.into());
    }
    let rec = s.update_inode(ino, |r| {
        r.flags = flags | (r.flags & !INODE_FLAGS);
        r.ctime = now;
    })?;
    Ok(Response::Attr(rec.attr(ino)))
}

fn immutable(rec: &InodeRec) -> bool {
    rec.flags & INODE_IMMUTABLE != 0
}

fn append_only(rec: &InodeRec) -> bool {
    rec.flags & INODE_APPEND != 0
}

/// `EPERM` if the inode is immutable or append-only: it may not be removed, renamed,
/// linked, have its owner, mode or explicit times set, or its extended attributes changed.
pub(crate) fn need_unpinned(rec: &InodeRec) -> Result<(), FsError> {
    if immutable(rec) || append_only(rec) {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

/// `EPERM` if the inode is immutable: nothing of it may change (a directory gains no
/// entries, a file no bytes, and its times cannot even be touched).
pub(crate) fn need_mutable(rec: &InodeRec) -> Result<(), FsError> {
    if immutable(rec) {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

/// `EPERM` unless data may be laid at file offsets `from` and up: never on an immutable
/// file, and on an append-only one only at or past its end.
pub(crate) fn need_writable_from(rec: &InodeRec, from: u64) -> Result<(), FsError> {
    need_mutable(rec)?;
    if append_only(rec) && from < rec.size {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::Op;
    use crate::testkit::Ns;
    use tessera_proto::fs::{
        FsError, INODE_APPEND, INODE_IMMUTABLE, Ino, RenameMode, SetAttr, SetTime, XattrMode,
    };

    fn set_flags(ns: &mut Ns, ino: Ino, flags: u32) -> Result<(), FsError> {
        ns.cmd(Op::SetFlags { ino, flags }).map(|_| ())
    }

    fn setattr(ns: &mut Ns, ino: Ino, set: SetAttr) -> Result<(), FsError> {
        ns.cmd(Op::SetAttr { ino, set }).map(|_| ())
    }

    fn unlink(ns: &mut Ns, parent: Ino, name: &str) -> Result<(), FsError> {
        ns.cmd(Op::Unlink {
            parent,
            name: name.into(),
        })
        .map(|_| ())
    }

    fn rename(ns: &mut Ns, parent: Ino, name: &str, new_name: &str) -> Result<(), FsError> {
        ns.cmd(Op::Rename {
            parent,
            name: name.into(),
            new_parent: parent,
            new_name: new_name.into(),
            mode: RenameMode::Replace,
        })
        .map(|_| ())
    }

    fn link(ns: &mut Ns, ino: Ino, parent: Ino, name: &str) -> Result<(), FsError> {
        ns.cmd(Op::Link {
            ino,
            new_parent: parent,
            new_name: name.into(),
        })
        .map(|_| ())
    }

    fn set_xattr(ns: &mut Ns, ino: Ino) -> Result<(), FsError> {
        ns.cmd(Op::SetXattr {
            ino,
            name: b"user.x".to_vec(),
            value: b"1".to_vec(),
            mode: XattrMode::Upsert,
        })
        .map(|_| ())
    }

    const EPERM: Result<(), FsError> = Err(FsError::NotPermitted);

    #[test]
    fn only_known_flags_are_kept_and_they_show_in_the_attributes() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        assert_eq!(set_flags(&mut ns, f, 0x80000), Err(FsError::NotSupported));
        set_flags(&mut ns, f, INODE_IMMUTABLE | INODE_APPEND).unwrap();
        let a = ns.attr(f).unwrap();
        assert!(a.immutable() && a.append_only());
        assert_eq!(a.ctime_ns, ns.now);
        set_flags(&mut ns, f, 0).unwrap();
        assert_eq!(ns.attr(f).unwrap().flags, 0);
    }

    #[test]
    fn an_immutable_file_cannot_change_or_go() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        set_flags(&mut ns, f, INODE_IMMUTABLE).unwrap();
        let chmod = SetAttr {
            perm: Some(0o600),
            ..SetAttr::default()
        };
        let touch = SetAttr {
            mtime: SetTime::Now,
            ..SetAttr::default()
        };
        let grow = SetAttr {
            size: Some(10),
            ..SetAttr::default()
        };
        assert_eq!(setattr(&mut ns, f, chmod), EPERM);
        assert_eq!(setattr(&mut ns, f, touch), EPERM);
        assert_eq!(setattr(&mut ns, f, grow), EPERM);
        assert_eq!(unlink(&mut ns, root, "f"), EPERM);
        assert_eq!(rename(&mut ns, root, "f", "g"), EPERM);
        assert_eq!(link(&mut ns, f, root, "g"), EPERM);
        assert_eq!(set_xattr(&mut ns, f), EPERM);
        // Replacing it by renaming another file over it removes it too.
        ns.create(root, "other");
        assert_eq!(rename(&mut ns, root, "other", "f"), EPERM);
        assert_eq!(ns.names(root), vec!["f", "other"]);
        set_flags(&mut ns, f, 0).unwrap();
        unlink(&mut ns, root, "f").unwrap();
    }

    #[test]
    fn an_append_only_file_may_be_touched_but_not_truncated_or_removed() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        set_flags(&mut ns, f, INODE_APPEND).unwrap();
        let touch = SetAttr {
            atime: SetTime::Now,
            mtime: SetTime::Now,
            ..SetAttr::default()
        };
        setattr(&mut ns, f, touch).unwrap();
        let at = SetAttr {
            mtime: SetTime::At(5),
            ..SetAttr::default()
        };
        let chown = SetAttr {
            uid: Some(7),
            ..SetAttr::default()
        };
        let truncate = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        assert_eq!(setattr(&mut ns, f, at), EPERM);
        assert_eq!(setattr(&mut ns, f, chown), EPERM);
        assert_eq!(setattr(&mut ns, f, truncate), EPERM);
        assert_eq!(unlink(&mut ns, root, "f"), EPERM);
        assert_eq!(link(&mut ns, f, root, "g"), EPERM);
        assert_eq!(set_xattr(&mut ns, f), EPERM);
    }

    #[test]
    fn directories_with_flags_guard_their_entries() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        ns.create(d, "old");
        set_flags(&mut ns, d, INODE_APPEND).unwrap();
        // Append-only: entries come, none go.
        ns.create(d, "new");
        assert_eq!(unlink(&mut ns, d, "old"), EPERM);
        assert_eq!(rename(&mut ns, d, "old", "renamed"), EPERM);
        set_flags(&mut ns, d, INODE_IMMUTABLE).unwrap();
        assert_eq!(
            ns.mknod(d, "more", tessera_proto::fs::FileKind::Regular)
                .map(|_| ()),
            EPERM
        );
        assert_eq!(ns.mkdir_r(d, b"sub").map(|_| ()), EPERM);
        let f = ns.create(root, "f");
        assert_eq!(link(&mut ns, f, d, "f"), EPERM);
        assert_eq!(unlink(&mut ns, d, "new"), EPERM);
        assert_eq!(ns.names(d), vec!["old", "new"]);
        // The directory itself cannot be removed or renamed.
        set_flags(&mut ns, d, INODE_APPEND).unwrap();
        assert_eq!(rename(&mut ns, root, "d", "e"), EPERM);
    }
}
