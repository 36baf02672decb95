//! `setattr`: permission bits, ownership, size (truncate/extend) and time stamps, atomically.
//!
//! ctime becomes the command's time whenever anything is set; a size change also sets mtime
//! (an explicit mtime in the same call wins, as it is applied after). Suid/sgid clearing on
//! chown or write is left to the kernel, which sends it as a mode change.

use super::acl;
use super::command::Response;
use super::data::{blocks_after, cut_chunks, need_regular};
use super::flags;
use super::records::InodeRec;
use super::reserve;
use super::state::{OpResult, Tables, TablesMut, counter};
use super::store::Store;
use tessera_proto::fs::{FILE_SIZE_MAX, FsError, Ino, SetAttr, SetTime, relatime_due};

pub(crate) fn setattr<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    set: &SetAttr,
    now: i64,
) -> OpResult<Response> {
    let rec = s.need_inode(ino)?;
    need_settable(&rec, set)?;
    let mut blocks = rec.blocks;
    let mut reserved = rec.reserved.clone();
    if let Some(size) = set.size {
        need_regular(rec.kind)?;
        if size > FILE_SIZE_MAX {
            return Err(FsError::FileTooLarge.into());
        }
        if size < rec.size {
            let lost = cut_chunks(s, ino, size, now)?;
            blocks = blocks_after(s, ino, rec.blocks, 0, lost)?;
            // Preallocation past the new end goes with it, as on ext4.
            let freed = reserve::take(&mut reserved, size, u64::MAX);
            s.add_counter(counter::RESERVED_BYTES, -(freed as i64))?;
        }
    }
    let changed = set.perm.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || set.size.is_some()
        || set.atime != SetTime::Omit
        || set.mtime != SetTime::Omit;
    if let Some(perm) = set.perm {
        acl::follow_chmod(s, ino, perm)?;
    }
    let rec = s.update_inode(ino, |r| {
        if let Some(perm) = set.perm {
            r.perm = perm & 0o7777;
        }
        if let Some(uid) = set.uid {
            r.uid = uid;
        }
        if let Some(gid) = set.gid {
            r.gid = gid;
        }
        if let Some(size) = set.size {
            r.size = size;
            r.mtime = now;
            r.blocks = blocks;
            r.reserved = reserved;
        }
        set_time(&mut r.atime, set.atime, now);
        set_time(&mut r.mtime, set.mtime, now);
        if changed {
            r.ctime = now;
        }
    })?;
    Ok(Response::Attr(rec.attr(ino)))
}

/// `EPERM` for any change to an immutable inode; for an append-only one, a change of its
/// owner, mode, size or an explicit time (Linux `may_setattr`; times set to "now" pass).
fn need_settable(rec: &InodeRec, set: &SetAttr) -> Result<(), FsError> {
    flags::need_mutable(rec)?;
    let explicit_time = matches!(set.atime, SetTime::At(_)) || matches!(set.mtime, SetTime::At(_));
    if set.perm.is_some()
        || set.uid.is_some()
        || set.gid.is_some()
        || set.size.is_some()
        || explicit_time
    {
        flags::need_unpinned(rec)?;
    }
    Ok(())
}

/// Records accesses (see `Op::Accessed`); inodes that no longer exist are skipped.
pub(crate) fn accessed<S: Store + ?Sized>(
    s: &mut S,
    inos: &[Ino],
    strict: bool,
    now: i64,
) -> OpResult<Response> {
    for &ino in inos {
        access(s, ino, now, strict, |atime| atime != now)?;
    }
    Ok(Response::Done)
}

/// Records accesses each at the time given with it (see `Op::AccessedAt`): never moves an
/// access time back.
pub(crate) fn accessed_at<S: Store + ?Sized>(
    s: &mut S,
    at: &[(Ino, i64)],
    strict: bool,
) -> OpResult<Response> {
    for &(ino, time) in at {
        access(s, ino, time, strict, |atime| atime < time)?;
    }
    Ok(Response::Done)
}

/// Sets `ino`'s access time to `time` if the access moves it (always if `strict`, else by
/// `relatime` judged at `time`) and `replaces` the time it has.
fn access<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    time: i64,
    strict: bool,
    replaces: impl Fn(i64) -> bool,
) -> OpResult<()> {
    let Some(rec) = s.inode(ino)? else {
        return Ok(());
    };
    let moves = strict || relatime_due(rec.atime, rec.mtime, rec.ctime, time);
    if moves && replaces(rec.atime) {
        s.update_inode(ino, |r| r.atime = time)?;
    }
    Ok(())
}

fn set_time(field: &mut i64, how: SetTime, now: i64) {
    match how {
        SetTime::Omit => {}
        SetTime::Now => *field = now,
        SetTime::At(t) => *field = t,
    }
}

#[cfg(test)]
mod tests {
    use crate::command::Op;
    use crate::testkit::Ns;
    use tessera_proto::fs::{FileKind, FsError, SetAttr, SetTime};

    #[test]
    fn relatime_moves_the_access_time_once_after_each_change_or_a_day() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let read = |ns: &mut Ns, strict| {
            ns.cmd(Op::Accessed {
                inos: vec![f, 9_999],
                strict,
            })
            .unwrap();
            ns.attr(f).unwrap()
        };
        // Made at the same time as its atime: the first read moves it, the second does not.
        let a = read(&mut ns, false);
        assert_eq!(a.atime_ns, ns.now);
        assert_eq!(read(&mut ns, false).atime_ns, a.atime_ns);
        // A change (here of the mode) makes the next read count again.
        let set = SetAttr {
            perm: Some(0o600),
            ..SetAttr::default()
        };
        ns.cmd(Op::SetAttr { ino: f, set }).unwrap();
        let b = read(&mut ns, false);
        assert_eq!(b.atime_ns, ns.now);
        assert!(b.ctime_ns < b.atime_ns, "an access leaves the change time");
        // A day later it moves again; strict always moves it.
        ns.now += 24 * 3600 * 1_000_000_000;
        assert_eq!(read(&mut ns, false).atime_ns, ns.now);
        assert_eq!(read(&mut ns, true).atime_ns, ns.now);
    }

    #[test]
    fn accesses_at_given_times_follow_relatime_at_that_time_and_only_move_forward() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let made = ns.attr(f).unwrap().ctime_ns;
        let read_at = |ns: &mut Ns, time: i64, strict| {
            ns.cmd(Op::AccessedAt {
                at: vec![(f, time), (9_999, time)],
                strict,
            })
            .unwrap();
            ns.attr(f).unwrap().atime_ns
        };
        // The first read after the change moves it to the mount's time, not the leader's.
        assert_eq!(read_at(&mut ns, made + 7, false), made + 7);
        assert_eq!(
            read_at(&mut ns, made + 9, false),
            made + 7,
            "read since the change"
        );
        // A late batch never moves it back, even with strictatime.
        assert_eq!(read_at(&mut ns, made + 3, true), made + 7);
        assert_eq!(read_at(&mut ns, made + 11, true), made + 11);
        let day = 24 * 3600 * 1_000_000_000;
        assert_eq!(read_at(&mut ns, made + 11 + day, false), made + 11 + day);
        assert_eq!(
            ns.attr(f).unwrap().ctime_ns,
            made,
            "an access leaves the change time"
        );
    }

    #[test]
    fn times_now_omit_and_set() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let t0 = ns.attr(f).unwrap();
        let set = SetAttr {
            atime: SetTime::At(-5),
            mtime: SetTime::Omit,
            ..SetAttr::default()
        };
        let a = Ns::attr_reply(ns.cmd(Op::SetAttr { ino: f, set })).unwrap();
        assert_eq!(
            (a.atime_ns, a.mtime_ns, a.ctime_ns),
            (-5, t0.mtime_ns, ns.now)
        );
        let set = SetAttr {
            mtime: SetTime::Now,
            ..SetAttr::default()
        };
        let a = Ns::attr_reply(ns.cmd(Op::SetAttr { ino: f, set })).unwrap();
        assert_eq!((a.atime_ns, a.mtime_ns, a.ctime_ns), (-5, ns.now, ns.now));
        // Nothing to change: not even ctime moves.
        let a = Ns::attr_reply(ns.cmd(Op::SetAttr {
            ino: f,
            set: SetAttr::default(),
        }))
        .unwrap();
        assert_eq!(a.ctime_ns, ns.now - 10);
    }

    #[test]
    fn mode_owner_and_truncate() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let set = SetAttr {
            perm: Some(0o104755),
            uid: Some(7),
            gid: Some(8),
            size: Some(4096),
            ..SetAttr::default()
        };
        let a = Ns::attr_reply(ns.cmd(Op::SetAttr { ino: f, set })).unwrap();
        assert_eq!((a.perm, a.uid, a.gid, a.size), (0o4755, 7, 8, 4096));
        assert_eq!((a.mtime_ns, a.ctime_ns), (ns.now, ns.now));
        let d = ns.mkdir(ns.root(), "d");
        let p = ns.mknod(ns.root(), "p", FileKind::Fifo).unwrap().ino;
        let size = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        let r = ns.cmd(Op::SetAttr {
            ino: d,
            set: size.clone(),
        });
        assert_eq!(r, Err(FsError::IsDir));
        let r = ns.cmd(Op::SetAttr {
            ino: p,
            set: size.clone(),
        });
        assert_eq!(r, Err(FsError::Invalid));
        let r = ns.cmd(Op::SetAttr { ino: 99, set: size });
        assert_eq!(r, Err(FsError::NotFound));
    }
}
