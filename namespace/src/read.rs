//! Queries that read the tree: lookup, getattr, readdir, readlink, statfs.

use super::codec::{decode, key_u64};
use super::command::Response;
use super::names::check_name;
use super::snapshot;
use super::state::{OpError, OpResult, Tables, counter, keys};
use super::store::{StoreRead, Table, prefix_end};
use crate::error::NamespaceError;
use tessera_proto::fs::{
    COOKIE_DOT, COOKIE_DOTDOT, COOKIE_FIRST, DirEntry, FileKind, FsError, Ino, NAME_MAX, StatFs,
};

/// statfs block size: what `df` multiplies block counts by.
const BLOCK: u64 = 4096;

/// `name` in directory `parent`. "." and ".." are what the kernel asks when it turns a file
/// handle back into an inode (FUSE export support): "." is the inode `parent` itself, of any
/// kind, and ".." a directory's parent.
pub(crate) fn lookup<S: StoreRead + ?Sized>(s: &S, parent: Ino, name: &[u8]) -> OpResult<Response> {
    match name {
        b"." => return getattr(s, parent),
        b".." => return getattr(s, s.need_dir(parent)?.parent),
        _ => check_name(name)?,
    }
    s.need_dir(parent)?;
    let Some(entry) = s.dentry(parent, name)? else {
        // `.snapshots` is answered, but not listed (a real entry of that name wins).
        return match snapshot::holder(s, parent)? {
            Some(holder) if name == snapshot::SNAPSHOTS_NAME => getattr(s, holder),
            _ => Err(FsError::NotFound.into()),
        };
    };
    let rec = s
        .inode(entry.ino)?
        .ok_or(OpError::Meta(NamespaceError::Invariant {
            what: "directory entry names a missing inode",
            ino: entry.ino,
        }))?;
    Ok(Response::Attr(rec.attr(entry.ino)))
}

pub(crate) fn getattr<S: StoreRead + ?Sized>(s: &S, ino: Ino) -> OpResult<Response> {
    Ok(Response::Attr(s.need_inode(ino)?.attr(ino)))
}

pub(crate) fn readlink<S: StoreRead + ?Sized>(s: &S, ino: Ino) -> OpResult<Response> {
    let rec = s.need_inode(ino)?;
    if rec.kind != FileKind::Symlink {
        return Err(FsError::Invalid.into());
    }
    Ok(Response::Target(rec.target))
}

/// Up to `limit` entries after cookie `after`: "." (cookie 1) and ".." (cookie 2) first, then
/// real entries in cookie order, i.e. creation order. Because cookies only grow, a cursor
/// stays valid however the directory changes in between.
pub(crate) fn readdir<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    after: u64,
    limit: u32,
    plus: bool,
) -> OpResult<Response> {
    // A removed directory lists nothing, not even "." and ".." (Linux: ENOENT, IS_DEADDIR).
    let dir = s.need_live_dir(ino)?;
    let limit = limit as usize;
    let mut out = Vec::new();
    let attr_of = |ino: Ino| -> OpResult<Option<tessera_proto::fs::Attr>> {
        if !plus {
            return Ok(None);
        }
        Ok(Some(s.need_inode(ino)?.attr(ino)))
    };
    for (cookie, name, target) in [
        (COOKIE_DOT, &b"."[..], ino),
        (COOKIE_DOTDOT, b"..", dir.parent),
    ] {
        if after < cookie && out.len() < limit {
            out.push(DirEntry {
                name: name.to_vec(),
                ino: target,
                kind: FileKind::Directory,
                cookie,
                attr: attr_of(target)?,
            });
        }
    }
    let start = keys::cookie(ino, after.saturating_add(1).max(COOKIE_FIRST));
    let end = prefix_end(&keys::inode(ino));
    let want = limit - out.len();
    for (key, value) in s.scan(Table::DirCookies, &start, end.as_deref(), want)? {
        let cookie = key_u64(Table::DirCookies, &key, 8)?;
        let name: Vec<u8> = decode(Table::DirCookies, &key, &value)?;
        let entry = s.dentry(ino, &name)?.ok_or(NamespaceError::Invariant {
            what: "readdir cookie names a missing entry",
            ino,
        })?;
        out.push(DirEntry {
            attr: attr_of(entry.ino)?,
            name,
            ino: entry.ino,
            kind: entry.kind,
            cookie,
        });
    }
    Ok(Response::Entries(out))
}

/// Capacity comes from the caller (chunkserver reports); usage from the namespace counters.
pub(crate) fn statfs<S: StoreRead + ?Sized>(
    s: &S,
    total_bytes: u64,
    total_files: u64,
) -> OpResult<Response> {
    let blocks = total_bytes / BLOCK;
    let used = s.counter(counter::STORED_BYTES)?.div_ceil(BLOCK);
    let free = blocks.saturating_sub(used);
    Ok(Response::StatFs(StatFs {
        blocks,
        bfree: free,
        bavail: free,
        files: total_files,
        ffree: total_files.saturating_sub(s.counter(counter::INODES)?),
        bsize: BLOCK as u32,
        namelen: NAME_MAX as u32,
        frsize: BLOCK as u32,
        reserved_bytes: s.counter(counter::RESERVED_BYTES)?,
    }))
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{DirEntry, FsError, Ino};

    fn page(ns: &Ns, ino: Ino, after: u64, limit: u32, plus: bool) -> Vec<DirEntry> {
        match ns.q(Query::ReadDir {
            ino,
            after,
            limit,
            plus,
        }) {
            Ok(Response::Entries(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dot_entries_come_first() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let e = page(&ns, d, 0, 10, true);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].name.as_slice(), e[0].ino, e[0].cookie),
            (&b"."[..], d, 1)
        );
        assert_eq!(
            (e[1].name.as_slice(), e[1].ino, e[1].cookie),
            (&b".."[..], root, 2)
        );
        assert_eq!(e[1].attr.as_ref().unwrap().ino, root);
        let e = page(&ns, root, 0, 10, false);
        assert_eq!(e[1].ino, root);
        assert!(e[2].attr.is_none());
        let f = ns.create(root, "f");
        let r = ns.q(Query::ReadDir {
            ino: f,
            after: 0,
            limit: 10,
            plus: false,
        });
        assert_eq!(r, Err(FsError::NotDir));
    }

    #[test]
    fn cursor_survives_inserts_and_deletes() {
        let mut ns = Ns::new();
        let root = ns.root();
        for n in ["a", "b", "c", "d", "e"] {
            ns.create(root, n);
        }
        let first = page(&ns, root, 0, 4, false);
        assert_eq!(first.len(), 4);
        let cursor = first[3].cookie;
        // "b" (already listed) and "d" (not yet) go away; "a" is renamed; "z" arrives.
        ns.cmd(Op::Unlink {
            parent: root,
            name: "b".into(),
        })
        .unwrap();
        ns.cmd(Op::Unlink {
            parent: root,
            name: "d".into(),
        })
        .unwrap();
        ns.create(root, "z");
        let rest: Vec<String> = page(&ns, root, cursor, 100, false)
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        assert_eq!(rest, vec!["c", "e", "z"]);
        // Small pages see every entry exactly once.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let p = page(&ns, root, after, 2, false);
            let Some(last) = p.last() else { break };
            after = last.cookie;
            seen.extend(p.into_iter().map(|e| String::from_utf8(e.name).unwrap()));
        }
        assert_eq!(seen, vec![".", "..", "a", "c", "e", "z"]);
    }
}
