//! Extended attributes: `xattrs[(ino, name)] -> value`.
//!
//! Names and values are opaque here: namespace rules (`user.` only on files and directories,
//! `trusted.` for root) are enforced by the kernel before FUSE sees the call. POSIX ACLs are
//! the exception: setting one changes the mode too (`acl.rs`); so is `tessera.layout`, which
//! only takes a valid layout and is fixed on a file with data (`layout.rs`).

use super::acl;
use super::codec::{decode, key_tail};
use super::command::Response;
use super::flags;
use super::layout;
use super::names::{check_xattr_name, check_xattr_value};
use super::state::{OpResult, Tables, TablesMut, keys};
use super::store::{Store, StoreRead, Table, scan_prefix};
use tessera_proto::fs::{FsError, Ino, XattrMode};

pub(crate) fn set<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    name: &[u8],
    value: &[u8],
    mode: XattrMode,
    now: i64,
) -> OpResult<Response> {
    check_xattr_name(name)?;
    check_xattr_value(value)?;
    flags::need_unpinned(&s.need_inode(ino)?)?;
    let key = keys::xattr(ino, name);
    let exists = s.get(Table::Xattrs, &key)?.is_some();
    match (mode, exists) {
        (XattrMode::Create, true) => return Err(FsError::Exists.into()),
        (XattrMode::Replace, false) => return Err(FsError::NoData.into()),
        _ => {}
    }
    if layout::is_layout(name) {
        // Validated and stored in canonical form; a file's layout is fixed once it has data.
        let canonical = layout::check_set(s, ino, value)?;
        s.put_rec(Table::Xattrs, &key, &canonical)?;
    } else if name == acl::ACCESS {
        // The mode follows the ACL; an ACL the mode can say is not stored.
        acl::set_access(s, ino, value)?;
    } else {
        if name == acl::DEFAULT {
            acl::Acl::parse(value)?;
            acl::mark_used(s)?;
        }
        s.put_rec(Table::Xattrs, &key, &value.to_vec())?;
    }
    s.update_inode(ino, |r| r.ctime = now)?;
    Ok(Response::Done)
}

pub(crate) fn remove<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    name: &[u8],
    now: i64,
) -> OpResult<Response> {
    check_xattr_name(name)?;
    flags::need_unpinned(&s.need_inode(ino)?)?;
    let key = keys::xattr(ino, name);
    if s.get(Table::Xattrs, &key)?.is_none() {
        return Err(FsError::NoData.into());
    }
    if layout::is_layout(name) {
        layout::check_changeable(s, ino)?;
    }
    s.delete(Table::Xattrs, &key)?;
    s.update_inode(ino, |r| r.ctime = now)?;
    Ok(Response::Done)
}

pub(crate) fn get<S: StoreRead + ?Sized>(s: &S, ino: Ino, name: &[u8]) -> OpResult<Response> {
    check_xattr_name(name)?;
    s.need_inode(ino)?;
    let value: Vec<u8> = s
        .rec(Table::Xattrs, &keys::xattr(ino, name))?
        .ok_or(FsError::NoData)?;
    Ok(Response::Xattr(value))
}

/// Names in byte order.
pub(crate) fn list<S: StoreRead + ?Sized>(s: &S, ino: Ino) -> OpResult<Response> {
    s.need_inode(ino)?;
    let mut names = Vec::new();
    for (key, value) in scan_prefix(s, Table::Xattrs, &keys::inode(ino))? {
        // Decode the value too, so a corrupt row is reported here rather than on a later get.
        let _: Vec<u8> = decode(Table::Xattrs, &key, &value)?;
        names.push(key_tail(Table::Xattrs, &key, 8)?);
    }
    Ok(Response::XattrNames(names))
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FsError, XattrMode};

    fn set(ns: &mut Ns, ino: u64, name: &str, value: &str, mode: XattrMode) -> Result<(), FsError> {
        ns.cmd(Op::SetXattr {
            ino,
            name: name.into(),
            value: value.into(),
            mode,
        })
        .map(|_| ())
    }

    #[test]
    fn create_replace_get_list_remove() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        assert_eq!(
            set(&mut ns, f, "user.a", "1", XattrMode::Replace),
            Err(FsError::NoData)
        );
        set(&mut ns, f, "user.b", "2", XattrMode::Create).unwrap();
        assert_eq!(ns.attr(f).unwrap().ctime_ns, ns.now);
        assert_eq!(
            set(&mut ns, f, "user.b", "3", XattrMode::Create),
            Err(FsError::Exists)
        );
        set(&mut ns, f, "user.b", "4", XattrMode::Replace).unwrap();
        set(&mut ns, f, "user.a", "", XattrMode::Upsert).unwrap();
        let get = |ns: &Ns, n: &str| {
            ns.q(Query::GetXattr {
                ino: f,
                name: n.into(),
            })
        };
        assert_eq!(get(&ns, "user.b"), Ok(Response::Xattr(b"4".to_vec())));
        assert_eq!(get(&ns, "user.a"), Ok(Response::Xattr(Vec::new())));
        assert_eq!(get(&ns, "user.c"), Err(FsError::NoData));
        assert_eq!(
            ns.q(Query::ListXattr { ino: f }),
            Ok(Response::XattrNames(vec![
                b"user.a".to_vec(),
                b"user.b".to_vec()
            ]))
        );
        ns.cmd(Op::RemoveXattr {
            ino: f,
            name: "user.a".into(),
        })
        .unwrap();
        let r = ns.cmd(Op::RemoveXattr {
            ino: f,
            name: "user.a".into(),
        });
        assert_eq!(r, Err(FsError::NoData));
        assert_eq!(
            set(&mut ns, 99, "user.a", "1", XattrMode::Upsert),
            Err(FsError::NotFound)
        );
        assert_eq!(
            set(&mut ns, f, "", "1", XattrMode::Upsert),
            Err(FsError::OutOfRange)
        );
        let big = ns.cmd(Op::SetXattr {
            ino: f,
            name: "user.big".into(),
            value: vec![0; 65537],
            mode: XattrMode::Upsert,
        });
        assert_eq!(big, Err(FsError::TooBig));
    }

    #[test]
    fn freed_inode_loses_its_xattrs() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        set(&mut ns, f, "user.a", "1", XattrMode::Upsert).unwrap();
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        use crate::StoreRead;
        assert!(
            ns.store
                .scan(crate::Table::Xattrs, &[], None, 10)
                .unwrap()
                .is_empty()
        );
    }
}
