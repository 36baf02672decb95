//! Preallocation (`fallocate` mode 0 and KEEP_SIZE) reserves capacity, as on ext4.
//!
//! Each inode keeps the byte ranges it preallocated that hold no data yet
//! (`InodeRec::reserved`, disjoint, in order), and the namespace their total in a counter
//! (`RESERVED_BYTES`). Laying any slice over a range (data, or a hole from PUNCH_HOLE or
//! ZERO_RANGE) takes that part out, as does truncating below it or freeing the inode; so
//! the total is exactly the preallocated bytes not yet written. `statfs` counts it as used,
//! so a later preallocation sees it taken, and the leader's placement holds that much room
//! back from writes that are not into a reservation (see `chunk_registry.rs`).

use super::chunk_codec::decode_slices;
use super::chunk_map::{ChunkMap, RefChanges};
use super::command::Response;
use super::data::{disjoint, need_regular};
use super::flags;
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, StoreRead, Table};
use crate::error::NamespaceError;
use tessera_proto::fs::{CHUNK_SIZE, FILE_SIZE_MAX, FsError, Ino};

/// Most separate reserved ranges one file keeps (each costs bytes in its inode record); a
/// preallocation that would need more is refused with ENOSPC.
pub(crate) const MAX_RANGES: usize = 1024;

/// `Reserve`: adds `offset..offset + len`, less what already holds data or is reserved, to
/// the file's reserved ranges.
pub(crate) fn reserve<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    offset: u64,
    len: u64,
    now: i64,
) -> OpResult<Response> {
    let rec = s.need_inode(ino)?;
    need_regular(rec.kind)?;
    flags::need_mutable(&rec)?;
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= FILE_SIZE_MAX)
        .ok_or(FsError::FileTooLarge)?;
    if len == 0 {
        return Err(FsError::Invalid.into());
    }
    let mut ranges = rec.reserved.clone();
    let mut added = 0;
    let mut from = offset;
    for (a, b) in data_runs(s, ino, offset, end)?
        .into_iter()
        .chain([(end, end)])
    {
        if a > from {
            added += add(&mut ranges, from, a);
        }
        from = from.max(b);
    }
    if ranges.len() > MAX_RANGES {
        return Err(FsError::NoSpace.into());
    }
    s.add_counter(counter::RESERVED_BYTES, added as i64)?;
    let rec = s.update_inode(ino, |r| {
        r.reserved = ranges;
        r.ctime = now;
    })?;
    Ok(Response::Attr(rec.attr(ino)))
}

/// File bytes preallocated and not written yet, across all inodes (what the leader's
/// placement keeps room for).
pub fn reserved_bytes<S: StoreRead + ?Sized>(s: &S) -> Result<u64, NamespaceError> {
    s.counter(counter::RESERVED_BYTES)
}

/// Runs of `a..b` of the file that hold data (absolute offsets, in order, merged).
fn data_runs<S: Store + ?Sized>(
    s: &S,
    ino: Ino,
    a: u64,
    b: u64,
) -> Result<Vec<(u64, u64)>, NamespaceError> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for index in a / CHUNK_SIZE..=(b - 1) / CHUNK_SIZE {
        let key = keys::chunk(ino, index);
        let Some(bytes) = s.get(Table::Chunks, &key)? else {
            continue;
        };
        let mut slices = decode_slices(&key, &bytes)?;
        if !disjoint(&slices) {
            let flat = ChunkMap::from_slices(slices, &mut RefChanges::default());
            slices = flat.into_slices();
        }
        let base = index * CHUNK_SIZE;
        for sl in slices.iter().filter(|sl| sl.data.is_some()) {
            let (from, to) = ((base + sl.offset).max(a), (base + sl.end()).min(b));
            if from >= to {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.1 >= from => last.1 = last.1.max(to),
                _ => runs.push((from, to)),
            }
        }
    }
    Ok(runs)
}

/// Adds `a..b` to disjoint ordered `ranges`; returns the bytes that were not in them yet.
pub(crate) fn add(ranges: &mut Vec<(u64, u64)>, a: u64, b: u64) -> u64 {
    let before: u64 = ranges.iter().map(|(x, y)| y - x).sum();
    let (mut lo, mut hi) = (a, b);
    let mut kept = Vec::with_capacity(ranges.len() + 1);
    for &(x, y) in ranges.iter() {
        if y < lo || x > hi {
            kept.push((x, y));
        } else {
            lo = lo.min(x);
            hi = hi.max(y);
        }
    }
    kept.push((lo, hi));
    kept.sort_unstable();
    *ranges = kept;
    let after: u64 = ranges.iter().map(|(x, y)| y - x).sum();
    after - before
}

/// Takes `a..b` out of `ranges`; returns the bytes removed.
pub(crate) fn take(ranges: &mut Vec<(u64, u64)>, a: u64, b: u64) -> u64 {
    let mut removed = 0;
    let mut kept = Vec::with_capacity(ranges.len() + 1);
    for &(x, y) in ranges.iter() {
        let (from, to) = (x.max(a), y.min(b));
        if from >= to {
            kept.push((x, y));
            continue;
        }
        removed += to - from;
        if x < from {
            kept.push((x, from));
        }
        if to < y {
            kept.push((to, y));
        }
    }
    *ranges = kept;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Op;
    use crate::testkit::Ns;
    use tessera_proto::fs::SetAttr;

    #[test]
    fn ranges_add_and_take_exactly() {
        let mut r = Vec::new();
        assert_eq!(add(&mut r, 10, 20), 10);
        assert_eq!(add(&mut r, 30, 40), 10);
        assert_eq!(add(&mut r, 15, 35), 10);
        assert_eq!(r, vec![(10, 40)]);
        assert_eq!(add(&mut r, 40, 50), 10);
        assert_eq!(r, vec![(10, 50)]);
        assert_eq!(take(&mut r, 20, 30), 10);
        assert_eq!(r, vec![(10, 20), (30, 50)]);
        assert_eq!(take(&mut r, 0, 100), 30);
        assert!(r.is_empty());
        assert_eq!(take(&mut r, 0, 100), 0);
    }

    fn reserved(ns: &Ns) -> u64 {
        crate::state::Tables::counter(&ns.store, counter::RESERVED_BYTES).unwrap()
    }

    fn prealloc(ns: &mut Ns, ino: Ino, offset: u64, len: u64) {
        ns.cmd(Op::Reserve { ino, offset, len }).unwrap();
    }

    #[test]
    fn reservations_count_until_written_truncated_or_freed() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        prealloc(&mut ns, f, 0, 1 << 20);
        assert_eq!(reserved(&ns), 1 << 20);
        // Again over the same range and beyond: only the new part counts.
        prealloc(&mut ns, f, 1 << 19, 1 << 20);
        assert_eq!(reserved(&ns), 3 << 19);
        // A hole laid over part of it (punch) takes that part out.
        ns.cmd(Op::CommitSlice {
            ino: f,
            slices: vec![tessera_proto::fs::ChunkSlice {
                chunk: 0,
                slice: tessera_proto::fs::Slice {
                    offset: 0,
                    len: 1 << 19,
                    data: None,
                },
            }],
            stripes: vec![],
        })
        .unwrap();
        assert_eq!(reserved(&ns), 1 << 20);
        let cut = SetAttr {
            size: Some(1 << 20),
            ..SetAttr::default()
        };
        ns.cmd(Op::SetAttr { ino: f, set: cut }).unwrap();
        assert_eq!(reserved(&ns), 1 << 20, "truncating up leaves it");
        let cut = SetAttr {
            size: Some(3 << 18),
            ..SetAttr::default()
        };
        ns.cmd(Op::SetAttr { ino: f, set: cut }).unwrap();
        assert_eq!(reserved(&ns), 1 << 18);
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        assert_eq!(reserved(&ns), 0);
    }
}
