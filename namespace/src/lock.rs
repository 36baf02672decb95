//! flock and fcntl (POSIX record) locks, owned by `(session, owner)`.
//!
//! `locks[(ino, flavor, session, owner, start)] -> {kind, end, pid}`. The two flavors never
//! conflict with each other (as on Linux). An owner's POSIX locks are kept disjoint and
//! coalesced (adjacent or overlapping ranges of the same kind merge), so a new request simply
//! cuts what it overlaps out of the owner's locks and inserts itself. Nothing here blocks:
//! a conflict is `EAGAIN`, and a client emulating `F_SETLKW`/`LOCK_EX` without `LOCK_NB`
//! retries with back-off.

use super::codec::{Key, decode, key_u64};
use super::command::Response;
use super::records::LockRec;
use super::state::{OpResult, Tables, TablesMut};
use super::store::{Store, StoreRead, Table, scan_prefix};
use crate::error::NamespaceError;
use tessera_proto::fs::{FsError, Ino, LockFlavor, LockInfo, LockKind};

/// A lock request or a held lock, owner included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lock {
    pub session: u64,
    pub owner: u64,
    pub flavor: LockFlavor,
    pub kind: LockKind,
    pub start: u64,
    pub end: u64,
    pub pid: u32,
}

fn flavor_byte(f: LockFlavor) -> u8 {
    match f {
        LockFlavor::Flock => 0,
        LockFlavor::Posix => 1,
    }
}

fn prefix(ino: Ino, flavor: LockFlavor) -> Key {
    Key::new().u64(ino).u8(flavor_byte(flavor))
}

fn key(ino: Ino, l: &Lock) -> Vec<u8> {
    prefix(ino, l.flavor)
        .u64(l.session)
        .u64(l.owner)
        .u64(l.start)
        .done()
}

/// Every held lock of `flavor` on `ino`, in key order.
fn held<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    flavor: LockFlavor,
    owner: Option<(u64, u64)>,
) -> Result<Vec<Lock>, NamespaceError> {
    let mut p = prefix(ino, flavor);
    if let Some((session, owner)) = owner {
        p = p.u64(session).u64(owner);
    }
    let mut out = Vec::new();
    for (k, v) in scan_prefix(s, Table::Locks, &p.done())? {
        let rec: LockRec = decode(Table::Locks, &k, &v)?;
        out.push(Lock {
            session: key_u64(Table::Locks, &k, 9)?,
            owner: key_u64(Table::Locks, &k, 17)?,
            flavor,
            kind: rec.kind,
            start: key_u64(Table::Locks, &k, 25)?,
            end: rec.end,
            pid: rec.pid,
        });
    }
    Ok(out)
}

/// The first lock of another owner that `req` conflicts with.
fn conflict<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    req: &Lock,
) -> Result<Option<Lock>, NamespaceError> {
    let held = held(s, ino, req.flavor, None)?;
    // A lock lives only as long as its session holds the file open: the last release and
    // the end of a session (unmount, expired lease) drop it.
    debug_assert!(
        held.iter()
            .all(|h| matches!(s.open_rec(h.session, ino), Ok(Some(_)))),
        "inode {ino}: a lock outlived its session's open"
    );
    Ok(held.into_iter().find(|h| {
        (h.session, h.owner) != (req.session, req.owner)
            && h.start <= req.end
            && req.start <= h.end
            && (h.kind == LockKind::Exclusive || req.kind == LockKind::Exclusive)
    }))
}

/// flock locks always cover the whole file.
fn normalise(mut req: Lock) -> OpResult<Lock> {
    if req.flavor == LockFlavor::Flock {
        req.start = 0;
        req.end = u64::MAX;
    }
    if req.start > req.end {
        return Err(FsError::Invalid.into());
    }
    Ok(req)
}

pub(crate) fn set<S: Store + ?Sized>(s: &mut S, ino: Ino, req: Lock) -> OpResult<Response> {
    let req = normalise(req)?;
    if s.open_rec(req.session, ino)?.is_none() {
        return Err(FsError::BadHandle.into());
    }
    if req.kind != LockKind::Unlock && conflict(s, ino, &req)?.is_some() {
        return Err(FsError::WouldBlock.into());
    }
    let mut kept = Vec::new();
    for own in held(s, ino, req.flavor, Some((req.session, req.owner)))? {
        s.delete(Table::Locks, &key(ino, &own))?;
        if own.end < req.start || own.start > req.end {
            kept.push(own);
            continue;
        }
        if own.start < req.start {
            kept.push(Lock {
                end: req.start - 1,
                ..own
            });
        }
        if own.end > req.end {
            kept.push(Lock {
                start: req.end + 1,
                ..own
            });
        }
    }
    if req.kind != LockKind::Unlock {
        kept.push(req);
    }
    kept.sort_by_key(|l| l.start);
    // Merge neighbours of the same kind; kept pieces are disjoint, so only the new range can
    // touch them, and the merged lock takes the request's pid.
    let mut merged: Vec<Lock> = Vec::with_capacity(kept.len());
    for l in kept {
        match merged.last_mut() {
            Some(prev) if prev.kind == l.kind && prev.end.checked_add(1) == Some(l.start) => {
                prev.end = l.end;
                prev.pid = req.pid;
            }
            _ => merged.push(l),
        }
    }
    // An owner's locks stay sorted, disjoint and coalesced.
    debug_assert!(
        merged.windows(2).all(|w| w[0].end < w[1].start
            && (w[0].kind != w[1].kind || w[0].end.checked_add(1) != Some(w[1].start))),
        "inode {ino}: owner {}/{} holds overlapping or uncoalesced locks",
        req.session,
        req.owner
    );
    for l in &merged {
        let rec = LockRec {
            kind: l.kind,
            end: l.end,
            pid: l.pid,
        };
        s.put_rec(Table::Locks, &key(ino, l), &rec)?;
    }
    Ok(Response::Done)
}

/// `F_GETLK`: the first conflicting lock, or `None` if the request could be granted.
pub(crate) fn get<S: StoreRead + ?Sized>(s: &S, ino: Ino, req: Lock) -> OpResult<Response> {
    if req.kind == LockKind::Unlock {
        return Err(FsError::Invalid.into());
    }
    let req = normalise(req)?;
    s.need_inode(ino)?;
    Ok(Response::Lock(conflict(s, ino, &req)?.map(|h| LockInfo {
        kind: h.kind,
        start: h.start,
        end: h.end,
        pid: h.pid,
    })))
}

/// Drops every lock `session` holds on `ino` (its last open of the file went away).
pub(crate) fn drop_session_locks<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    session: u64,
) -> Result<(), NamespaceError> {
    for flavor in [LockFlavor::Flock, LockFlavor::Posix] {
        let p = prefix(ino, flavor).u64(session).done();
        for (k, _) in scan_prefix(s, Table::Locks, &p)? {
            s.delete(Table::Locks, &k)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FsError, Ino, LockFlavor, LockInfo, LockKind};

    fn lock(
        ns: &mut Ns,
        session: u64,
        ino: Ino,
        owner: u64,
        flavor: LockFlavor,
        kind: LockKind,
        range: (u64, u64),
    ) -> Result<(), FsError> {
        let mut c = ns.next(Op::SetLock {
            ino,
            owner,
            flavor,
            kind,
            start: range.0,
            end: range.1,
            pid: owner as u32,
        });
        c.session = session;
        ns.send(&c).map(|_| ())
    }

    fn getlk(ns: &Ns, ino: Ino, owner: u64, kind: LockKind, range: (u64, u64)) -> Option<LockInfo> {
        let q = Query::GetLock {
            ino,
            session: ns.session,
            owner,
            flavor: LockFlavor::Posix,
            kind,
            start: range.0,
            end: range.1,
        };
        match ns.q(q) {
            Ok(Response::Lock(l)) => l,
            other => panic!("{other:?}"),
        }
    }

    fn setup() -> (Ns, Ino, u64) {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        ns.cmd(Op::Open { ino: f }).unwrap();
        let s = ns.session;
        (ns, f, s)
    }

    #[test]
    fn flock_shared_and_exclusive() {
        use LockKind::*;
        let (mut ns, f, s) = setup();
        let fl = LockFlavor::Flock;
        lock(&mut ns, s, f, 1, fl, Shared, (0, 0)).unwrap();
        lock(&mut ns, s, f, 2, fl, Shared, (0, 0)).unwrap();
        assert_eq!(
            lock(&mut ns, s, f, 3, fl, Exclusive, (0, 0)),
            Err(FsError::WouldBlock)
        );
        lock(&mut ns, s, f, 2, fl, Unlock, (0, 0)).unwrap();
        // Upgrade by the only remaining holder.
        lock(&mut ns, s, f, 1, fl, Exclusive, (0, 0)).unwrap();
        assert_eq!(
            lock(&mut ns, s, f, 2, fl, Shared, (0, 0)),
            Err(FsError::WouldBlock)
        );
        // flock and fcntl locks do not see each other.
        lock(&mut ns, s, f, 2, LockFlavor::Posix, Exclusive, (0, 10)).unwrap();
    }

    #[test]
    fn posix_ranges_split_merge_and_conflict() {
        use LockKind::*;
        let (mut ns, f, s) = setup();
        let px = LockFlavor::Posix;
        lock(&mut ns, s, f, 1, px, Exclusive, (0, 99)).unwrap();
        lock(&mut ns, s, f, 1, px, Unlock, (40, 59)).unwrap();
        assert_eq!(getlk(&ns, f, 2, Exclusive, (40, 59)), None);
        let held = getlk(&ns, f, 2, Shared, (50, 70)).unwrap();
        assert_eq!((held.start, held.end, held.kind), (60, 99, Exclusive));
        lock(&mut ns, s, f, 2, px, Shared, (40, 59)).unwrap();
        assert_eq!(
            lock(&mut ns, s, f, 2, px, Shared, (30, 45)),
            Err(FsError::WouldBlock)
        );
        // Owner 1 fills the gap? No: owner 2 holds it. Owner 2 shares more, then merges.
        lock(&mut ns, s, f, 2, px, Unlock, (0, u64::MAX)).unwrap();
        lock(&mut ns, s, f, 1, px, Exclusive, (40, 59)).unwrap();
        let held = getlk(&ns, f, 2, Shared, (0, 0)).unwrap();
        assert_eq!((held.start, held.end), (0, 99));
        assert_eq!(
            lock(&mut ns, s, f, 1, px, Shared, (10, 5)),
            Err(FsError::Invalid)
        );
    }

    #[test]
    fn locks_need_an_open_and_die_with_the_last_release() {
        use LockKind::*;
        let (mut ns, f, s) = setup();
        let g = ns.create(ns.root(), "g");
        assert_eq!(
            lock(&mut ns, s, g, 1, LockFlavor::Posix, Shared, (0, 1)),
            Err(FsError::BadHandle)
        );
        lock(&mut ns, s, f, 1, LockFlavor::Posix, Exclusive, (0, 1)).unwrap();
        ns.cmd(Op::Release { ino: f }).unwrap();
        assert_eq!(getlk(&ns, f, 2, Exclusive, (0, 10)), None);
        // Another session conflicts with this one's locks until it expires.
        ns.cmd(Op::Open { ino: f }).unwrap();
        lock(&mut ns, s, f, 1, LockFlavor::Posix, Exclusive, (0, 1)).unwrap();
        let other = match ns.sys(Op::OpenSession {
            client: "b".into(),
            lease_ns: 1_000_000_000,
        }) {
            Ok(Response::Session { id, .. }) => id,
            r => panic!("{r:?}"),
        };
        let open = Command {
            session: other,
            seq: 1,
            seq_floor: 0,
            now_ns: ns.now,
            op: Op::Open { ino: f },
        };
        ns.send(&open).unwrap();
        assert_eq!(
            lock(&mut ns, other, f, 1, LockFlavor::Posix, Shared, (0, 0)),
            Err(FsError::WouldBlock)
        );
        ns.now += 2_000_000;
        ns.sys(Op::ExpireSession { session: s }).unwrap();
        lock(&mut ns, other, f, 1, LockFlavor::Posix, Shared, (0, 0)).unwrap();
    }
}
