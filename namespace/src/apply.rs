//! The pure core: `apply(store, command) -> reply` and `query(store, query) -> reply`.
//!
//! Nothing here reads a clock, a random source or anything but the store, so every replica
//! that applies the same log to the same state ends with the same bytes. A command runs in an
//! overlay that is flushed only on success: a POSIX error leaves the tables as they were
//! (apart from the remembered reply).

use super::command::{Command, Op, Query, Reply, Response, SYSTEM_SESSION};
use super::nodes::{NewInode, create_root};
use super::overlay::{Overlay, Writes, flush};
use super::records::SessionRec;
use super::state::{OpError, OpResult, Tables, TablesMut, keys};
use super::store::{Store, StoreRead, Table};
use super::{
    acl, attr, caps, data, delegate, dir, dump, flags, lock, quota, read, rename, reserve, session,
    snapshot, snapshot_copy, stripes, trash, xattr,
};
use crate::error::NamespaceError;
use tessera_proto::fs::{FileKind, FsError, Ino, ROOT_INO};

/// Applies one command. `Err` means the store failed or holds undecodable bytes: the caller
/// must stop applying (and abort the surrounding transaction), not reply to the client.
pub fn apply<S: Store + ?Sized>(store: &mut S, cmd: &Command) -> Result<Reply, NamespaceError> {
    if cmd.session != SYSTEM_SESSION {
        let Some(sess) = store.session(cmd.session)? else {
            return Ok(Err(FsError::Stale));
        };
        if cmd.seq != 0 {
            let key = keys::request(cmd.session, cmd.seq);
            if let Some(first) = store.rec::<Reply>(Table::Requests, &key)? {
                return Ok(first);
            }
            // Its reply, if there was one, was forgotten: applying again could do it twice.
            if cmd.seq < sess.seq_floor {
                return Ok(Err(FsError::Stale));
            }
        }
    }

    match &cmd.op {
        Op::Batch { ops } => apply_batch(store, cmd, ops),
        _ => apply_one(store, cmd),
    }
}

/// Applies one command that is not a batch, after `apply`'s checks.
fn apply_one<S: Store + ?Sized>(store: &mut S, cmd: &Command) -> Result<Reply, NamespaceError> {
    let (mut reply, mut writes) = match run_in_overlay(&*store, cmd)? {
        Ran::Done(reply, writes) => (reply, writes),
        Ran::Recall(holders) => return Ok(Ok(Response::Recall { holders })),
    };
    let mut copies = Writes::new();
    if reply.is_ok() && !snapshot::is_snapshot_op(&cmd.op) {
        // What a snapshot still being copied holds is copied before it changes, and the
        // command runs again on top of that copy (`snapshot_copy.rs`).
        let changed = snapshot_copy::changed(&*store, &writes)?;
        if !changed.is_empty() {
            let mut cow = Overlay::new(&*store);
            let preserved = match snapshot_copy::preserve(&mut cow, &changed, cmd.now_ns) {
                Ok(any) => any,
                Err(OpError::Meta(e)) => return Err(e),
                Err(_) => false,
            };
            if preserved {
                let again = match run_in_overlay(&cow, cmd)? {
                    Ran::Done(reply, writes) => (reply, writes),
                    Ran::Recall(holders) => return Ok(Ok(Response::Recall { holders })),
                };
                (reply, writes) = again;
                if reply.is_ok() {
                    copies = cow.into_writes();
                }
            }
        }
    }
    // Snapshots are read-only to every command but the snapshot commands.
    if reply.is_ok() && !snapshot::is_snapshot_op(&cmd.op) {
        match snapshot::refuse_changes(&*store, &mut writes) {
            Ok(()) => {}
            Err(OpError::Fs(e)) => {
                writes.clear();
                copies.clear();
                reply = Err(e);
            }
            Err(OpError::Meta(e)) => return Err(e),
            Err(OpError::Recall(holders)) => return Ok(Ok(Response::Recall { holders })),
        }
    }
    // Not applied, and not remembered: the leader proposes it again after the recall.
    let holders = caps::in_the_way(&*store, &writes, cmd.session, cmd.now_ns)?;
    if !holders.is_empty() {
        return Ok(Ok(Response::Recall { holders }));
    }
    flush(store, copies)?;
    flush(store, writes)?;

    if cmd.session != SYSTEM_SESSION && cmd.seq != 0 {
        remember(store, cmd, &reply)?;
    }
    Ok(reply)
}

/// [`Op::Batch`]: each operation applied as a command of its own (same session and time, not
/// deduplicated on its own: the batch is) on top of the ones before it, in an overlay that
/// reaches the store only if no operation had to wait for a recall.
fn apply_batch<S: Store + ?Sized>(
    store: &mut S,
    cmd: &Command,
    ops: &[Op],
) -> Result<Reply, NamespaceError> {
    let mut batch = Overlay::new(&*store);
    let mut replies = Vec::with_capacity(ops.len());
    for op in ops {
        // Refused before anything else about it, as the model does.
        if matches!(op, Op::Batch { .. }) {
            replies.push(Err(FsError::Invalid));
            continue;
        }
        // An operation before may have ended the session.
        if cmd.session != SYSTEM_SESSION && batch.session(cmd.session)?.is_none() {
            replies.push(Err(FsError::Stale));
            continue;
        }
        let one = Command {
            session: cmd.session,
            seq: 0,
            seq_floor: 0,
            now_ns: cmd.now_ns,
            op: op.clone(),
        };
        match apply_one(&mut batch, &one)? {
            Ok(Response::Recall { holders }) => return Ok(Ok(Response::Recall { holders })),
            reply => replies.push(reply),
        }
    }
    let writes = batch.into_writes();
    flush(store, writes)?;
    let reply = Ok(Response::Batch(replies));
    if cmd.session != SYSTEM_SESSION && cmd.seq != 0 {
        remember(store, cmd, &reply)?;
    }
    Ok(reply)
}

/// What running a command in an overlay gave.
enum Ran {
    /// Its reply, and its writes (none when it failed).
    Done(Reply, Writes),
    Recall(Vec<tessera_proto::meta::CapHolder>),
}

fn run_in_overlay<S: StoreRead + ?Sized>(base: &S, cmd: &Command) -> Result<Ran, NamespaceError> {
    let mut overlay = Overlay::new(base);
    Ok(match run(&mut overlay, cmd) {
        Ok(resp) => Ran::Done(Ok(resp), overlay.into_writes()),
        Err(OpError::Fs(e)) => Ran::Done(Err(e), Writes::new()),
        Err(OpError::Meta(e)) => return Err(e),
        Err(OpError::Recall(holders)) => Ran::Recall(holders),
    })
}

/// The reply of a command that was applied before (a log entry replayed after a restart):
/// its remembered reply if it carried `(session, seq)` and the reply is still kept, `ESTALE`
/// otherwise. Changes nothing.
pub fn replayed<S: StoreRead + ?Sized>(store: &S, cmd: &Command) -> Result<Reply, NamespaceError> {
    if cmd.seq == 0 {
        return Ok(Err(FsError::Stale));
    }
    Ok(store
        .rec::<Reply>(Table::Requests, &keys::request(cmd.session, cmd.seq))?
        .unwrap_or(Err(FsError::Stale)))
}

/// Stores the reply under `(session, seq)` and forgets replies below the client's floor.
fn remember<S: Store + ?Sized>(
    store: &mut S,
    cmd: &Command,
    reply: &Reply,
) -> Result<(), NamespaceError> {
    // The command may have ended its own session (CloseSession): nothing to remember then.
    let Some(mut sess) = store.session(cmd.session)? else {
        return Ok(());
    };
    if cmd.seq_floor > sess.seq_floor {
        let from = keys::request(cmd.session, sess.seq_floor);
        let to = keys::request(cmd.session, cmd.seq_floor);
        for (key, _) in store.scan(Table::Requests, &from, Some(&to), usize::MAX)? {
            store.delete(Table::Requests, &key)?;
        }
        sess = SessionRec {
            seq_floor: cmd.seq_floor,
            ..sess
        };
        store.put_rec(Table::Sessions, &keys::session(cmd.session), &sess)?;
    }
    store.put_rec(Table::Requests, &keys::request(cmd.session, cmd.seq), reply)
}

/// Runs the command, keeping directory quotas in step with what it changed (`quota.rs`).
fn run<S: Store + ?Sized>(s: &mut S, cmd: &Command) -> OpResult<Response> {
    let track = quota::Track::start(s, &cmd.op)?;
    let resp = dispatch(s, cmd)?;
    if let Some(track) = track {
        track.finish(s)?;
    }
    Ok(resp)
}

fn dispatch<S: Store + ?Sized>(s: &mut S, cmd: &Command) -> OpResult<Response> {
    dispatch_op(s, cmd, &cmd.op, None)
}

/// Runs `op` of `cmd`; a create makes inode `as_ino` when given (`Op::MakeNodeAs`).
fn dispatch_op<S: Store + ?Sized>(
    s: &mut S,
    cmd: &Command,
    op: &Op,
    as_ino: Option<Ino>,
) -> OpResult<Response> {
    let now = cmd.now_ns;
    // Operations that belong to a client session (opens, locks) refuse the system session.
    let client = || -> OpResult<u64> {
        match cmd.session {
            SYSTEM_SESSION => Err(FsError::Stale.into()),
            id => Ok(id),
        }
    };
    match op {
        Op::Format { uid, gid, perm } => {
            if s.inode(ROOT_INO)?.is_some() {
                return Err(FsError::Exists.into());
            }
            Ok(Response::Attr(
                create_root(s, *uid, *gid, *perm, now)?.attr(ROOT_INO),
            ))
        }
        Op::Mknod {
            parent,
            name,
            kind,
            perm,
            uid,
            gid,
            rdev,
            open,
        } => {
            dir::check_mknod_kind(*kind)?;
            let open_in = if *open { Some(client()?) } else { None };
            let new = NewInode {
                kind: *kind,
                perm: *perm,
                uid: *uid,
                gid: *gid,
                rdev: *rdev,
                target: Vec::new(),
                ino: as_ino,
            };
            dir::make(s, *parent, name, new, open_in, now)
        }
        Op::Mkdir {
            parent,
            name,
            perm,
            uid,
            gid,
        } => {
            let new = NewInode {
                kind: FileKind::Directory,
                perm: *perm,
                uid: *uid,
                gid: *gid,
                rdev: 0,
                target: Vec::new(),
                ino: as_ino,
            };
            dir::make(s, *parent, name, new, None, now)
        }
        Op::Symlink {
            parent,
            name,
            target,
            uid,
            gid,
        } => {
            let new = NewInode {
                kind: FileKind::Symlink,
                perm: 0o777,
                uid: *uid,
                gid: *gid,
                rdev: 0,
                target: target.clone(),
                ino: as_ino,
            };
            dir::make(s, *parent, name, new, None, now)
        }
        Op::Link {
            ino,
            new_parent,
            new_name,
        } => dir::link(s, *ino, *new_parent, new_name, now),
        Op::Unlink { parent, name } => dir::unlink(s, *parent, name, now),
        Op::Rmdir { parent, name } => dir::rmdir(s, *parent, name, now),
        Op::Rename {
            parent,
            name,
            new_parent,
            new_name,
            mode,
        } => rename::rename(s, *parent, name, *new_parent, new_name, *mode, now),
        Op::SetAttr { ino, set } => attr::setattr(s, *ino, set, now),
        Op::SetFlags { ino, flags } => flags::set(s, *ino, *flags, now),
        Op::Reserve { ino, offset, len } => reserve::reserve(s, *ino, *offset, *len, now),
        Op::MakeTmpfile {
            parent,
            perm,
            umask,
            uid,
            gid,
        } => {
            let new = NewInode {
                kind: FileKind::Regular,
                perm: *perm,
                uid: *uid,
                gid: *gid,
                rdev: 0,
                target: Vec::new(),
                ino: as_ino,
            };
            acl::make_unnamed(s, *parent, new, *umask, client()?, now)
        }
        Op::SetXattr {
            ino,
            name,
            value,
            mode,
        } => xattr::set(s, *ino, name, value, *mode, now),
        Op::RemoveXattr { ino, name } => xattr::remove(s, *ino, name, now),
        Op::Open { ino } => {
            let rec = session::open(s, client()?, *ino)?;
            Ok(Response::Attr(rec.attr(*ino)))
        }
        Op::Release { ino } => session::release(s, client()?, *ino, now),
        Op::ReleaseMany { inos } => session::release_many(s, client()?, inos, now),
        Op::Accessed { inos, strict } => attr::accessed(s, inos, *strict, now),
        Op::AccessedAt { at, strict } => attr::accessed_at(s, at, *strict),
        Op::MakeNode {
            parent,
            name,
            kind,
            perm,
            umask,
            uid,
            gid,
            rdev,
            open,
        } => {
            let dir = *kind == FileKind::Directory;
            if !dir {
                dir::check_mknod_kind(*kind)?;
            }
            let open_in = match (*open, dir) {
                (false, _) => None,
                (true, false) => Some(client()?),
                (true, true) => return Err(FsError::Invalid.into()),
            };
            let new = NewInode {
                kind: *kind,
                perm: *perm,
                uid: *uid,
                gid: *gid,
                rdev: if dir { 0 } else { *rdev },
                target: Vec::new(),
                ino: as_ino,
            };
            acl::make(s, *parent, name, new, *umask, open_in, now)
        }
        Op::OpenToRead { ino, strict } => {
            session::open(s, client()?, *ino)?;
            attr::accessed(s, &[*ino], *strict, now)?;
            Ok(Response::Attr(s.need_inode(*ino)?.attr(*ino)))
        }
        Op::CommitSlice {
            ino,
            slices,
            stripes,
        } => data::commit(s, *ino, slices, stripes, now),
        Op::SetLock {
            ino,
            owner,
            flavor,
            kind,
            start,
            end,
            pid,
        } => {
            let req = lock::Lock {
                session: client()?,
                owner: *owner,
                flavor: *flavor,
                kind: *kind,
                start: *start,
                end: *end,
                pid: *pid,
            };
            lock::set(s, *ino, req)
        }
        Op::OpenSession { client, lease_ns } => session::open_session(s, client, *lease_ns, now),
        Op::RenewSession { lease_ns } => session::renew(s, client()?, *lease_ns, now),
        Op::CloseSession => session::end(s, client()?, now),
        Op::ExpireSession { session } => session::expire(s, *session, now),
        Op::GcClaim { stripe } => data::gc_claim(s, stripe),
        Op::GcDone { stripe } => data::gc_done(s, stripe),
        Op::MoveShard {
            stripe,
            index,
            from,
            to,
        } => stripes::move_shard(s, stripe, *index, *from, *to),
        // Only the metaserver itself loads a backup (for `tessera load`, after its checks).
        Op::SetTrashRetention { seconds } => trash::set_retention(s, *seconds),
        Op::RestoreTrash { ino, to } => trash::restore(s, *ino, to.clone(), now),
        Op::PurgeTrash { inos, expired_only } => trash::purge(s, inos, *expired_only, now),
        Op::GrantCaps {
            inos,
            exclusive,
            children,
        } => caps::grant(s, client()?, inos, *exclusive, *children),
        Op::ReleaseCaps { inos } => caps::release(s, client()?, inos),
        Op::SetQuota { ino, bytes, inodes } => quota::set(s, *ino, *bytes, *inodes),
        Op::UnsetQuota { ino } => quota::unset(s, *ino),
        Op::SnapshotCreate { dir, name, budget } => {
            snapshot::create(s, *dir, name, u64::from(*budget), now)
        }
        Op::SnapshotStep { job, budget } => {
            snapshot_copy::step(s, *job, u64::from(*budget), now).map(Response::Flag)
        }
        Op::SnapshotDelete { dir, name } => snapshot::delete(s, *dir, name, now),
        Op::SnapshotRestore {
            from,
            to_parent,
            to_name,
        } => snapshot::restore(s, *from, *to_parent, to_name, now),
        Op::MakeNodeAs { ino, node } => {
            if as_ino.is_some() || !matches!(**node, Op::MakeNode { .. } | Op::Symlink { .. }) {
                return Err(FsError::Invalid.into());
            }
            delegate::take(s, client()?, *ino)?;
            dispatch_op(s, cmd, node, Some(*ino))
        }
        Op::DelegateInos { count } => delegate::delegate(s, client()?, *count),
        // Run by `apply`, and refused inside a batch, before it gets here.
        Op::Batch { .. } => Err(FsError::Invalid.into()),
        Op::LoadImage { image } => match cmd.session {
            SYSTEM_SESSION => dump::load(s, image),
            _ => Err(FsError::NotPermitted.into()),
        },
    }
}

/// Answers a read. Like `apply`, `Err` is a store failure, not a POSIX error.
pub fn query<S: StoreRead + ?Sized>(store: &S, q: &Query) -> Result<Reply, NamespaceError> {
    let result = match q {
        Query::Lookup { parent, name } => read::lookup(store, *parent, name),
        Query::GetAttr { ino } => read::getattr(store, *ino),
        Query::ReadDir {
            ino,
            after,
            limit,
            plus,
        } => read::readdir(store, *ino, *after, *limit, *plus),
        Query::ReadLink { ino } => read::readlink(store, *ino),
        Query::GetXattr { ino, name } => xattr::get(store, *ino, name),
        Query::ListXattr { ino } => xattr::list(store, *ino),
        Query::StatFs {
            total_bytes,
            total_files,
        } => read::statfs(store, *total_bytes, *total_files),
        Query::Layout { ino, first, last } => data::layout(store, *ino, *first, *last),
        Query::GetLock {
            ino,
            session,
            owner,
            flavor,
            kind,
            start,
            end,
        } => {
            let req = lock::Lock {
                session: *session,
                owner: *owner,
                flavor: *flavor,
                kind: *kind,
                start: *start,
                end: *end,
                pid: 0,
            };
            lock::get(store, *ino, req)
        }
        Query::GcQueue { limit } => data::gc_queue(store, *limit),
        Query::Stripes { after, limit } => stripes::list(store, after.as_ref(), *limit),
        Query::RefcountCheck { limit } => stripes::refcount_check(store, *limit),
        Query::AclsUsed => acl::used(store).map(Response::Flag),
        Query::Trash {
            after,
            limit,
            totals,
        } => trash::list(store, *after, *limit, *totals),
        Query::CapHolders { inos } => Ok(caps::query_holders(store, inos)?),
        Query::Quotas => quota::list(store),
        Query::StatFsAt {
            ino,
            total_bytes,
            total_files,
        } => quota::statfs_at(store, *ino, *total_bytes, *total_files),
        Query::Snapshots { dir } => snapshot::list(store, *dir),
    };
    match result {
        Ok(resp) => Ok(Ok(resp)),
        Err(OpError::Fs(e)) => Ok(Err(e)),
        Err(OpError::Meta(e)) => Err(e),
        // Only commands change caps, so only they can find one in the way.
        Err(OpError::Recall(holders)) => Ok(Ok(Response::Recall { holders })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::digest;
    use crate::testkit::Ns;

    #[test]
    fn replayed_command_returns_its_first_reply_without_applying_twice() {
        let mut ns = Ns::new();
        let root = ns.root();
        let mkdir = ns.next(Op::Mkdir {
            parent: root,
            name: "d".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        });
        let first = ns.send(&mkdir);
        assert!(first.is_ok());
        let state = digest(&ns.store).unwrap();
        assert_eq!(ns.send(&mkdir), first);
        assert_eq!(digest(&ns.store).unwrap(), state);
        assert_eq!(ns.names(root), vec!["d"]);

        // A failed command is remembered too, even once the failure no longer holds.
        let rmdir_missing = ns.next(Op::Rmdir {
            parent: root,
            name: "e".into(),
        });
        assert_eq!(ns.send(&rmdir_missing), Err(FsError::NotFound));
        ns.mkdir(root, "e");
        assert_eq!(ns.send(&rmdir_missing), Err(FsError::NotFound));
        assert_eq!(ns.names(root), vec!["d", "e"]);
    }

    #[test]
    fn seq_floor_forgets_acknowledged_replies() {
        let mut ns = Ns::new();
        let root = ns.root();
        let old = ns.next(Op::Mkdir {
            parent: root,
            name: "a".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        });
        ns.send(&old).unwrap();
        let mut newer = ns.next(Op::Mkdir {
            parent: root,
            name: "b".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        });
        newer.seq_floor = newer.seq;
        ns.send(&newer).unwrap();
        assert_eq!(
            ns.store.scan(Table::Requests, &[], None, 10).unwrap().len(),
            1
        );
        assert_eq!(ns.send(&old), Err(FsError::Stale));
        assert!(ns.send(&newer).is_ok());
        assert_eq!(ns.names(root), vec!["a", "b"]);
    }

    #[test]
    fn failed_command_changes_nothing_but_its_reply_record() {
        let mut ns = Ns::new();
        let root = ns.root();
        let a = ns.mkdir(root, "a");
        ns.mkdir(a, "b");
        let before = digest(&ns.store).unwrap();
        let sys = Command {
            session: SYSTEM_SESSION,
            seq: 0,
            seq_floor: 0,
            now_ns: ns.now + 1,
            op: Op::Rename {
                parent: root,
                name: "a".into(),
                new_parent: a,
                new_name: "x".into(),
                mode: tessera_proto::fs::RenameMode::Replace,
            },
        };
        assert_eq!(ns.send(&sys), Err(FsError::Invalid));
        assert_eq!(digest(&ns.store).unwrap(), before);
    }

    #[test]
    fn format_once_and_unknown_sessions_are_stale() {
        let mut ns = Ns::new();
        let r = ns.sys(Op::Format {
            uid: 0,
            gid: 0,
            perm: 0o755,
        });
        assert_eq!(r, Err(FsError::Exists));
        ns.session = 12345;
        assert_eq!(ns.mkdir_r(1, b"x"), Err(FsError::Stale));
    }

    #[test]
    fn corrupt_bytes_stop_the_state_machine_instead_of_panicking() {
        let mut ns = Ns::new();
        ns.store
            .put(Table::Inodes, &keys::inode(ROOT_INO), &[1, 0xff])
            .unwrap();
        assert!(matches!(
            query(&ns.store, &Query::GetAttr { ino: ROOT_INO }),
            Err(NamespaceError::Corrupt { .. })
        ));
        let cmd = ns.next(Op::Mkdir {
            parent: ROOT_INO,
            name: "d".into(),
            perm: 0,
            uid: 0,
            gid: 0,
        });
        assert!(apply(&mut ns.store, &cmd).is_err());
    }
}
