//! Debug-build check of stripe reference counts, run by the handlers that change them.
//!
//! A stripe's refcount is the number of slices, in any file, that name it. Recounting every
//! chunk of every file on each command would make debug builds quadratic, but a command only
//! changes the chunk records it touches, so the check can be local: from before to after the
//! command, each stripe's refcount must change by exactly the change in the number of slices
//! naming it in those records. In release builds `start` records nothing and `finish` checks
//! nothing (`cfg!(debug_assertions)` is a constant, so the code folds away).

use crate::chunk_codec::decode_slices;
use crate::state::Tables;
use crate::store::{StoreRead, Table};
use std::collections::BTreeMap;
use tessera_proto::fs::StripeId;

/// What a set of chunk records and the stripes they name looked like before a command.
#[derive(Debug, Default)]
pub(crate) struct RefAudit {
    keys: Vec<Vec<u8>>,
    /// Per stripe: its refcount, and the slices naming it in `keys`.
    before: BTreeMap<StripeId, (u64, i64)>,
}

/// Slices naming each stripe in the chunk records at `keys`; `None` if the store failed
/// (the command fails with it, so there is nothing to check).
fn slices_per_stripe<S: StoreRead + ?Sized>(
    s: &S,
    keys: &[Vec<u8>],
) -> Option<BTreeMap<StripeId, i64>> {
    let mut out = BTreeMap::new();
    for key in keys {
        let Some(bytes) = s.get(Table::Chunks, key).ok()? else {
            continue;
        };
        for slice in decode_slices(key, &bytes).ok()? {
            if let Some(r) = slice.data {
                *out.entry(r.stripe).or_insert(0) += 1;
            }
        }
    }
    Some(out)
}

fn refcount<S: StoreRead + ?Sized>(s: &S, id: &StripeId) -> Option<u64> {
    Some(s.stripe(id).ok()?.map_or(0, |r| r.refcount))
}

impl RefAudit {
    /// Records the chunk records at `keys()` and the refcounts of the stripes they name, plus
    /// those of `joining()` (stripes the command may add references to). The closures run
    /// in debug builds only.
    pub(crate) fn start<S: StoreRead + ?Sized>(
        s: &S,
        keys: impl FnOnce() -> Vec<Vec<u8>>,
        joining: impl FnOnce() -> Vec<StripeId>,
    ) -> RefAudit {
        if !cfg!(debug_assertions) {
            return RefAudit::default();
        }
        let keys = keys();
        let Some(slices) = slices_per_stripe(s, &keys) else {
            return RefAudit::default();
        };
        let mut before = BTreeMap::new();
        for id in slices.keys().copied().chain(joining()).collect::<Vec<_>>() {
            let Some(count) = refcount(s, &id) else {
                return RefAudit::default();
            };
            before.insert(id, (count, slices.get(&id).copied().unwrap_or(0)));
        }
        RefAudit { keys, before }
    }

    /// Asserts that every refcount moved by as many references as its slices did.
    pub(crate) fn finish<S: StoreRead + ?Sized>(self, s: &S) {
        if !cfg!(debug_assertions) || self.keys.is_empty() {
            return;
        }
        let Some(after) = slices_per_stripe(s, &self.keys) else {
            return;
        };
        for id in after.keys() {
            debug_assert!(
                self.before.contains_key(id),
                "stripe {id:?} gained a slice the command did not announce"
            );
        }
        for (id, (count_before, slices_before)) in &self.before {
            let Some(count_after) = refcount(s, id) else {
                return;
            };
            let slices_after = after.get(id).copied().unwrap_or(0);
            debug_assert_eq!(
                count_after as i64 - *count_before as i64,
                slices_after - slices_before,
                "stripe {id:?}: refcount {count_before} -> {count_after}, but the slices \
                 naming it went {slices_before} -> {slices_after}"
            );
        }
    }
}

/// Each check fires on the broken state it guards against (debug builds only: in release
/// the checks compile away and these tests would have nothing to observe).
#[cfg(test)]
#[cfg(debug_assertions)]
mod tests {
    use super::*;
    use crate::command::{Op, Query};
    use crate::state::{TablesMut, keys};
    use crate::store::Store;
    use crate::testkit::Ns;
    use tessera_proto::fs::{
        ChunkSlice, LockFlavor, LockKind, ShardId, ShardPlace, Slice, StripeInfo, StripeLayout,
        StripeRef,
    };

    /// A namespace with one file whose chunk 0 names one stripe; returns the file.
    fn file_with_a_stripe(ns: &mut Ns) -> (u64, StripeId) {
        let f = ns.create(ns.root(), "f");
        let id = StripeId([7; 32]);
        let layout = StripeLayout {
            k: 1,
            m: 1,
            shard_len: 10,
            data_len: 10,
            shards: (0..2)
                .map(|i| ShardPlace {
                    shard: ShardId([i; 32]),
                    server: u64::from(i),
                })
                .collect(),
        };
        let slice = Slice {
            offset: 0,
            len: 10,
            data: Some(StripeRef {
                stripe: id,
                offset: 0,
            }),
        };
        ns.cmd(Op::CommitSlice {
            ino: f,
            slices: vec![ChunkSlice { chunk: 0, slice }],
            stripes: vec![StripeInfo { id, layout }],
        })
        .unwrap();
        (f, id)
    }

    #[test]
    fn the_audit_passes_an_unlink_that_frees_the_data() {
        let mut ns = Ns::new();
        let (f, id) = file_with_a_stripe(&mut ns);
        let audit = RefAudit::start(&ns.store, || vec![keys::chunk(f, 0)], Vec::new);
        assert_eq!(audit.before.get(&id), Some(&(1, 1)));
        ns.cmd(Op::Unlink {
            parent: ns.root(),
            name: "f".into(),
        })
        .unwrap();
        audit.finish(&ns.store);
    }

    #[test]
    #[should_panic(expected = "refcount 1 -> 1")]
    fn the_audit_catches_a_slice_dropped_without_its_reference() {
        let mut ns = Ns::new();
        let (f, _) = file_with_a_stripe(&mut ns);
        let audit = RefAudit::start(&ns.store, || vec![keys::chunk(f, 0)], Vec::new);
        ns.store.delete(Table::Chunks, &keys::chunk(f, 0)).unwrap();
        audit.finish(&ns.store);
    }

    #[test]
    #[should_panic(expected = "drops a link with nlink 0")]
    fn unlinking_a_file_that_has_no_links_left_is_caught() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        ns.store.update_inode(f, |r| r.nlink = 0).unwrap();
        let _ = ns.cmd(Op::Unlink {
            parent: ns.root(),
            name: "f".into(),
        });
    }

    #[test]
    #[should_panic(expected = "a lock outlived its session's open")]
    fn a_lock_without_an_open_is_caught() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        ns.cmd(Op::Open { ino: f }).unwrap();
        ns.cmd(Op::SetLock {
            ino: f,
            owner: 1,
            flavor: LockFlavor::Posix,
            kind: LockKind::Exclusive,
            start: 0,
            end: 9,
            pid: 1,
        })
        .unwrap();
        ns.store
            .delete(Table::OpenFiles, &keys::open(ns.session, f))
            .unwrap();
        let _ = ns.q(Query::GetLock {
            ino: f,
            session: ns.session,
            owner: 2,
            flavor: LockFlavor::Posix,
            kind: LockKind::Shared,
            start: 0,
            end: 9,
        });
    }
}
