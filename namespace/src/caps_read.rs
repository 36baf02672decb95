//! Reads of what another session holds exclusively. A session with an exclusive cap may
//! have changed an inode (or a directory's entries) in its mount without the leader knowing
//! yet (write-back, issue 11), so the leader must not answer a read of that inode from its
//! own state: it recalls the cap first (the holder sends what it buffered and gives the cap
//! back) and reads again. Shared caps are in no read's way.

use super::caps::{any_held, live_others};
use super::command::{Query, Reply, Response};
use super::store::StoreRead;
use crate::error::NamespaceError;
use std::collections::BTreeSet;
use tessera_proto::fs::Ino;
use tessera_proto::meta::CapHolder;

/// The inodes `q` read: the ones it names, and the ones its answer describes (a lookup's
/// child, a `readdirplus` page's entries).
fn read_inos(q: &Query, reply: &Reply) -> BTreeSet<Ino> {
    let mut inos: BTreeSet<Ino> = match q {
        Query::Lookup { parent, .. } => [*parent].into(),
        Query::GetAttr { ino }
        | Query::ReadDir { ino, .. }
        | Query::ReadLink { ino }
        | Query::GetXattr { ino, .. }
        | Query::ListXattr { ino }
        | Query::Layout { ino, .. }
        | Query::GetLock { ino, .. }
        | Query::StatFsAt { ino, .. } => [*ino].into(),
        _ => BTreeSet::new(),
    };
    match reply {
        Ok(Response::Attr(attr)) => {
            inos.insert(attr.ino);
        }
        Ok(Response::Entries(entries)) => {
            inos.extend(entries.iter().filter(|e| e.attr.is_some()).map(|e| e.ino))
        }
        _ => {}
    }
    inos
}

/// Exclusive caps of sessions other than `session` (the asker; 0 for the metaserver
/// itself, which every holder is in the way of) on what `q` read, answered `reply`, at
/// time `now`. Holders whose lease ran out are not in the way (their mounts stopped
/// trusting their caps, as for changes: `caps::in_the_way`).
pub fn exclusive_in_the_way<S: StoreRead + ?Sized>(
    store: &S,
    q: &Query,
    reply: &Reply,
    session: u64,
    now: i64,
) -> Result<Vec<CapHolder>, NamespaceError> {
    if !any_held(store)? {
        return Ok(Vec::new());
    }
    live_others(store, read_inos(q, reply), session, now, |h| h.exclusive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Op;
    use crate::testkit::Ns;

    fn session(ns: &mut Ns) -> u64 {
        match ns.sys(Op::OpenSession {
            client: "other".into(),
            lease_ns: 1_000_000,
        }) {
            Ok(Response::Session { id, .. }) => id,
            other => panic!("open session: {other:?}"),
        }
    }

    fn grant(ns: &mut Ns, session: u64, ino: Ino, exclusive: bool) {
        let mine = std::mem::replace(&mut ns.session, session);
        let reply = ns.cmd(Op::GrantCaps {
            inos: vec![ino],
            exclusive,
            children: false,
        });
        ns.session = mine;
        assert_eq!(reply, Ok(Response::Done));
    }

    /// Who is in the way of `session` asking `q`, as (ino, session) pairs.
    fn in_the_way(ns: &Ns, q: Query, session: u64) -> Vec<(Ino, u64)> {
        let reply = ns.q(q.clone());
        exclusive_in_the_way(&ns.store, &q, &reply, session, ns.now)
            .unwrap()
            .iter()
            .map(|h| (h.ino, h.session))
            .collect()
    }

    #[test]
    fn a_read_of_what_another_session_holds_exclusively_waits_for_it() {
        let mut ns = Ns::new();
        let (a, b, c) = (ns.session, session(&mut ns), session(&mut ns));
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        let f = ns.mkdir(d, "f");
        let lookup = |name: &str| Query::Lookup {
            parent: d,
            name: name.into(),
        };
        // Shared caps are in no read's way.
        grant(&mut ns, b, d, false);
        assert!(in_the_way(&ns, lookup("f"), a).is_empty());
        let mine = std::mem::replace(&mut ns.session, b);
        ns.cmd(Op::ReleaseCaps { inos: vec![d] }).unwrap();
        ns.session = mine;

        // b holds d exclusively: a lookup there, found or not, and a listing wait for b.
        grant(&mut ns, b, d, true);
        assert_eq!(in_the_way(&ns, lookup("f"), a), vec![(d, b)]);
        assert_eq!(in_the_way(&ns, lookup("nothing"), a), vec![(d, b)]);
        let list = Query::ReadDir {
            ino: d,
            after: 0,
            limit: 100,
            plus: false,
        };
        assert_eq!(in_the_way(&ns, list, a), vec![(d, b)]);
        // b's own reads, and reads elsewhere, are not.
        assert!(in_the_way(&ns, lookup("f"), b).is_empty());
        assert!(in_the_way(&ns, Query::GetAttr { ino: root }, a).is_empty());

        // c holds f exclusively: a lookup that finds f, and a readdirplus describing it,
        // wait for c too; a plain listing names f but describes nothing of it.
        grant(&mut ns, c, f, true);
        assert_eq!(in_the_way(&ns, lookup("f"), a), vec![(d, b), (f, c)]);
        let plus = Query::ReadDir {
            ino: d,
            after: 0,
            limit: 100,
            plus: true,
        };
        assert_eq!(in_the_way(&ns, plus, a), vec![(d, b), (f, c)]);
        assert_eq!(in_the_way(&ns, Query::GetAttr { ino: f }, b), vec![(f, c)]);

        // The metaserver's own reads (session 0) wait for every holder; a holder whose
        // lease ran out is in no one's way.
        assert_eq!(in_the_way(&ns, Query::GetAttr { ino: f }, 0), vec![(f, c)]);
        ns.now += 2_000_000;
        assert!(in_the_way(&ns, Query::GetAttr { ino: f }, 0).is_empty());
    }
}
