//! Client sessions and the files they hold open.
//!
//! `open_files` is keyed `(session, ino)` rather than `(ino, session)`: ending a session must
//! find everything it holds, while "is this inode open anywhere?" is answered by the `opens`
//! count kept in the inode itself.

use super::caps;
use super::codec::{decode, key_u64};
use super::command::Response;
use super::delegate;
use super::lock;
use super::nodes::free_inode;
use super::records::{InodeRec, OpenRec, SessionRec};
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, Table, scan_prefix};
use super::trash;
use tessera_proto::fs::{FsError, Ino};

pub(crate) fn open_session<S: Store + ?Sized>(
    s: &mut S,
    client: &str,
    lease_ns: i64,
    now: i64,
) -> OpResult<Response> {
    let id = s.counter(counter::NEXT_SESSION)?.max(1);
    s.put_counter(counter::NEXT_SESSION, id + 1)?;
    let lease_until = now.saturating_add(lease_ns);
    let rec = SessionRec {
        client: client.to_string(),
        lease_until,
        seq_floor: 0,
    };
    s.put_rec(Table::Sessions, &keys::session(id), &rec)?;
    Ok(Response::Session { id, lease_until })
}

pub(crate) fn renew<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    lease_ns: i64,
    now: i64,
) -> OpResult<Response> {
    let mut rec = s.session(session)?.ok_or(FsError::Stale)?;
    rec.lease_until = rec.lease_until.max(now.saturating_add(lease_ns));
    s.put_rec(Table::Sessions, &keys::session(session), &rec)?;
    Ok(Response::Session {
        id: session,
        lease_until: rec.lease_until,
    })
}

/// Ends a session whose lease has run out by `now` (`EBUSY` if it was renewed meanwhile:
/// the leader's decision to expire raced with a renewal).
pub(crate) fn expire<S: Store + ?Sized>(s: &mut S, session: u64, now: i64) -> OpResult<Response> {
    let rec = s.session(session)?.ok_or(FsError::NotFound)?;
    if rec.lease_until > now {
        return Err(FsError::Busy.into());
    }
    end(s, session, now)
}

/// Releases everything a session holds (opens, locks, remembered replies) and drops it.
pub(crate) fn end<S: Store + ?Sized>(s: &mut S, session: u64, now: i64) -> OpResult<Response> {
    for (key, value) in scan_prefix(s, Table::OpenFiles, &keys::session(session))? {
        let ino = key_u64(Table::OpenFiles, &key, 8)?;
        let open: OpenRec = decode(Table::OpenFiles, &key, &value)?;
        drop_opens(s, session, ino, open.count, now)?;
    }
    for (key, _) in scan_prefix(s, Table::Requests, &keys::session(session))? {
        s.delete(Table::Requests, &key)?;
    }
    caps::drop_session(s, session)?;
    delegate::drop_session(s, session)?;
    s.delete(Table::Sessions, &keys::session(session))?;
    Ok(Response::Done)
}

/// Counts one open of `ino` by `session`. An unlinked inode cannot be opened again.
pub(crate) fn open<S: Store + ?Sized>(s: &mut S, session: u64, ino: Ino) -> OpResult<InodeRec> {
    let rec = s.need_inode(ino)?;
    if rec.nlink == 0 {
        return Err(FsError::NotFound.into());
    }
    let key = keys::open(session, ino);
    let count = s.open_rec(session, ino)?.map_or(0, |o| o.count);
    s.put_rec(Table::OpenFiles, &key, &OpenRec { count: count + 1 })?;
    Ok(s.update_inode(ino, |r| r.opens += 1)?)
}

pub(crate) fn release<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    ino: Ino,
    now: i64,
) -> OpResult<Response> {
    if s.open_rec(session, ino)?.is_none() {
        return Err(FsError::BadHandle.into());
    }
    drop_opens(s, session, ino, 1, now)?;
    Ok(Response::Done)
}

/// Drops one open of each of `inos` that `session` holds; the others are skipped (a batch
/// must not fail, and roll back, for one stale entry).
pub(crate) fn release_many<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    inos: &[Ino],
    now: i64,
) -> OpResult<Response> {
    for &ino in inos {
        if s.open_rec(session, ino)?.is_some() {
            drop_opens(s, session, ino, 1, now)?;
        }
    }
    Ok(Response::Done)
}

/// Drops `n` opens of `ino` by `session`. The session's last open also drops its locks on
/// the file (POSIX: closing releases a process's locks; the client unlocks per owner on
/// flush, this is the backstop). The last open anywhere frees an unlinked inode.
fn drop_opens<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    ino: Ino,
    n: u32,
    now: i64,
) -> OpResult<()> {
    let key = keys::open(session, ino);
    let held = s.open_rec(session, ino)?.map_or(0, |o| o.count);
    debug_assert!(
        held >= n,
        "session {session} drops {n} opens of inode {ino}, holds {held}"
    );
    let left = held.saturating_sub(n);
    if left == 0 {
        s.delete(Table::OpenFiles, &key)?;
        lock::drop_session_locks(s, ino, session)?;
    } else {
        s.put_rec(Table::OpenFiles, &key, &OpenRec { count: left })?;
    }
    let rec = s.update_inode(ino, |r| {
        // The inode counts every session's opens, this one's among them.
        debug_assert!(r.opens >= n, "inode {ino} has {} opens, loses {n}", r.opens);
        r.opens = r.opens.saturating_sub(n)
    })?;
    // A file in the trash stays there: the expiry or a purge frees it.
    if rec.nlink == 0 && rec.opens == 0 && !trash::is_kept(s, ino)? {
        free_inode(s, ino, now)?;
    }
    Ok(())
}

/// Sessions whose lease ended before `now`, oldest id first, at most `limit`. The leader
/// proposes `ExpireSession` for each (which re-checks the lease when applied).
pub fn expired_sessions<S: super::store::StoreRead + ?Sized>(
    s: &S,
    now: i64,
    limit: usize,
) -> Result<Vec<u64>, crate::error::NamespaceError> {
    let mut out = Vec::new();
    for (key, value) in scan_prefix(s, Table::Sessions, &[])? {
        let rec: SessionRec = decode(Table::Sessions, &key, &value)?;
        if rec.lease_until <= now {
            out.push(key_u64(Table::Sessions, &key, 0)?);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Response};
    use crate::testkit::Ns;
    use crate::{StoreRead, Table};
    use tessera_proto::fs::{FileKind, FsError};

    #[test]
    fn unlink_while_open_keeps_an_orphan_until_the_last_release() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        ns.cmd(Op::Open { ino: f }).unwrap();
        ns.cmd(Op::Open { ino: f }).unwrap();
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        assert_eq!(ns.attr(f).unwrap().nlink, 0);
        assert_eq!(
            ns.store.scan(Table::Orphans, &[], None, 10).unwrap().len(),
            1
        );
        assert_eq!(ns.cmd(Op::Open { ino: f }), Err(FsError::NotFound));
        ns.cmd(Op::Release { ino: f }).unwrap();
        assert!(ns.attr(f).is_ok());
        ns.cmd(Op::Release { ino: f }).unwrap();
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
        assert!(
            ns.store
                .scan(Table::Orphans, &[], None, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(ns.cmd(Op::Release { ino: f }), Err(FsError::BadHandle));
    }

    #[test]
    fn a_batch_of_releases_drops_each_open_and_skips_what_is_not_held() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.create(root, "a");
        let b = ns.create(root, "b");
        for f in [a, a, b] {
            ns.cmd(Op::Open { ino: f }).unwrap();
        }
        ns.cmd(Op::Unlink {
            parent: root,
            name: "b".into(),
        })
        .unwrap();
        // `a` twice, `b` once, and an inode never opened: one entry, no error.
        ns.cmd(Op::ReleaseMany {
            inos: vec![a, b, a, 999],
        })
        .unwrap();
        assert!(ns.attr(a).is_ok());
        assert_eq!(
            ns.attr(b),
            Err(FsError::NotFound),
            "the unlinked file is freed"
        );
        assert_eq!(ns.cmd(Op::Release { ino: a }), Err(FsError::BadHandle));
    }

    #[test]
    fn expiry_releases_opens_and_frees_orphans() {
        let mut ns = Ns::new();
        let root = ns.root();
        let r = ns.cmd(Op::Mknod {
            parent: root,
            name: "f".into(),
            kind: FileKind::Regular,
            perm: 0o600,
            uid: 0,
            gid: 0,
            rdev: 0,
            open: true,
        });
        let f = Ns::attr_reply(r).unwrap().ino;
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        let me = ns.session;
        assert_eq!(
            ns.sys(Op::ExpireSession { session: me }),
            Err(FsError::Busy)
        );
        ns.now += 2_000_000;
        ns.sys(Op::ExpireSession { session: me }).unwrap();
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
        assert!(
            ns.store
                .scan(Table::OpenFiles, &[], None, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            ns.store
                .scan(Table::Requests, &[], None, 10)
                .unwrap()
                .is_empty()
        );
        // The expired session can do nothing more.
        assert_eq!(ns.cmd(Op::Open { ino: root }), Err(FsError::Stale));
    }

    #[test]
    fn renew_extends_and_system_session_cannot_open() {
        let mut ns = Ns::new();
        let until = match ns.cmd(Op::RenewSession {
            lease_ns: 5_000_000,
        }) {
            Ok(Response::Session { lease_until, .. }) => lease_until,
            other => panic!("{other:?}"),
        };
        assert_eq!(until, ns.now + 5_000_000);
        let root = ns.root();
        assert_eq!(ns.sys(Op::Open { ino: root }), Err(FsError::Stale));
        ns.cmd(Op::CloseSession).unwrap();
        assert_eq!(
            ns.cmd(Op::RenewSession { lease_ns: 1 }),
            Err(FsError::Stale)
        );
    }
}
