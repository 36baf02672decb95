//! Inode numbers delegated to a session, so its mount can complete creates itself and send
//! them later in a batch (write-back, issue 11): the mount tells its kernel the new inode's
//! number at once, and the leader must make the same inode under that number when the
//! create arrives.
//!
//! `DelegateInos` takes a range from the same counter every create uses (numbers are never
//! reused), so no one else is ever given them. A create that names one (`MakeNodeAs`) must
//! name a number of a range of its own session at or above the lowest still unused, and
//! uses everything below it: each number makes at most one inode, even if a mount sent
//! the same number twice or a freed inode's number again. Ranges go with their session;
//! numbers never used are simply skipped.

use super::codec::{decode, key_u64};
use super::records::DelegationRec;
use super::state::{OpResult, Tables, TablesMut, counter};
use super::store::{Store, Table, scan_prefix};
use crate::error::NamespaceError;
use tessera_proto::fs::{FsError, Ino};
use tessera_proto::meta::Response;

/// Most numbers one `DelegateInos` hands out.
pub const MAX_DELEGATED: u32 = 65_536;

fn range_key(session: u64, first: Ino) -> Vec<u8> {
    [session.to_be_bytes(), first.to_be_bytes()].concat()
}

/// `DelegateInos`: `count` (1 to [`MAX_DELEGATED`]) fresh numbers for `session`.
pub(crate) fn delegate<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    count: u32,
) -> OpResult<Response> {
    if count == 0 || count > MAX_DELEGATED {
        return Err(FsError::Invalid.into());
    }
    let first = s.counter(counter::NEXT_INO)?;
    let end = first + u64::from(count);
    s.put_counter(counter::NEXT_INO, end)?;
    let rec = DelegationRec { next: first, end };
    s.put_rec(Table::Delegations, &range_key(session, first), &rec)?;
    Ok(Response::Inos { first, count })
}

/// Uses number `ino` of one of `session`'s ranges, and every lower one of that range.
/// `EINVAL` if it is not one the session may still use.
pub(crate) fn take<S: Store + ?Sized>(s: &mut S, session: u64, ino: Ino) -> OpResult<()> {
    for (key, value) in scan_prefix(s, Table::Delegations, &session.to_be_bytes())? {
        let first = key_u64(Table::Delegations, &key, 8)?;
        let rec: DelegationRec = decode(Table::Delegations, &key, &value)?;
        if !(first..rec.end).contains(&ino) {
            continue;
        }
        if ino < rec.next {
            break;
        }
        match ino + 1 {
            next if next == rec.end => s.delete(Table::Delegations, &key)?,
            next => s.put_rec(Table::Delegations, &key, &DelegationRec { next, ..rec })?,
        }
        return Ok(());
    }
    Err(FsError::Invalid.into())
}

/// Drops the ranges of a session that ends.
pub(crate) fn drop_session<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
) -> Result<(), NamespaceError> {
    for (key, _) in scan_prefix(s, Table::Delegations, &session.to_be_bytes())? {
        s.delete(Table::Delegations, &key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Response};
    use crate::store::{StoreRead, Table};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FileKind, FsError, Ino};

    fn delegate(ns: &mut Ns, count: u32) -> (Ino, u32) {
        match ns.cmd(Op::DelegateInos { count }) {
            Ok(Response::Inos { first, count }) => (first, count),
            other => panic!("delegate: {other:?}"),
        }
    }

    fn file(parent: Ino, name: &str) -> Op {
        Op::MakeNode {
            parent,
            name: name.into(),
            kind: FileKind::Regular,
            perm: 0o644,
            umask: 0o022,
            uid: 1,
            gid: 1,
            rdev: 0,
            open: false,
        }
    }

    fn make_as(ns: &mut Ns, ino: Ino, node: Op) -> Result<Ino, FsError> {
        Ns::attr_reply(ns.cmd(Op::MakeNodeAs {
            ino,
            node: Box::new(node),
        }))
        .map(|a| a.ino)
    }

    fn ranges(ns: &Ns) -> usize {
        ns.store
            .scan(Table::Delegations, &[], None, usize::MAX)
            .unwrap()
            .len()
    }

    #[test]
    fn delegated_numbers_make_one_inode_each_and_only_for_their_session() {
        let mut ns = Ns::new();
        let root = ns.root();
        let (first, count) = delegate(&mut ns, 3);
        assert_eq!(count, 3);
        // No one else gets them.
        let after = ns.mkdir(root, "later");
        assert!(after >= first + 3, "{after} handed out again");

        assert_eq!(make_as(&mut ns, first + 1, file(root, "b")), Ok(first + 1));
        assert_eq!(ns.lookup(root, "b").map(|a| a.ino), Ok(first + 1));
        // Below the lowest unused, or used already: refused, nothing made.
        assert_eq!(
            make_as(&mut ns, first, file(root, "a")),
            Err(FsError::Invalid)
        );
        assert_eq!(
            make_as(&mut ns, first + 1, file(root, "again")),
            Err(FsError::Invalid)
        );
        assert_eq!(ns.lookup(root, "a"), Err(FsError::NotFound));
        // A create that fails uses no number.
        assert_eq!(
            make_as(&mut ns, first + 2, file(root, "b")),
            Err(FsError::Exists)
        );
        // Only creates may name a number, and not twice over.
        let mkdir = Op::Mkdir {
            parent: root,
            name: "d".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        };
        assert_eq!(make_as(&mut ns, first + 2, mkdir), Err(FsError::Invalid));
        let nested = Op::MakeNodeAs {
            ino: first + 2,
            node: Box::new(file(root, "n")),
        };
        assert_eq!(make_as(&mut ns, first + 2, nested), Err(FsError::Invalid));
        // Another session may not use them.
        let mine = ns.session;
        ns.session = match ns.sys(Op::OpenSession {
            client: "other".into(),
            lease_ns: 1_000_000,
        }) {
            Ok(Response::Session { id, .. }) => id,
            other => panic!("open session: {other:?}"),
        };
        assert_eq!(
            make_as(&mut ns, first + 2, file(root, "theirs")),
            Err(FsError::Invalid)
        );
        ns.session = mine;
        // The last number of a range uses it up.
        let link = Op::Symlink {
            parent: root,
            name: "s".into(),
            target: b"b".to_vec(),
            uid: 0,
            gid: 0,
        };
        assert_eq!(ranges(&ns), 1);
        assert_eq!(make_as(&mut ns, first + 2, link), Ok(first + 2));
        assert_eq!(ranges(&ns), 0);
        assert_eq!(ns.lookup(root, "s").map(|a| a.kind), Ok(FileKind::Symlink));
    }

    #[test]
    fn ranges_go_with_their_session_and_sizes_are_bounded() {
        let mut ns = Ns::new();
        assert_eq!(ns.cmd(Op::DelegateInos { count: 0 }), Err(FsError::Invalid));
        assert_eq!(
            ns.cmd(Op::DelegateInos {
                count: super::MAX_DELEGATED + 1
            }),
            Err(FsError::Invalid)
        );
        delegate(&mut ns, 10);
        delegate(&mut ns, 10);
        assert_eq!(ranges(&ns), 2);
        ns.cmd(Op::CloseSession).unwrap();
        assert_eq!(ranges(&ns), 0);
    }
}
