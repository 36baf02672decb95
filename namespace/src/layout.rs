//! Per-directory layouts: the erasure code (and stripe size) of new files, kept as the
//! extended attribute `tessera.layout` (`tessera_proto::layout`) in the `xattrs` table, so
//! it is replicated, dumped and loaded, and read by every mount, like any attribute.
//!
//! Inheritance is by copy at create: a new file or subdirectory gets its parent's layout
//! attribute in the command that makes it. We copy rather than resolve the nearest ancestor
//! with one because the namespace has no cheap walk to the root (a walk per create would
//! read one dentry per level under every create), a file's layout must never change after
//! its first byte is written (a copy is fixed; an ancestor's can be changed), and a mount
//! then needs exactly one attribute read per file to learn its code. The cost: changing a
//! directory's layout changes what is created in it from then on, not what its existing
//! subdirectories pass on (`tessera layout set` says so; set it on each subtree wanted).
//!
//! On a directory the attribute may be set (a valid value only, stored in canonical form)
//! and removed at will. On a file it is what the file was created with and cannot be
//! changed, except while the file has no data (size 0), so `cp --preserve=xattr` and tools
//! that copy attributes onto a fresh file still work.

use super::state::{OpResult, Tables, TablesMut, keys};
use super::store::{Store, Table};
use tessera_proto::fs::{FileKind, FsError, Ino};
use tessera_proto::layout::{Layout, XATTR_LAYOUT};

/// Whether `name` is the layout attribute.
pub(crate) fn is_layout(name: &[u8]) -> bool {
    name == XATTR_LAYOUT
}

/// The canonical value to store for a `setxattr` of the layout on `ino`, or `EINVAL` for a
/// value that does not parse or an inode whose layout is fixed.
pub(crate) fn check_set<S: Store + ?Sized>(s: &S, ino: Ino, value: &[u8]) -> OpResult<Vec<u8>> {
    let layout = Layout::from_bytes(value).map_err(|_| FsError::Invalid)?;
    check_changeable(s, ino)?;
    Ok(layout.to_string().into_bytes())
}

/// `EINVAL` unless `ino`'s layout may change: a directory, or a file without data.
pub(crate) fn check_changeable<S: Store + ?Sized>(s: &S, ino: Ino) -> OpResult<()> {
    let rec = s.need_inode(ino)?;
    match rec.kind {
        FileKind::Directory => Ok(()),
        FileKind::Regular if rec.size == 0 => Ok(()),
        _ => Err(FsError::Invalid.into()),
    }
}

/// Gives the new inode `ino` (of `kind`, made under `parent`) its parent's layout.
pub(crate) fn inherit<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    ino: Ino,
    kind: FileKind,
) -> OpResult<()> {
    if !matches!(kind, FileKind::Regular | FileKind::Directory) {
        return Ok(());
    }
    if let Some(value) = s.rec::<Vec<u8>>(Table::Xattrs, &keys::xattr(parent, XATTR_LAYOUT))? {
        s.put_rec(Table::Xattrs, &keys::xattr(ino, XATTR_LAYOUT), &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FsError, Ino, XattrMode};

    fn set(ns: &mut Ns, ino: Ino, value: &str) -> Result<Response, FsError> {
        ns.cmd(Op::SetXattr {
            ino,
            name: b"tessera.layout".to_vec(),
            value: value.into(),
            mode: XattrMode::Upsert,
        })
    }

    fn get(ns: &Ns, ino: Ino) -> Result<String, FsError> {
        match ns.q(Query::GetXattr {
            ino,
            name: b"tessera.layout".to_vec(),
        })? {
            Response::Xattr(v) => Ok(String::from_utf8(v).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_files_and_subdirectories_copy_their_parents_layout() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        set(&mut ns, a, " stripe=8M ec=6+3").unwrap();
        assert_eq!(get(&ns, a).unwrap(), "ec=6+3 stripe=8M", "stored canonical");
        let f = ns.create(a, "f");
        let b = ns.mkdir(a, "b");
        let g = ns.create(b, "g");
        for ino in [f, b, g] {
            assert_eq!(get(&ns, ino).unwrap(), "ec=6+3 stripe=8M");
        }
        // A change applies to what is created from then on; copies already made keep theirs.
        set(&mut ns, a, "ec=1+2").unwrap();
        let h = ns.create(a, "h");
        assert_eq!(get(&ns, h).unwrap(), "ec=1+2");
        assert_eq!(get(&ns, f).unwrap(), "ec=6+3 stripe=8M");
        assert_eq!(get(&ns, b).unwrap(), "ec=6+3 stripe=8M");
        // Unset: new files get none (the mount's default code).
        ns.cmd(Op::RemoveXattr {
            ino: a,
            name: b"tessera.layout".to_vec(),
        })
        .unwrap();
        let i = ns.create(a, "i");
        assert_eq!(get(&ns, i), Err(FsError::NoData));
        assert_eq!(get(&ns, root), Err(FsError::NoData));
    }

    #[test]
    fn bad_values_and_fixed_layouts_are_einval() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        for bad in [
            "ec=0+2",
            "ec=6",
            "ec=200+100",
            "ec=4+2 stripe=1G",
            "fast please",
        ] {
            assert_eq!(set(&mut ns, a, bad), Err(FsError::Invalid), "{bad}");
        }
        assert_eq!(get(&ns, a), Err(FsError::NoData), "nothing stored");
        set(&mut ns, a, "ec=2+1").unwrap();
        let f = ns.create(a, "f");
        // An empty file may still take another layout...
        set(&mut ns, f, "ec=1+1").unwrap();
        assert_eq!(get(&ns, f).unwrap(), "ec=1+1");
        // ...one with data keeps the one it has.
        ns.cmd(Op::SetAttr {
            ino: f,
            set: tessera_proto::fs::SetAttr {
                size: Some(10),
                ..Default::default()
            },
        })
        .unwrap();
        assert_eq!(set(&mut ns, f, "ec=4+2"), Err(FsError::Invalid));
        let r = ns.cmd(Op::RemoveXattr {
            ino: f,
            name: b"tessera.layout".to_vec(),
        });
        assert_eq!(r, Err(FsError::Invalid));
        assert_eq!(get(&ns, f).unwrap(), "ec=1+1");
    }

    #[test]
    fn layouts_survive_dump_and_load_and_still_pass_on() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        set(&mut ns, a, "ec=1+2 stripe=1M").unwrap();
        let f = ns.create(a, "f");
        let (image, _) = crate::dump::dump(&ns.store).unwrap();
        let mut fresh = Ns::new();
        assert_eq!(fresh.sys(Op::LoadImage { image }), Ok(Response::Done));
        assert_eq!(get(&fresh, a).unwrap(), "ec=1+2 stripe=1M");
        assert_eq!(get(&fresh, f).unwrap(), "ec=1+2 stripe=1M");
        let g = fresh.create(a, "g");
        assert_eq!(get(&fresh, g).unwrap(), "ec=1+2 stripe=1M");
    }
}
