//! The file backend: one file per shard under a fan-out tree (see `layout.rs` for the paths
//! and `format.rs` for the bytes of a shard file).
//!
//! Put: hash once (id check and block hash list in the same pass), write header + list + data
//! to a temporary file, fdatasync it, hard-link it under its id, fsync the directory, and only
//! then acknowledge. A hard link rather than a rename because `link` fails if the name exists:
//! two concurrent puts of one id learn which of them stored it, so the accounting counts it
//! once, and an existing shard is never replaced.
//!
//! Get: check the header and file length, then verify exactly the blocks served (see
//! `verify.rs`); a mismatch moves the file to quarantine and returns `Corrupt`. A proved get
//! (`get_proved`) serves a range with the proof a reader checks it by (see `prove.rs`).
//!
//! Shard bytes are copied once, from the page cache into the buffer that is handed out as
//! `Bytes` (sliced for a range, never copied again); puts write straight from the caller's `Bytes`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use tessera_rpc::pool;

use super::format::{HEADER_LEN, Header, HeaderError};
use super::layout::{Layout, open_dir, sync_dir};
use super::prove::ListedShard;
use super::verify::{self, BLOCK_LEN};
use super::{
    ListPage, MAX_SHARD_LEN, Proved, PutOutcome, ShardId, ShardStat, ShardStore, Usage, list,
};
use crate::error::{Damage, Error, Result, is_no_space};

/// Settings of a [`FileStore`].
#[derive(Debug, Clone, Default)]
pub struct FileStoreConfig {
    /// Refuse puts that would take the shard files past this many bytes (`None`: only the
    /// disk itself limits them).
    pub capacity: Option<u64>,
}

/// Shards as files in a local directory. See the module docs.
#[derive(Debug)]
pub struct FileStore {
    layout: Layout,
    capacity: Option<u64>,
    space: Mutex<Space>,
    tmp_seq: AtomicU64,
    /// Held (with its exclusive lock) for as long as the store is open.
    _lock: File,
}

#[derive(Debug, Default)]
struct Space {
    shards: u64,
    used: u64,
    /// Bytes of puts in progress, counted against the capacity before they are written.
    reserved: u64,
}

impl FileStore {
    /// Opens (creating if needed) the store in `root`. Deletes temporary files left by a
    /// crash and rebuilds the space accounting by scanning the shards.
    pub fn open(root: impl AsRef<Path>, config: FileStoreConfig) -> Result<FileStore> {
        let opened = open_dir(root.as_ref())?;
        tracing::info!(
            dir = %opened.layout.root.display(),
            shards = opened.shards,
            used_bytes = opened.used_bytes,
            unfinished_puts_removed = opened.removed_tmp,
            "shard store open"
        );
        Ok(FileStore {
            layout: opened.layout,
            capacity: config.capacity,
            space: Mutex::new(Space {
                shards: opened.shards,
                used: opened.used_bytes,
                reserved: 0,
            }),
            tmp_seq: AtomicU64::new(0),
            _lock: opened.lock,
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.layout.root
    }

    /// Where the file of `id` lives (whether or not it exists). For tools and tests.
    pub fn shard_path(&self, id: &ShardId) -> PathBuf {
        self.layout.shard_path(id)
    }

    /// The directory that receives shards which failed verification.
    pub fn quarantine_dir(&self) -> &Path {
        &self.layout.quarantine
    }

    fn space(&self) -> std::sync::MutexGuard<'_, Space> {
        // The counters stay meaningful even if a holder panicked: every update is one step.
        self.space.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve(&self, id: &ShardId, bytes: u64) -> Result<Reservation<'_>> {
        let mut space = self.space();
        if let Some(cap) = self.capacity
            && space.used + space.reserved + bytes > cap
        {
            return Err(Error::NoSpace {
                id: *id,
                needed: bytes,
            });
        }
        space.reserved += bytes;
        Ok(Reservation { store: self, bytes })
    }

    /// If `id` is stored: refresh its mtime (so a sweep does not take a re-uploaded shard for
    /// an abandoned one), make its directory entry durable (a concurrent first put of the same
    /// id may not have fsynced it yet) and return true.
    fn already_present(&self, id: &ShardId, path: &Path) -> Result<bool> {
        let file = match File::options().write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", path, Some(*id), e)),
        };
        file.set_modified(SystemTime::now())
            .map_err(|e| Error::io("touch", path, Some(*id), e))?;
        let dir = self.layout.leaf_dir(id);
        sync_dir(&dir).map_err(|e| Error::io("fsync", dir, Some(*id), e))?;
        Ok(true)
    }

    /// Writes the complete shard file to `tmp` and makes its bytes durable.
    fn write_temp(&self, tmp: &Path, parts: [&[u8]; 2]) -> io::Result<()> {
        let mut f = File::options().write(true).create_new(true).open(tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        // fdatasync covers the data and the file length; the name is made durable by the
        // directory fsync after the link.
        f.sync_data()
    }

    fn put_file(
        &self,
        id: &ShardId,
        tmp: &Path,
        path: &Path,
        parts: [&[u8]; 2],
        reservation: Reservation<'_>,
    ) -> Result<PutOutcome> {
        let needed = reservation.bytes;
        let fail = |op, p| write_error(op, p, id, needed);
        self.write_temp(tmp, parts).map_err(fail("write", tmp))?;
        let dir = self.layout.leaf_dir(id);
        let outcome = match fs::hard_link(tmp, path) {
            Ok(()) => {
                reservation.commit();
                PutOutcome::Stored
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => PutOutcome::AlreadyPresent,
            Err(e) => return Err(fail("link", path)(e)),
        };
        // Either way the entry must be durable before we acknowledge (see `already_present`).
        //
        // One fsync per put, not group-committed. A group commit (one fsync of a fan-out
        // directory serving every put linked into it before that fsync started) was built and
        // measured with `examples/store_bench` (1 MiB puts, 8 in flight, runs alternating):
        // 1,341-1,459 MB/s with it, 1,392-1,395 without, so it was removed. With 256 fan-out
        // directories 8 concurrent puts rarely share one. Grouping across directories with one
        // `syncfs` per batch did no better than one fsync per put in a syscall-level
        // experiment either: the kernel already merges concurrent flushes.
        sync_dir(&dir).map_err(fail("fsync", &dir))?;
        Ok(outcome)
    }

    /// Opens a shard and checks its header against its name and its length.
    fn open_shard(&self, id: &ShardId, path: &Path) -> Result<(File, Header, fs::Metadata)> {
        let io_err = |op| move |e| Error::io(op, path, Some(*id), e);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound { id: *id });
            }
            Err(e) => return Err(io_err("open")(e)),
        };
        let meta = file.metadata().map_err(io_err("stat"))?;
        let mut raw = [0u8; HEADER_LEN];
        if meta.len() < HEADER_LEN as u64 {
            return Err(self.quarantine(id, path, Damage::BadLength));
        }
        self.read_exact(id, path, &file, &mut raw, 0)?;
        let header = match Header::decode(&raw) {
            Ok(h) => h,
            Err(HeaderError::Damaged(d)) => return Err(self.quarantine(id, path, d)),
            Err(HeaderError::Unsupported(version)) => {
                return Err(Error::UnsupportedFormat { id: *id, version });
            }
        };
        if header.id != *id {
            return Err(self.quarantine(id, path, Damage::WrongId));
        }
        if header.data_len > MAX_SHARD_LEN || header.file_len() != Some(meta.len()) {
            return Err(self.quarantine(id, path, Damage::BadLength));
        }
        Ok((file, header, meta))
    }

    fn read_exact(
        &self,
        id: &ShardId,
        path: &Path,
        file: &File,
        buf: &mut [u8],
        offset: u64,
    ) -> Result<()> {
        match file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            // Shorter than the length checked at open: truncated under us.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.quarantine(id, path, Damage::BadLength))
            }
            Err(e) => Err(Error::io("read", path, Some(*id), e)),
        }
    }

    fn read_vec(
        &self,
        id: &ShardId,
        path: &Path,
        file: &File,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        // A recycled buffer: a fresh 1 MiB allocation is a new mapping whose 256 page faults
        // cost more than zeroing warm memory (see `tessera_rpc::pool`). It goes back to the
        // pool when the last `Bytes` made from it by `freeze` drops, after the reply is sent.
        let mut buf = pool::take(len as usize);
        buf.resize(len as usize, 0);
        self.read_exact(id, path, file, &mut buf, offset)?;
        Ok(buf)
    }

    /// Moves a shard that failed verification out of service and returns the `Corrupt` error.
    fn quarantine(&self, id: &ShardId, path: &Path, damage: Damage) -> Error {
        let size = fs::symlink_metadata(path).map(|m| m.len());
        let dest = self.layout.quarantine_path(id);
        match fs::rename(path, &dest) {
            Ok(()) => {
                if let Ok(size) = size {
                    self.forget(size);
                }
                tracing::error!(shard = %id, %damage, to = %dest.display(), "shard quarantined");
            }
            // Moved or deleted by a concurrent caller: it is out of service either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(shard = %id, %damage, error = %e, "corrupt shard could not be quarantined");
            }
        }
        Error::Corrupt { id: *id, damage }
    }

    /// Removes one shard of `size` file bytes from the accounting.
    fn forget(&self, size: u64) {
        let mut space = self.space();
        space.shards = space.shards.saturating_sub(1);
        space.used = space.used.saturating_sub(size);
    }
}

/// Maps an error of the write path: a full disk becomes `NoSpace`.
fn write_error<'a>(
    op: &'static str,
    path: &'a Path,
    id: &'a ShardId,
    needed: u64,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| {
        if is_no_space(&e) {
            Error::NoSpace { id: *id, needed }
        } else {
            Error::io(op, path, Some(*id), e)
        }
    }
}

/// Capacity held for one put in progress; released on drop unless committed.
struct Reservation<'a> {
    store: &'a FileStore,
    bytes: u64,
}

impl Reservation<'_> {
    fn commit(self) {
        let mut space = self.store.space();
        space.used += self.bytes;
        space.shards += 1;
        // `Drop` releases the reservation itself.
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut space = self.store.space();
        space.reserved = space.reserved.saturating_sub(self.bytes);
    }
}

impl ShardStore for FileStore {
    fn put(&self, id: &ShardId, data: Bytes) -> Result<PutOutcome> {
        if data.len() as u64 > MAX_SHARD_LEN {
            let (len, max) = (data.len() as u64, MAX_SHARD_LEN);
            return Err(Error::TooLarge { id: *id, len, max });
        }
        let (actual, list) = verify::hash_with_list(&data);
        if actual != *id {
            return Err(Error::WrongHash {
                expected: *id,
                actual,
            });
        }
        let path = self.layout.shard_path(id);
        if self.already_present(id, &path)? {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let mut head = Vec::with_capacity(HEADER_LEN + list.len());
        head.extend_from_slice(
            &Header {
                id: *id,
                data_len: data.len() as u64,
            }
            .encode(),
        );
        head.extend_from_slice(&list);
        let reservation = self.reserve(id, (head.len() + data.len()) as u64)?;
        let tmp = self
            .layout
            .tmp_path(id, self.tmp_seq.fetch_add(1, Ordering::Relaxed));
        let result = self.put_file(id, &tmp, &path, [&head, &data], reservation);
        // The temporary name is never needed past this point: on success the shard is linked
        // under its id, on failure nothing may be left behind.
        if let Err(e) = fs::remove_file(&tmp)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %tmp.display(), error = %e, "could not remove temporary file");
        }
        result
    }

    fn get(&self, id: &ShardId, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.layout.shard_path(id);
        let (file, header, _) = self.open_shard(id, &path)?;
        let len = header.data_len;
        let Range { start, end } = range.unwrap_or(0..len);
        check_range(id, &(start..end), len)?;
        if start == end {
            return Ok(Bytes::new());
        }
        if len <= BLOCK_LEN as u64 {
            let data = self.read_vec(id, &path, &file, header.data_offset(), len)?;
            if ShardId::of(&data) != *id {
                return Err(self.quarantine(id, &path, Damage::BadData));
            }
            return Ok(pool::freeze(data).slice(start as usize..end as usize));
        }
        let list = self.read_vec(id, &path, &file, HEADER_LEN as u64, header.hash_list_len())?;
        if verify::root_of_list(&list, len) != *id {
            return Err(self.quarantine(id, &path, Damage::BadHashList));
        }
        let block = BLOCK_LEN as u64;
        let first = start / block;
        let from = first * block;
        let to = (end.div_ceil(block) * block).min(len);
        let blocks = self.read_vec(id, &path, &file, header.data_offset() + from, to - from)?;
        if !verify::blocks_match(&list, first, &blocks) {
            return Err(self.quarantine(id, &path, Damage::BadData));
        }
        let skip = (start - from) as usize;
        Ok(pool::freeze(blocks).slice(skip..skip + (end - start) as usize))
    }

    fn get_proved(&self, id: &ShardId, range: Range<u64>) -> Result<Proved> {
        let path = self.layout.shard_path(id);
        let (file, header, _) = self.open_shard(id, &path)?;
        let len = header.data_len;
        check_range(id, &range, len)?;
        let span = tessera_proto::proof::span_of(&range, len);
        if span.is_empty() {
            return Ok(Proved {
                len,
                span,
                bytes: Bytes::new(),
                proof: Vec::new(),
            });
        }
        let (root, bytes, proof) = if len <= BLOCK_LEN as u64 {
            // No hash list: the whole shard is read (as `get` does) and proved from memory.
            let data = self.read_vec(id, &path, &file, header.data_offset(), len)?;
            let (root, proof) = tessera_proto::proof::prove(&data, &span)
                .ok_or_else(|| bad_span(id, &span, len))?;
            let bytes = pool::freeze(data).slice(span.start as usize..span.end as usize);
            (root, bytes, proof)
        } else {
            let list =
                self.read_vec(id, &path, &file, HEADER_LEN as u64, header.hash_list_len())?;
            if verify::root_of_list(&list, len) != *id {
                return Err(self.quarantine(id, &path, Damage::BadHashList));
            }
            let block = BLOCK_LEN as u64;
            let from = span.start / block * block;
            let to = (span.end.div_ceil(block) * block).min(len);
            let blocks = self.read_vec(id, &path, &file, header.data_offset() + from, to - from)?;
            let shard = ListedShard {
                len,
                list: &list,
                blocks_from: from,
                blocks: &blocks,
            };
            let (root, proof) = shard.prove(&span).map_err(|e| {
                tracing::error!(shard = %id, subtree = ?e.0, "proof needs bytes not read (a bug)");
                bad_span(id, &span, len)
            })?;
            let root = root.ok_or_else(|| bad_span(id, &span, len))?;
            let skip = (span.start - from) as usize;
            let bytes = pool::freeze(blocks).slice(skip..skip + (span.end - span.start) as usize);
            (root, bytes, proof)
        };
        if root != *id {
            return Err(self.quarantine(id, &path, Damage::BadData));
        }
        Ok(Proved {
            len,
            span,
            bytes,
            proof,
        })
    }

    fn delete(&self, id: &ShardId) -> Result<bool> {
        // Not fsynced: a delete lost in a power cut leaves garbage that the sweep removes
        // later, never a missing shard.
        let path = self.layout.shard_path(id);
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat", &path, Some(*id), e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {
                self.forget(size);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("delete", &path, Some(*id), e)),
        }
    }

    fn list(&self, after: Option<&ShardId>, limit: usize) -> Result<ListPage> {
        list::list_page(&self.layout, after, limit)
            .map_err(|e| Error::io("list", &self.layout.shards, None, e))
    }

    fn stat(&self, id: &ShardId) -> Result<Option<ShardStat>> {
        let path = self.layout.shard_path(id);
        let (_, header, meta) = match self.open_shard(id, &path) {
            Ok(x) => x,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mtime = meta
            .modified()
            .map_err(|e| Error::io("stat", &path, Some(*id), e))?;
        let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
        Ok(Some(ShardStat {
            id: *id,
            len: header.data_len,
            age,
        }))
    }

    fn usage(&self) -> Usage {
        let space = self.space();
        Usage {
            shards: space.shards,
            used_bytes: space.used,
            capacity: self.capacity,
        }
    }
}

/// `BadRange` unless `range` lies within a shard of `len` bytes.
fn check_range(id: &ShardId, range: &Range<u64>, len: u64) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(Error::BadRange {
            id: *id,
            start: range.start,
            end: range.end,
            len,
        });
    }
    Ok(())
}

fn bad_span(id: &ShardId, span: &Range<u64>, len: u64) -> Error {
    Error::BadRange {
        id: *id,
        start: span.start,
        end: span.end,
        len,
    }
}

#[cfg(test)]
impl super::TornWrite for FileStore {
    /// Leaves what a crash `keep` bytes into writing the shard file would leave: a temporary
    /// file holding that prefix, never linked, never cleaned up (the process "died").
    fn put_torn(&self, id: &ShardId, data: &Bytes, keep: usize) -> Result<()> {
        let (_, list) = verify::hash_with_list(data);
        let header = Header {
            id: *id,
            data_len: data.len() as u64,
        }
        .encode();
        let image: Vec<u8> = [&header[..], &list, data].concat();
        let tmp = self
            .layout
            .tmp_path(id, self.tmp_seq.fetch_add(1, Ordering::Relaxed));
        fs::write(&tmp, &image[..keep.min(image.len())])
            .map_err(|e| Error::io("write", &tmp, Some(*id), e))
    }
}
