//! Capabilities: leases a client session holds on inodes, so a mount may cache (shared) or
//! change locally (exclusive) what the namespace says about them. They are replicated state,
//! like opens and locks, so a new leader knows every grant the old one made (the reasoning
//! is in docs/design-notes.md, "Capabilities").
//!
//! - `caps[(ino, session)] = CapRec` answers "who holds caps on this inode?";
//!   `session_caps[(session, ino)]` answers "what does this session hold?" when it ends.
//! - A grant conflicts with another session's exclusive cap, and an exclusive grant with
//!   any other session's cap.
//! - Every other command is checked after it ran, against the inodes it changed (the
//!   overlay's writes: an inode record, a directory's entries, an inode's xattrs or data):
//!   another session's cap on one of them is in the way. The command then changes nothing
//!   and answers [`Response::Recall`]; the leader recalls those caps and proposes it again
//!   once they are given back or their sessions ended (a mount that does not answer loses
//!   its caps with its session, when the lease runs out). The command's own session is
//!   never in its own way: a mount updates what it cached after its own changes.
//! - Ending a session drops its caps. Freeing an inode does not: whoever cached it is
//!   recalled first, like for any change, and gives the cap back itself.

use super::codec::{decode, key_u64};
use super::overlay::Writes;
use super::records::{CapRec, DentryRec, InodeRec};
use super::state::{OpError, OpResult, Tables, TablesMut};
use super::store::{INODE_TABLES, Store, StoreRead, Table, prefix_end, scan_prefix};
use crate::error::NamespaceError;
use std::collections::BTreeSet;
use tessera_proto::fs::Ino;
use tessera_proto::meta::{CapHolder, Response};

fn cap_key(ino: Ino, session: u64) -> Vec<u8> {
    [ino.to_be_bytes(), session.to_be_bytes()].concat()
}

fn session_key(session: u64, ino: Ino) -> Vec<u8> {
    [session.to_be_bytes(), ino.to_be_bytes()].concat()
}

/// Every cap held on `ino`.
pub(crate) fn holders<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
) -> Result<Vec<CapHolder>, NamespaceError> {
    let mut out = Vec::new();
    for (key, value) in scan_prefix(s, Table::Caps, &ino.to_be_bytes())? {
        let rec: CapRec = decode(Table::Caps, &key, &value)?;
        out.push(CapHolder {
            ino,
            session: key_u64(Table::Caps, &key, 8)?,
            exclusive: rec.exclusive,
        });
    }
    Ok(out)
}

/// Most entries of one directory a `GrantCaps` with `children` covers.
const MAX_CHILDREN: usize = 10_000;

/// The entries of directory `dir` (none if it has more than [`MAX_CHILDREN`]).
fn children<S: StoreRead + ?Sized>(s: &S, dir: Ino) -> Result<Vec<Ino>, NamespaceError> {
    let prefix = dir.to_be_bytes();
    let end = prefix_end(&prefix);
    let rows = s.scan(Table::Dentries, &prefix, end.as_deref(), MAX_CHILDREN + 1)?;
    if rows.len() > MAX_CHILDREN {
        return Ok(Vec::new());
    }
    rows.iter()
        .map(|(key, value)| Ok(decode::<DentryRec>(Table::Dentries, key, value)?.ino))
        .collect()
}

/// `GrantCaps`: caps on `inos` (and with `children` shared ones on their entries) for
/// `session`, or the caps of other sessions in the way.
pub(crate) fn grant<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    inos: &[Ino],
    exclusive: bool,
    with_children: bool,
) -> OpResult<Response> {
    let mut asked: Vec<(Ino, bool)> = inos.iter().map(|&i| (i, exclusive)).collect();
    if with_children {
        for &ino in inos {
            asked.extend(children(s, ino)?.into_iter().map(|c| (c, false)));
        }
    }
    let mut in_the_way = Vec::new();
    let mut grant = Vec::new();
    for (ino, exclusive) in asked {
        if s.inode(ino)?.is_none() {
            continue;
        }
        let mut keep_exclusive = exclusive;
        for h in holders(s, ino)? {
            if h.session == session {
                // Asking for shared while holding exclusive does not give exclusive up.
                keep_exclusive |= h.exclusive;
            } else if exclusive || h.exclusive {
                in_the_way.push(h);
            }
        }
        grant.push((ino, keep_exclusive));
    }
    if !in_the_way.is_empty() {
        return Err(OpError::Recall(in_the_way));
    }
    for (ino, exclusive) in grant {
        s.put_rec(Table::Caps, &cap_key(ino, session), &CapRec { exclusive })?;
        s.put(Table::SessionCaps, &session_key(session, ino), &[])?;
    }
    Ok(Response::Done)
}

/// `ReleaseCaps`: drops what `session` holds on `inos`.
pub(crate) fn release<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
    inos: &[Ino],
) -> OpResult<Response> {
    for &ino in inos {
        s.delete(Table::Caps, &cap_key(ino, session))?;
        s.delete(Table::SessionCaps, &session_key(session, ino))?;
    }
    Ok(Response::Done)
}

/// Drops every cap of a session that ends.
pub(crate) fn drop_session<S: Store + ?Sized>(
    s: &mut S,
    session: u64,
) -> Result<(), NamespaceError> {
    for (key, _) in scan_prefix(s, Table::SessionCaps, &session.to_be_bytes())? {
        let ino = key_u64(Table::SessionCaps, &key, 8)?;
        s.delete(Table::Caps, &cap_key(ino, session))?;
        s.delete(Table::SessionCaps, &key)?;
    }
    Ok(())
}

/// `Query::CapHolders`.
pub(crate) fn query_holders<S: StoreRead + ?Sized>(
    s: &S,
    inos: &[Ino],
) -> Result<Response, NamespaceError> {
    let mut out = Vec::new();
    for &ino in inos {
        out.extend(holders(s, ino)?);
    }
    Ok(Response::Caps(out))
}

/// The inodes whose cached state `writes` would change: keys of covered tables whose value
/// differs from what `base` holds (rewriting a record unchanged is no change).
fn changed_inodes<S: StoreRead + ?Sized>(
    base: &S,
    writes: &Writes,
) -> Result<BTreeSet<Ino>, NamespaceError> {
    let mut out = BTreeSet::new();
    for ((table, key), value) in writes {
        if !INODE_TABLES.contains(table) {
            continue;
        }
        let ino = key_u64(*table, key, 0)?;
        if out.contains(&ino) {
            continue;
        }
        if differs(
            *table,
            key,
            base.get(*table, key)?.as_deref(),
            value.as_deref(),
        )? {
            out.insert(ino);
        }
    }
    Ok(out)
}

/// Whether a row changing from `old` to `new` changes what a holder may cache. An inode
/// record's count of opens is in no cache: opens and releases of other sessions are in no
/// one's way. (A holder answering a recall reports the opens it made without asking the
/// leader, `client/src/cap_cache.rs`; were those reports in the way of other holders' caps,
/// two holders reporting at once would wait for each other.)
fn differs(
    table: Table,
    key: &[u8],
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, NamespaceError> {
    match (table, old, new) {
        (Table::Inodes, Some(old), Some(new)) if old != new => {
            let old = InodeRec::decode(key, old)?;
            let new = InodeRec::decode(key, new)?;
            Ok(InodeRec {
                opens: old.opens,
                ..new
            } != old)
        }
        _ => Ok(old != new),
    }
}

/// Caps of other sessions on what `writes` (of a command of `session`, at time `now`)
/// would change. Not in the way: sessions the command itself ends (an expiry must not wait
/// for the session it expires), and sessions whose lease ran out by `now` (their mounts
/// stopped trusting their caps; waiting for them could wait on a queued expiry forever).
pub(crate) fn in_the_way<S: StoreRead + ?Sized>(
    base: &S,
    writes: &Writes,
    session: u64,
    now: i64,
) -> Result<Vec<CapHolder>, NamespaceError> {
    if !any_held(base)? {
        return Ok(Vec::new());
    }
    let ending = |id: u64| {
        writes
            .get(&(Table::Sessions, id.to_be_bytes().to_vec()))
            .is_some_and(Option::is_none)
    };
    live_others(base, changed_inodes(base, writes)?, session, now, |h| {
        !ending(h.session)
    })
}

/// Whether any session holds any cap (most clusters: none, and nothing needs looking at).
pub(crate) fn any_held<S: StoreRead + ?Sized>(s: &S) -> Result<bool, NamespaceError> {
    Ok(!s.scan(Table::Caps, &[], None, 1)?.is_empty())
}

/// The caps `keep` selects on `inos` of sessions other than `session` whose lease has not
/// run out by `now`.
pub(crate) fn live_others<S: StoreRead + ?Sized>(
    s: &S,
    inos: BTreeSet<Ino>,
    session: u64,
    now: i64,
    keep: impl Fn(&CapHolder) -> bool,
) -> Result<Vec<CapHolder>, NamespaceError> {
    let mut out = Vec::new();
    for ino in inos {
        for h in holders(s, ino)? {
            if h.session == session || !keep(&h) {
                continue;
            }
            if s.session(h.session)?.is_some_and(|r| r.lease_until > now) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::command::{Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{FsError, Ino};
    use tessera_proto::meta::CapHolder;

    /// A second client session in the same namespace.
    fn other_session(ns: &mut Ns) -> u64 {
        match ns.sys(Op::OpenSession {
            client: "other".into(),
            lease_ns: 1_000_000,
        }) {
            Ok(Response::Session { id, .. }) => id,
            other => panic!("open session: {other:?}"),
        }
    }

    /// Sends `op` as `session`.
    fn as_session(ns: &mut Ns, session: u64, op: Op) -> crate::command::Reply {
        let mine = std::mem::replace(&mut ns.session, session);
        let reply = ns.cmd(op);
        ns.session = mine;
        reply
    }

    fn grant(ns: &mut Ns, session: u64, ino: Ino, exclusive: bool) -> crate::command::Reply {
        let inos = vec![ino];
        let children = false;
        as_session(
            ns,
            session,
            Op::GrantCaps {
                inos,
                exclusive,
                children,
            },
        )
    }

    fn holders(ns: &Ns, ino: Ino) -> Vec<CapHolder> {
        match ns.q(Query::CapHolders { inos: vec![ino] }) {
            Ok(Response::Caps(h)) => h,
            other => panic!("cap holders: {other:?}"),
        }
    }

    fn recall_of(reply: crate::command::Reply) -> Vec<(Ino, u64)> {
        match reply {
            Ok(Response::Recall { holders }) => {
                holders.iter().map(|h| (h.ino, h.session)).collect()
            }
            other => panic!("expected a recall, got {other:?}"),
        }
    }

    #[test]
    fn shared_caps_coexist_and_exclusive_ones_do_not() {
        let mut ns = Ns::new();
        let (a, b) = (ns.session, other_session(&mut ns));
        let d = ns.mkdir(ns.root(), "d");
        assert_eq!(grant(&mut ns, a, d, false), Ok(Response::Done));
        assert_eq!(grant(&mut ns, b, d, false), Ok(Response::Done));
        assert_eq!(holders(&ns, d).len(), 2);
        // Exclusive for a while b shares: b is in the way, and nothing changed.
        assert_eq!(recall_of(grant(&mut ns, a, d, true)), vec![(d, b)]);
        assert!(holders(&ns, d).iter().all(|h| !h.exclusive));
        as_session(&mut ns, b, Op::ReleaseCaps { inos: vec![d] }).unwrap();
        assert_eq!(grant(&mut ns, a, d, true), Ok(Response::Done));
        // Now b may not even share; a asking for shared keeps its exclusive cap.
        assert_eq!(recall_of(grant(&mut ns, b, d, false)), vec![(d, a)]);
        assert_eq!(grant(&mut ns, a, d, false), Ok(Response::Done));
        let held = holders(&ns, d);
        assert_eq!(held.len(), 1);
        assert!(held[0].exclusive && held[0].session == a);
        // A missing inode is skipped, not an error.
        assert_eq!(grant(&mut ns, b, 999_999, false), Ok(Response::Done));
        assert!(holders(&ns, 999_999).is_empty());
    }

    #[test]
    fn a_change_under_another_sessions_cap_waits_for_the_recall_and_changes_nothing() {
        let mut ns = Ns::new();
        let (a, b) = (ns.session, other_session(&mut ns));
        let d = ns.mkdir(ns.root(), "d");
        grant(&mut ns, b, d, false).unwrap();

        // a's create in d would change d's entries, which b caches.
        let create = ns.next(Op::Mkdir {
            parent: d,
            name: "x".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        });
        assert_eq!(recall_of(ns.send(&create)), vec![(d, b)]);
        assert!(ns.names(d).is_empty());
        // Not remembered: the same command, sent again once b gave the cap back, applies.
        as_session(&mut ns, b, Op::ReleaseCaps { inos: vec![d] }).unwrap();
        assert!(ns.send(&create).is_ok());
        assert_eq!(ns.names(d), vec!["x"]);

        // b's own changes are not in its way, and a change elsewhere is no one's business.
        grant(&mut ns, b, d, false).unwrap();
        let mkdir = |name: &str| Op::Mkdir {
            parent: d,
            name: name.into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        };
        assert!(matches!(
            as_session(&mut ns, b, mkdir("y")),
            Ok(Response::Attr(_))
        ));
        ns.mkdir(ns.root(), "elsewhere");
        // A failed command changes nothing, so it is answered at once.
        assert_eq!(as_session(&mut ns, a, mkdir("y")), Err(FsError::Exists));
    }

    #[test]
    fn a_cap_on_a_file_covers_its_attributes_and_xattrs() {
        let mut ns = Ns::new();
        let b = other_session(&mut ns);
        let f = ns.create(ns.root(), "f");
        grant(&mut ns, b, f, false).unwrap();
        let chmod = Op::SetAttr {
            ino: f,
            set: tessera_proto::fs::SetAttr {
                perm: Some(0o600),
                ..Default::default()
            },
        };
        assert_eq!(recall_of(ns.cmd(chmod)), vec![(f, b)]);
        let setxattr = Op::SetXattr {
            ino: f,
            name: b"user.k".to_vec(),
            value: b"v".to_vec(),
            mode: tessera_proto::fs::XattrMode::Upsert,
        };
        assert_eq!(recall_of(ns.cmd(setxattr)), vec![(f, b)]);
    }

    #[test]
    fn opens_and_releases_are_in_no_ones_way_but_the_unlink_of_an_open_file_is() {
        let mut ns = Ns::new();
        let b = other_session(&mut ns);
        let f = ns.create(ns.root(), "f");
        grant(&mut ns, b, f, false).unwrap();
        // a's open and release change f's count of opens only: b is not recalled.
        assert!(matches!(ns.cmd(Op::Open { ino: f }), Ok(Response::Attr(_))));
        assert_eq!(ns.cmd(Op::Release { ino: f }), Ok(Response::Done));
        // b's own opens (what it reports on a recall) need no one either.
        as_session(&mut ns, b, Op::Open { ino: f }).unwrap();
        // The unlink changes the link count b caches: b is recalled, f keeps its name.
        let unlink = Op::Unlink {
            parent: ns.root(),
            name: "f".into(),
        };
        assert_eq!(recall_of(ns.cmd(unlink.clone())), vec![(f, b)]);
        assert_eq!(ns.names(ns.root()), vec!["f"]);
        // Given back, the unlink applies and b's open keeps f as an orphan until released.
        as_session(&mut ns, b, Op::ReleaseCaps { inos: vec![f] }).unwrap();
        assert_eq!(ns.cmd(unlink), Ok(Response::Done));
        assert!(ns.names(ns.root()).is_empty());
        assert!(ns.attr(f).is_ok());
        as_session(&mut ns, b, Op::Release { ino: f }).unwrap();
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
    }

    #[test]
    fn a_grant_with_children_covers_the_entries_of_the_directory() {
        let mut ns = Ns::new();
        let b = other_session(&mut ns);
        let d = ns.mkdir(ns.root(), "d");
        let (f, g) = (ns.create(d, "f"), ns.mkdir(d, "g"));
        let grant = Op::GrantCaps {
            inos: vec![d],
            exclusive: true,
            children: true,
        };
        as_session(&mut ns, b, grant).unwrap();
        assert!(holders(&ns, d)[0].exclusive);
        assert!(!holders(&ns, f)[0].exclusive && !holders(&ns, g)[0].exclusive);
        let chmod = Op::SetAttr {
            ino: g,
            set: tessera_proto::fs::SetAttr {
                perm: Some(0o700),
                ..Default::default()
            },
        };
        assert_eq!(recall_of(ns.cmd(chmod)), vec![(g, b)]);
    }

    #[test]
    fn a_session_whose_lease_ran_out_is_in_no_ones_way() {
        let mut ns = Ns::new();
        let b = other_session(&mut ns);
        let d = ns.mkdir(ns.root(), "d");
        grant(&mut ns, b, d, false).unwrap();
        ns.now += 10_000_000;
        assert!(matches!(
            ns.cmd(Op::Rmdir {
                parent: ns.root(),
                name: "d".into()
            }),
            Ok(Response::Done)
        ));
    }

    #[test]
    fn an_ending_session_drops_its_caps_and_is_not_in_its_own_way() {
        let mut ns = Ns::new();
        let b = other_session(&mut ns);
        let d = ns.mkdir(ns.root(), "d");
        let f = ns.create(d, "f");
        grant(&mut ns, b, d, true).unwrap();
        grant(&mut ns, b, f, false).unwrap();
        // b opens f, and f loses its name (b's own change): an orphan b holds a cap on.
        as_session(&mut ns, b, Op::Open { ino: f }).unwrap();
        as_session(
            &mut ns,
            b,
            Op::Unlink {
                parent: d,
                name: "f".into(),
            },
        )
        .unwrap();
        // Expiring b frees the orphan, which b's cap covers: not in the way of b's own end.
        ns.now += 10_000_000;
        assert_eq!(ns.sys(Op::ExpireSession { session: b }), Ok(Response::Done));
        assert!(holders(&ns, d).is_empty() && holders(&ns, f).is_empty());
        assert_eq!(ns.attr(f), Err(FsError::NotFound));
    }

    fn mkdir_op(parent: Ino, name: &str) -> Op {
        Op::Mkdir {
            parent,
            name: name.into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    fn batch_replies(reply: crate::command::Reply) -> Vec<Result<(), FsError>> {
        match reply {
            Ok(Response::Batch(replies)) => replies.into_iter().map(|r| r.map(|_| ())).collect(),
            other => panic!("expected a batch reply, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_applies_in_order_each_with_its_own_reply_and_once() {
        let mut ns = Ns::new();
        let root = ns.root();
        let batch = ns.next(Op::Batch {
            ops: vec![
                mkdir_op(root, "a"),
                mkdir_op(root, "a"),
                Op::Batch { ops: Vec::new() },
                mkdir_op(root, "b"),
                Op::Rmdir {
                    parent: root,
                    name: "a".into(),
                },
            ],
        });
        let first = ns.send(&batch);
        assert_eq!(
            batch_replies(first.clone()),
            vec![
                Ok(()),
                Err(FsError::Exists),
                Err(FsError::Invalid),
                Ok(()),
                Ok(())
            ]
        );
        assert_eq!(ns.names(root), vec!["b"]);
        // Sent again (a retry after a lost reply): the first reply, nothing applied twice.
        assert_eq!(ns.send(&batch), first);
        assert_eq!(ns.names(root), vec!["b"]);
    }

    #[test]
    fn a_batch_that_one_cap_stands_in_the_way_of_applies_nothing_until_it_is_back() {
        let mut ns = Ns::new();
        let (a, b) = (ns.session, other_session(&mut ns));
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        grant(&mut ns, b, d, false).unwrap();
        let batch = ns.next(Op::Batch {
            ops: vec![mkdir_op(root, "first"), mkdir_op(d, "second")],
        });
        assert_eq!(recall_of(ns.send(&batch)), vec![(d, b)]);
        assert_eq!(ns.names(root), vec!["d"]);
        assert!(ns.names(d).is_empty());
        as_session(&mut ns, b, Op::ReleaseCaps { inos: vec![d] }).unwrap();
        assert_eq!(ns.session, a);
        assert_eq!(batch_replies(ns.send(&batch)), vec![Ok(()), Ok(())]);
        assert_eq!(ns.names(root), vec!["d", "first"]);
        assert_eq!(ns.names(d), vec!["second"]);
    }
}
