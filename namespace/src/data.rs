//! File contents as the namespace sees them: chunk slice lists, stripe reference counts and
//! the GC queue.
//!
//! A stripe's refcount is the number of slices (in any file) that name it. It changes only
//! inside the apply that adds or drops such a slice, so it is exact. At zero the stripe is
//! queued for GC but stays `Live`: a later commit of the same content (same id, since ids are
//! content addresses) simply revives it. A GC worker first claims it (`Deleting`), after
//! which commits naming it get `EAGAIN` until the worker reports the shards gone.

use super::audit::RefAudit;
use super::chunk_codec::{decode_slices, encode_slices};
use super::chunk_map::{ChunkMap, RefChanges};
use super::codec::{corrupt, decode, key_u64};
use super::command::{GcItem, Response};
use super::flags;
use super::records::{BLOCKS_UNCOUNTED, ChunkRec, DATA_BLOCK, StripeRec, StripeState};
use super::reserve;
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, StoreRead, Table, prefix_end};
use crate::error::NamespaceError;
use std::collections::{BTreeMap, BTreeSet};
use tessera_proto::fs::{
    CHUNK_SIZE, ChunkLayout, ChunkSlice, FILE_SIZE_MAX, FileKind, FileLayout, FsError, Ino, Slice,
    StripeId, StripeInfo, StripeLayout,
};

/// `EISDIR` for directories, `EINVAL` for other non-regular files.
pub(crate) fn need_regular(kind: FileKind) -> Result<(), FsError> {
    match kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(FsError::IsDir),
        _ => Err(FsError::Invalid),
    }
}

/// Drops every byte at or past `size`: whole chunks past it lose all slices, the chunk
/// holding `size` has its slices cut short. Released slices drop their stripe references.
/// Returns the data blocks the file lost (see `InodeRec::blocks`).
pub(crate) fn cut_chunks<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    size: u64,
    now: i64,
) -> Result<u64, NamespaceError> {
    let mut lost_blocks = 0;
    let first_whole = size.div_ceil(CHUNK_SIZE);
    let end = prefix_end(&keys::inode(ino));
    let audit = RefAudit::start(
        s,
        || {
            let from = keys::chunk(ino, size / CHUNK_SIZE);
            let rows = s.scan(Table::Chunks, &from, end.as_deref(), usize::MAX);
            rows.map(|r| r.into_iter().map(|(k, _)| k).collect())
                .unwrap_or_default()
        },
        Vec::new,
    );
    for (key, value) in s.scan(
        Table::Chunks,
        &keys::chunk(ino, first_whole),
        end.as_deref(),
        usize::MAX,
    )? {
        let chunk: ChunkRec = decode(Table::Chunks, &key, &value)?;
        lost_blocks += record_blocks(&chunk.slices);
        for slice in &chunk.slices {
            release(s, slice, now)?;
        }
        s.delete(Table::Chunks, &key)?;
    }
    let cut = size % CHUNK_SIZE;
    let key = keys::chunk(ino, size / CHUNK_SIZE);
    let chunk = match cut {
        0 => None,
        _ => s.rec::<ChunkRec>(Table::Chunks, &key)?,
    };
    let Some(chunk) = chunk else {
        audit.finish(s);
        return Ok(lost_blocks);
    };
    let was_disjoint = disjoint(&chunk.slices);
    let blocks_before = record_blocks(&chunk.slices);
    let mut kept = Vec::with_capacity(chunk.slices.len());
    for mut slice in chunk.slices {
        if slice.offset >= cut {
            release(s, &slice, now)?;
        } else {
            slice.len = slice.len.min(cut - slice.offset);
            kept.push(slice);
        }
    }
    // Cutting keeps the order, so runs stay disjoint (a record from before lay-over, in
    // commit order, stays in commit order until a commit flattens it).
    debug_assert!(!was_disjoint || disjoint(&kept), "cut made runs overlap");
    lost_blocks += blocks_before.saturating_sub(record_blocks(&kept));
    if kept.is_empty() {
        s.delete(Table::Chunks, &key)?;
    } else {
        s.put_rec(Table::Chunks, &key, &ChunkRec { slices: kept })?;
    }
    audit.finish(s);
    Ok(lost_blocks)
}

/// Data blocks of disjoint runs in offset order: every `DATA_BLOCK` a run with data touches,
/// each counted once (two runs may share a block at their edges; holes count for none).
pub(crate) fn data_blocks(runs: &[Slice]) -> u64 {
    let mut total = 0;
    let mut counted_to = 0;
    for run in runs.iter().filter(|r| r.data.is_some() && r.len > 0) {
        let first = (run.offset / DATA_BLOCK).max(counted_to);
        let end = run.end().div_ceil(DATA_BLOCK);
        if end > first {
            total += end - first;
            counted_to = end;
        }
    }
    total
}

/// Data blocks of a stored slice list, flattening a list from before lay-over (in commit
/// order, later slices shadowing earlier ones) first.
fn record_blocks(slices: &[Slice]) -> u64 {
    if disjoint(slices) {
        return data_blocks(slices);
    }
    let flat = ChunkMap::from_slices(slices.to_vec(), &mut RefChanges::default());
    data_blocks(&flat.into_slices())
}

/// An inode's data blocks after a change that added `gained` and removed `lost`; a record
/// from before blocks were counted (`BLOCKS_UNCOUNTED`) is counted in full instead, from the
/// chunk records as they are now.
pub(crate) fn blocks_after<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    before: u64,
    gained: u64,
    lost: u64,
) -> Result<u64, NamespaceError> {
    if before != BLOCKS_UNCOUNTED {
        return Ok(before.saturating_add(gained).saturating_sub(lost));
    }
    let end = prefix_end(&keys::inode(ino));
    let mut total = 0u64;
    for (key, value) in s.scan(
        Table::Chunks,
        &keys::chunk(ino, 0),
        end.as_deref(),
        usize::MAX,
    )? {
        total = total.saturating_add(record_blocks(&decode_slices(&key, &value)?));
    }
    Ok(total)
}

/// Whether `slices` are non-empty runs in offset order that do not overlap and stay inside
/// the chunk: the shape of every record written since commits lay slices over.
pub(crate) fn disjoint(slices: &[Slice]) -> bool {
    slices.iter().all(|s| s.len > 0 && s.end() <= CHUNK_SIZE)
        && slices.windows(2).all(|w| w[0].end() <= w[1].offset)
}

fn release<S: Store + ?Sized>(s: &mut S, slice: &Slice, now: i64) -> Result<(), NamespaceError> {
    match slice.data {
        Some(r) => decref(s, &r.stripe, now),
        None => Ok(()),
    }
}

fn decref<S: Store + ?Sized>(s: &mut S, id: &StripeId, now: i64) -> Result<(), NamespaceError> {
    let mut rec = s.stripe(id)?.ok_or(NamespaceError::Invariant {
        what: "a slice references a missing stripe",
        ino: 0,
    })?;
    // The slice giving up its reference was counted, and GC never claims a referenced stripe.
    debug_assert!(
        rec.refcount > 0,
        "stripe {id:?}: a reference dropped below zero"
    );
    debug_assert_eq!(
        rec.state,
        StripeState::Live,
        "stripe {id:?}: referenced while deleting"
    );
    rec.refcount = rec.refcount.saturating_sub(1);
    if rec.refcount == 0 {
        rec.queued_at = Some(now);
        s.put_rec(Table::GcQueue, &keys::gc(now, id), &())?;
    }
    s.put_rec(Table::Stripes, &keys::stripe(id), &rec)
}

/// Adds a reference to a stripe, creating its row from `known` (layouts sent with the
/// command) if the metaserver has not seen it.
pub(crate) fn incref<S: Store + ?Sized>(
    s: &mut S,
    id: &StripeId,
    known: &[StripeInfo],
) -> OpResult<StripeRec> {
    let mut rec = match s.stripe(id)? {
        Some(rec) if rec.state == StripeState::Deleting => return Err(FsError::WouldBlock.into()),
        Some(rec) => rec,
        None => {
            let layout = known
                .iter()
                .find(|info| info.id == *id)
                .map(|info| info.layout.clone())
                .ok_or(FsError::Invalid)?;
            check_layout(&layout)?;
            let rec = StripeRec {
                layout,
                refcount: 0,
                state: StripeState::Live,
                queued_at: None,
            };
            s.add_counter(
                counter::STORED_BYTES,
                rec.stored_bytes().min(i64::MAX as u64) as i64,
            )?;
            rec
        }
    };
    // Only an unreferenced stripe waits in the GC queue.
    debug_assert!(
        rec.queued_at.is_none() || rec.refcount == 0,
        "stripe {id:?}: queued for GC with {} references",
        rec.refcount
    );
    if let Some(at) = rec.queued_at.take() {
        s.delete(Table::GcQueue, &keys::gc(at, id))?;
    }
    rec.refcount += 1;
    s.put_rec(Table::Stripes, &keys::stripe(id), &rec)?;
    Ok(rec)
}

fn check_layout(layout: &StripeLayout) -> Result<(), FsError> {
    let shards = usize::from(layout.k) + usize::from(layout.m);
    let capacity = layout.shard_len.saturating_mul(u64::from(layout.k));
    if layout.k == 0 || layout.shards.len() != shards || layout.data_len > capacity {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// `CommitSlice`: lays each slice over its chunk (the parts of older slices it covers are
/// cut away, see `chunk_map`), takes a stripe reference per slice, grows the size to cover
/// the new bytes and sets mtime and ctime. Each chunk record is read and written once per
/// commit, however many of its slices the commit carries.
pub(crate) fn commit<S: Store + ?Sized>(
    s: &mut S,
    ino: Ino,
    slices: &[ChunkSlice],
    stripes: &[StripeInfo],
    now: i64,
) -> OpResult<Response> {
    let inode = s.need_inode(ino)?;
    need_regular(inode.kind)?;
    let first = slices
        .iter()
        .map(|cs| {
            cs.chunk
                .saturating_mul(CHUNK_SIZE)
                .saturating_add(cs.slice.offset)
        })
        .min();
    if let Some(from) = first {
        flags::need_writable_from(&inode, from)?;
    }
    let audit = RefAudit::start(
        s,
        || {
            let indexes: BTreeSet<u64> = slices.iter().map(|cs| cs.chunk).collect();
            indexes.into_iter().map(|i| keys::chunk(ino, i)).collect()
        },
        || {
            let data = slices.iter().filter_map(|cs| cs.slice.data);
            data.map(|r| r.stripe).collect()
        },
    );
    let mut size = inode.size;
    let mut chunks: BTreeMap<u64, ChunkMap> = BTreeMap::new();
    let mut changes = RefChanges::default();
    let mut blocks_before = 0;
    for cs in slices {
        let slice = cs.slice;
        if slice.len == 0 || slice.end() > CHUNK_SIZE {
            return Err(FsError::Invalid.into());
        }
        let file_end = cs
            .chunk
            .checked_mul(CHUNK_SIZE)
            .and_then(|start| start.checked_add(slice.end()))
            .filter(|&end| end <= FILE_SIZE_MAX)
            .ok_or(FsError::FileTooLarge)?;
        if let Some(r) = slice.data {
            let rec = incref(s, &r.stripe, stripes)?;
            if r.offset.saturating_add(slice.len) > rec.layout.data_len {
                return Err(FsError::Invalid.into());
            }
        }
        let map = match chunks.entry(cs.chunk) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let key = keys::chunk(ino, cs.chunk);
                let old = match s.get(Table::Chunks, &key)? {
                    Some(bytes) => decode_slices(&key, &bytes)?,
                    None => Vec::new(),
                };
                let map = ChunkMap::from_slices(old, &mut changes);
                blocks_before += data_blocks(&map.to_slices());
                e.insert(map)
            }
        };
        map.lay(slice, &mut changes);
        size = size.max(file_end);
    }
    let mut blocks_now = 0;
    for (index, map) in chunks {
        let runs = map.into_slices();
        debug_assert!(
            disjoint(&runs),
            "chunk {index} of inode {ino}: runs overlap"
        );
        blocks_now += data_blocks(&runs);
        let bytes = encode_slices(&runs);
        s.put(Table::Chunks, &keys::chunk(ino, index), &bytes)?;
    }
    // Gains first: a stripe both split and covered elsewhere never drops to zero on the way.
    for id in &changes.gained {
        incref(s, id, &[])?;
    }
    for slice in &changes.lost {
        release(s, slice, now)?;
    }
    let blocks = blocks_after(s, ino, inode.blocks, blocks_now, blocks_before)?;
    // Whatever the commit lays (data or holes) is no longer a preallocated, unwritten range.
    let mut reserved = inode.reserved.clone();
    if !reserved.is_empty() {
        let mut written = 0;
        for cs in slices {
            let from = cs.chunk * CHUNK_SIZE + cs.slice.offset;
            written += reserve::take(&mut reserved, from, from + cs.slice.len);
        }
        s.add_counter(counter::RESERVED_BYTES, -(written as i64))?;
    }
    let rec = s.update_inode(ino, |r| {
        r.size = size;
        r.mtime = now;
        r.ctime = now;
        r.blocks = blocks;
        r.reserved = reserved;
    })?;
    audit.finish(s);
    Ok(Response::Attr(rec.attr(ino)))
}

/// The slices of chunks `first..=last` of a file and the stripes they name.
pub(crate) fn layout<S: StoreRead + ?Sized>(
    s: &S,
    ino: Ino,
    first: u64,
    last: u64,
) -> OpResult<Response> {
    let inode = s.need_inode(ino)?;
    need_regular(inode.kind)?;
    if first > last {
        return Err(FsError::Invalid.into());
    }
    let end = match last.checked_add(1) {
        Some(next) => Some(keys::chunk(ino, next)),
        None => prefix_end(&keys::inode(ino)),
    };
    let mut chunks = Vec::new();
    let mut ids = BTreeSet::new();
    for (key, value) in s.scan(
        Table::Chunks,
        &keys::chunk(ino, first),
        end.as_deref(),
        usize::MAX,
    )? {
        let slices = decode_slices(&key, &value)?;
        ids.extend(slices.iter().filter_map(|sl| sl.data.map(|r| r.stripe)));
        chunks.push(ChunkLayout {
            index: key_u64(Table::Chunks, &key, 8)?,
            slices,
        });
    }
    let mut stripes = Vec::with_capacity(ids.len());
    for id in ids {
        let rec = s.stripe(&id)?.ok_or(NamespaceError::Invariant {
            what: "a slice references a missing stripe",
            ino,
        })?;
        stripes.push(StripeInfo {
            id,
            layout: rec.layout,
        });
    }
    Ok(Response::Layout(FileLayout {
        size: inode.size,
        chunks,
        stripes,
    }))
}

/// Stripes waiting for GC, oldest first.
pub(crate) fn gc_queue<S: StoreRead + ?Sized>(s: &S, limit: u32) -> OpResult<Response> {
    let mut items = Vec::new();
    for (key, _) in s.scan(Table::GcQueue, &[], None, limit as usize)? {
        let queued_at = (key_u64(Table::GcQueue, &key, 0)? ^ (1 << 63)) as i64;
        let id_bytes: [u8; 32] = key
            .get(8..)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt(Table::GcQueue, &key, "bad stripe id".into()))?;
        let id = StripeId(id_bytes);
        let rec = s.stripe(&id)?.ok_or(NamespaceError::Invariant {
            what: "gc queue names a missing stripe",
            ino: 0,
        })?;
        items.push(GcItem {
            stripe: StripeInfo {
                id,
                layout: rec.layout,
            },
            queued_at,
            claimed: rec.state == StripeState::Deleting,
        });
    }
    Ok(Response::Gc(items))
}

/// A GC worker claims an unreferenced stripe: `ENOENT` if unknown, `EBUSY` if referenced.
pub(crate) fn gc_claim<S: Store + ?Sized>(s: &mut S, id: &StripeId) -> OpResult<Response> {
    let mut rec = s.stripe(id)?.ok_or(FsError::NotFound)?;
    if rec.refcount > 0 {
        return Err(FsError::Busy.into());
    }
    rec.state = StripeState::Deleting;
    s.put_rec(Table::Stripes, &keys::stripe(id), &rec)?;
    Ok(Response::Done)
}

/// The worker deleted the shards of a claimed stripe: drop its row and queue entry.
pub(crate) fn gc_done<S: Store + ?Sized>(s: &mut S, id: &StripeId) -> OpResult<Response> {
    let rec = s.stripe(id)?.ok_or(FsError::NotFound)?;
    if rec.state != StripeState::Deleting {
        return Err(FsError::Invalid.into());
    }
    // A claimed stripe cannot gain references (commits naming it get EAGAIN).
    debug_assert_eq!(rec.refcount, 0, "stripe {id:?}: deleted while referenced");
    s.delete(Table::Stripes, &keys::stripe(id))?;
    if let Some(at) = rec.queued_at {
        s.delete(Table::GcQueue, &keys::gc(at, id))?;
    }
    let freed = rec.stored_bytes().min(i64::MAX as u64) as i64;
    s.add_counter(counter::STORED_BYTES, -freed)?;
    Ok(Response::Done)
}

#[cfg(test)]
mod tests {
    use crate::command::{GcItem, Op, Query, Response};
    use crate::testkit::Ns;
    use tessera_proto::fs::{
        CHUNK_SIZE, ChunkSlice, FileLayout, FsError, Ino, SetAttr, Slice, StripeInfo, StripeRef,
    };

    use crate::testkit::stripe;

    fn write(
        ns: &mut Ns,
        ino: Ino,
        chunk: u64,
        offset: u64,
        len: u64,
        s: &StripeInfo,
    ) -> Result<(), FsError> {
        let slice = Slice {
            offset,
            len,
            data: Some(StripeRef {
                stripe: s.id,
                offset: 0,
            }),
        };
        ns.cmd(Op::CommitSlice {
            ino,
            slices: vec![ChunkSlice { chunk, slice }],
            stripes: vec![s.clone()],
        })
        .map(|_| ())
    }

    fn layout(ns: &Ns, ino: Ino) -> FileLayout {
        match ns.q(Query::Layout {
            ino,
            first: 0,
            last: u64::MAX,
        }) {
            Ok(Response::Layout(l)) => l,
            other => panic!("layout: {other:?}"),
        }
    }

    fn gc(ns: &Ns) -> Vec<GcItem> {
        match ns.q(Query::GcQueue { limit: 100 }) {
            Ok(Response::Gc(items)) => items,
            other => panic!("gc: {other:?}"),
        }
    }

    fn truncate(ns: &mut Ns, ino: Ino, size: u64) {
        let set = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        ns.cmd(Op::SetAttr { ino, set }).unwrap();
    }

    #[test]
    fn commit_grows_the_file_and_layout_lists_stripes() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let s1 = stripe(1, 100);
        write(&mut ns, f, 0, 0, 100, &s1).unwrap();
        write(&mut ns, f, 1, 10, 50, &s1).unwrap();
        let a = ns.attr(f).unwrap();
        assert_eq!(a.size, CHUNK_SIZE + 60);
        assert_eq!(a.mtime_ns, ns.now);
        let l = layout(&ns, f);
        assert_eq!(
            l.chunks.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(l.stripes, vec![s1.clone()]);
        // The stripe is shared by two slices: dropping one keeps it alive.
        truncate(&mut ns, f, 100);
        assert!(gc(&ns).is_empty());
        assert_eq!(layout(&ns, f).chunks.len(), 1);
        truncate(&mut ns, f, 40);
        assert_eq!(layout(&ns, f).chunks[0].slices[0].len, 40);
        truncate(&mut ns, f, 0);
        let queued = gc(&ns);
        assert_eq!(queued.len(), 1);
        assert_eq!((queued[0].stripe.id, queued[0].claimed), (s1.id, false));
    }

    fn hole(ns: &mut Ns, ino: Ino, chunk: u64, offset: u64, len: u64) {
        let slice = Slice {
            offset,
            len,
            data: None,
        };
        ns.cmd(Op::CommitSlice {
            ino,
            slices: vec![ChunkSlice { chunk, slice }],
            stripes: vec![],
        })
        .unwrap();
    }

    /// `st_blocks` counts the 4 KiB blocks data touches, not holes or the size.
    #[test]
    fn st_blocks_counts_stored_data_blocks() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let big = stripe(1, 3 * CHUNK_SIZE);
        let blocks = |ns: &Ns| ns.attr(f).unwrap().blocks;
        // 100 bytes at 5000: one block (4096..8192).
        write(&mut ns, f, 0, 5000, 100, &big).unwrap();
        assert_eq!(blocks(&ns), 8);
        // Far out in chunk 2: size grows by 128 MiB, blocks by two (the run spans a boundary).
        write(&mut ns, f, 2, 4000, 200, &big).unwrap();
        assert_eq!(ns.attr(f).unwrap().size, 2 * CHUNK_SIZE + 4200);
        assert_eq!(blocks(&ns), 8 + 16);
        // Overwriting stored bytes adds nothing; a neighbour in the same block adds nothing.
        write(&mut ns, f, 0, 5050, 100, &big).unwrap();
        write(&mut ns, f, 0, 4096, 10, &big).unwrap();
        assert_eq!(blocks(&ns), 24);
        // A hole over a whole block frees it; over part of one keeps it (as ext4's punch).
        hole(&mut ns, f, 2, 4096, 104);
        assert_eq!(blocks(&ns), 16);
        hole(&mut ns, f, 0, 5000, 10);
        assert_eq!(blocks(&ns), 16);
        hole(&mut ns, f, 0, 0, 8192);
        assert_eq!(blocks(&ns), 8);
        truncate(&mut ns, f, 4000);
        assert_eq!(blocks(&ns), 0);
        write(&mut ns, f, 0, 0, 8192, &big).unwrap();
        truncate(&mut ns, f, 4097);
        assert_eq!(blocks(&ns), 16);
        truncate(&mut ns, f, 4096);
        assert_eq!(blocks(&ns), 8);
        let d = ns.mkdir(ns.root(), "d");
        assert_eq!(ns.attr(d).unwrap().blocks, 8);
    }

    /// An inode record of format 1 (before blocks were counted) reads back with its size
    /// rounded up as `st_blocks`, and the first data change counts them from the chunks.
    #[test]
    fn inode_records_of_format_1_are_counted_on_their_first_change() {
        use crate::records::{BLOCKS_UNCOUNTED, InodeRec};
        use crate::state::{Tables, keys};
        use crate::store::{Store, Table};
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let big = stripe(1, CHUNK_SIZE);
        write(&mut ns, f, 0, 0, 10_000, &big).unwrap();
        write(&mut ns, f, 1, 0, 10, &big).unwrap();
        let rec = ns.store.inode(f).unwrap().unwrap();
        assert_eq!(rec.blocks, 3 + 1);
        // The same record as format 1 wrote it: every field but `blocks`, version byte 1.
        let mut v1 = crate::codec::encode(&(
            rec.kind,
            rec.perm,
            rec.nlink,
            rec.uid,
            rec.gid,
            rec.rdev,
            rec.size,
            (rec.atime, rec.mtime, rec.ctime),
        ));
        v1.extend(
            postcard::to_allocvec(&(
                rec.generation,
                rec.parent,
                rec.next_cookie,
                &rec.target,
                rec.opens,
            ))
            .unwrap(),
        );
        let key = keys::inode(f);
        ns.store.put(Table::Inodes, &key, &v1).unwrap();
        let old = InodeRec::decode(&key, &v1).unwrap();
        assert_eq!(old.blocks, BLOCKS_UNCOUNTED);
        assert_eq!(
            InodeRec {
                blocks: rec.blocks,
                ..old
            },
            rec
        );
        assert_eq!(
            ns.attr(f).unwrap().blocks,
            (CHUNK_SIZE + 10).div_ceil(4096) * 8
        );
        hole(&mut ns, f, 0, 0, 4096);
        assert_eq!(ns.attr(f).unwrap().blocks, (2 + 1) * 8);
        assert_eq!(ns.store.inode(f).unwrap().unwrap().blocks, 3);
        let mut future = v1.clone();
        future[0] = 9;
        assert!(InodeRec::decode(&key, &future).is_err());
    }

    #[test]
    fn bad_commits_are_refused() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        let d = ns.mkdir(ns.root(), "d");
        let s1 = stripe(1, 100);
        assert_eq!(write(&mut ns, d, 0, 0, 10, &s1), Err(FsError::IsDir));
        assert_eq!(write(&mut ns, f, 0, 0, 0, &s1), Err(FsError::Invalid));
        assert_eq!(write(&mut ns, f, 0, 0, 101, &s1), Err(FsError::Invalid));
        assert_eq!(
            write(&mut ns, f, 0, CHUNK_SIZE - 1, 2, &s1),
            Err(FsError::Invalid)
        );
        assert_eq!(
            write(&mut ns, f, u64::MAX / CHUNK_SIZE, 0, 1, &s1),
            Err(FsError::FileTooLarge)
        );
        let mut broken = stripe(2, 100);
        broken.layout.shards.pop();
        assert_eq!(write(&mut ns, f, 0, 0, 10, &broken), Err(FsError::Invalid));
        // Nothing of the failed commits remains.
        assert_eq!(ns.attr(f).unwrap().size, 0);
        assert!(layout(&ns, f).chunks.is_empty());
    }

    #[test]
    fn gc_claim_blocks_reuse_and_done_drops_the_row() {
        let mut ns = Ns::new();
        let root = ns.root();
        let f = ns.create(root, "f");
        let s1 = stripe(1, 100);
        write(&mut ns, f, 0, 0, 100, &s1).unwrap();
        assert_eq!(ns.sys(Op::GcClaim { stripe: s1.id }), Err(FsError::Busy));
        ns.cmd(Op::Unlink {
            parent: root,
            name: "f".into(),
        })
        .unwrap();
        assert_eq!(gc(&ns).len(), 1);
        // A new reference revives a queued stripe.
        let g = ns.create(root, "g");
        write(&mut ns, g, 0, 0, 100, &s1).unwrap();
        assert!(gc(&ns).is_empty());
        truncate(&mut ns, g, 0);
        ns.sys(Op::GcClaim { stripe: s1.id }).unwrap();
        assert!(gc(&ns)[0].claimed);
        assert_eq!(write(&mut ns, g, 0, 0, 100, &s1), Err(FsError::WouldBlock));
        ns.sys(Op::GcDone { stripe: s1.id }).unwrap();
        assert!(gc(&ns).is_empty());
        assert_eq!(ns.sys(Op::GcDone { stripe: s1.id }), Err(FsError::NotFound));
        // After GC the same content can be committed afresh.
        write(&mut ns, g, 0, 0, 100, &s1).unwrap();
    }

    #[test]
    fn statfs_counts_inodes_and_stored_bytes() {
        let mut ns = Ns::new();
        let f = ns.create(ns.root(), "f");
        write(&mut ns, f, 0, 0, 8192, &stripe(1, 8192)).unwrap();
        let Ok(Response::StatFs(st)) = ns.q(Query::StatFs {
            total_bytes: 1 << 30,
            total_files: 100,
        }) else {
            panic!()
        };
        assert_eq!((st.files, st.ffree), (100, 98));
        // 3 shards of 4096 bytes.
        assert_eq!(st.blocks - st.bfree, 3);
    }
}
