//! File data: write-back buffering, striping into erasure-coded shards, commits, and reads
//! that resolve slices to stripes.
//!
//! - `dirty.rs`: the per-inode write buffer (disjoint extents).
//! - `write.rs`: when to flush: full stripes at once in the background, the rest on
//!   `fsync`, close, the timer, or past the buffer limits (which also pace a writer).
//! - `code.rs`: the erasure code and stripe size of a file's new data: its layout (from
//!   the metadata service), or this mount's for a file without one.
//! - `flush/`: one flush as a pipeline of stages, a file each: cut, pack, place (one call
//!   for every stripe of the flush), encode, put (failed shards re-placed), commit (one
//!   `CommitSlice`).
//! - `read.rs`: layout of the chunks in range, later slices shadow earlier ones, stripe reads
//!   through the chunk client (parity fallback there), zeros for holes, buffered bytes on top.
//!   The chunk client checks every shard it returns against its id from the layout (whole
//!   shards by hash, ranges by proof); what fails is read around and queued, and
//!   [`DataPath::start_reporter`] reports it to the leader for repair.
//!
//! Buffers are per inode, not per open file, so every handle of a file in this mount sees
//! the same bytes; they are flushed when a full stripe is buffered, when too much is
//! buffered, on `fsync`, `flush` (close) and `release`, and by a timer.

mod code;
mod copy;
mod dirty;
mod flush;
mod reach;
mod read;
mod reserve;
mod seek;
mod write;
mod zero;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tessera_proto::fs::{Attr, FileLayout, FsError, Ino, ShardPlace};
use tessera_stripe::ChunkClient;

use crate::error::ClientError;
use crate::meta::MetaClient;
use dirty::Dirty;

/// Settings of the data path.
#[derive(Debug, Clone)]
pub struct DataConfig {
    /// Data shards per stripe.
    pub k: u8,
    /// Parity shards per stripe.
    pub m: u8,
    /// Most bytes of file data in one stripe.
    pub stripe_size: u64,
    /// Buffered writes older than this are flushed by the timer.
    pub flush_after: Duration,
    /// Buffered bytes of one inode above which a background flush stores everything; past
    /// twice this a write waits for a flush.
    pub max_dirty: u64,
    /// Buffered extents (separate runs of bytes) of one inode above which a background flush
    /// stores everything (each becomes a slice, and one commit should stay small); past
    /// eight times this a write waits for a flush.
    pub max_extents: usize,
    /// Stripes stored at once by one flush.
    pub parallel_stripes: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            k: 4,
            m: 2,
            stripe_size: 4 << 20,
            flush_after: Duration::from_secs(1),
            max_dirty: 64 << 20,
            max_extents: 1024,
            parallel_stripes: 4,
        }
    }
}

/// What this mount knows of one open inode.
#[derive(Debug)]
pub struct InodeData {
    ino: Ino,
    dirty: Mutex<Dirty>,
    /// One flush at a time per inode, so commits land in write order.
    flush_lock: tokio::sync::Mutex<()>,
    /// Open handles of this mount on the inode.
    opens: AtomicU64,
    /// The first error of a background flush, reported by the next fsync/flush.
    error: Mutex<Option<FsError>>,
    /// The layout of chunks `first..=last` as last read: reads reuse it until this mount
    /// changes the file or opens it again (close-to-open: another mount's changes need
    /// only be seen by a later open).
    layout: Mutex<LayoutCache>,
}

/// Cached layouts by chunk index, and a generation bumped by every invalidation, so a read
/// that fetched a layout before a change does not cache it after.
#[derive(Debug, Default)]
struct LayoutCache {
    generation: u64,
    /// Each chunk maps to the layout answer that covered it.
    chunks: HashMap<u64, Arc<FileLayout>>,
}

/// Chunks (of 64 MiB) whose layouts one open inode keeps: 64 GiB of file.
const CACHED_CHUNKS: usize = 1024;

impl InodeData {
    fn lock(&self) -> std::sync::MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether bytes written here wait to be committed (or are being committed now).
    pub fn has_buffered(&self) -> bool {
        !self.lock().is_empty()
    }

    pub fn ino(&self) -> Ino {
        self.ino
    }

    /// Forgets the cached layout (the file changed, or it is being opened again).
    pub fn invalidate(&self) {
        let mut c = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        c.generation += 1;
        c.chunks.clear();
    }

    /// The cached layout if one answer covers chunks `first..=last`, else the generation
    /// to pass to [`Self::cache_layout`] with a freshly read one.
    fn cached_layout(&self, first: u64, last: u64) -> Result<Arc<FileLayout>, u64> {
        let c = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        let Some(l) = c.chunks.get(&first) else {
            return Err(c.generation);
        };
        if (first + 1..=last).all(|i| c.chunks.get(&i).is_some_and(|x| Arc::ptr_eq(x, l))) {
            Ok(l.clone())
        } else {
            Err(c.generation)
        }
    }

    fn cache_layout(&self, generation: u64, first: u64, last: u64, layout: Arc<FileLayout>) {
        let mut c = self.layout.lock().unwrap_or_else(|e| e.into_inner());
        if c.generation != generation {
            return;
        }
        if c.chunks.len() >= CACHED_CHUNKS {
            c.chunks.clear();
        }
        for i in first..=last {
            c.chunks.insert(i, layout.clone());
        }
    }
}

/// The data path of one mount. Share it behind an `Arc`.
#[derive(Debug)]
pub struct DataPath {
    meta: Arc<MetaClient>,
    chunks: Arc<ChunkClient>,
    cfg: DataConfig,
    /// Chunkserver id -> address, learnt from placements and listings.
    addrs: RwLock<HashMap<u64, String>>,
    inodes: Mutex<HashMap<Ino, Arc<InodeData>>>,
    /// (mtime, size) of each file as this mount last saw its data: an open that finds the
    /// same values keeps the kernel's page cache.
    seen: Mutex<HashMap<Ino, (i64, u64)>>,
    /// Where background stores run.
    rt: tokio::runtime::Handle,
    /// How many shards a stripe needs stored, as the leader says.
    rule: reach::WriteRule,
    /// Ranges this mount preallocated, by inode (`reserve.rs`).
    reserved: Mutex<HashMap<Ino, Vec<(u64, u64)>>>,
    /// The code of each file's new data, as its layout says (`code.rs`).
    codes: Mutex<HashMap<Ino, code::FileCode>>,
}

impl DataPath {
    /// Must be called within a tokio runtime: background stores run on it.
    pub fn new(meta: Arc<MetaClient>, chunks: Arc<ChunkClient>, cfg: DataConfig) -> Arc<Self> {
        Arc::new(Self {
            rt: tokio::runtime::Handle::current(),
            meta,
            chunks,
            cfg,
            addrs: RwLock::new(HashMap::new()),
            inodes: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            rule: reach::WriteRule::default(),
            reserved: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &DataConfig {
        &self.cfg
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, Arc<InodeData>>> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open state of `ino`, if this mount has it open.
    pub fn inode(&self, ino: Ino) -> Option<Arc<InodeData>> {
        self.table().get(&ino).cloned()
    }

    /// Registers one more open handle of `ino`.
    pub fn open(&self, ino: Ino) -> Arc<InodeData> {
        let mut t = self.table();
        let data = t.entry(ino).or_insert_with(|| {
            Arc::new(InodeData {
                ino,
                dirty: Mutex::new(Dirty::default()),
                flush_lock: tokio::sync::Mutex::new(()),
                opens: AtomicU64::new(0),
                error: Mutex::new(None),
                layout: Mutex::new(LayoutCache::default()),
            })
        });
        data.invalidate();
        data.opens.fetch_add(1, Ordering::Relaxed);
        data.clone()
    }

    /// Drops one open handle: flushes, and forgets the inode after its last handle.
    pub async fn close(&self, data: &Arc<InodeData>) -> Result<(), FsError> {
        let flushed = self.flush(data).await;
        let mut t = self.table();
        if data.opens.fetch_sub(1, Ordering::Relaxed) == 1 && data.lock().is_empty() {
            t.remove(&data.ino);
            // Nothing more is written through this mount without another open.
            self.forget_reserved(data.ino);
        }
        flushed
    }

    /// Whether an open may keep the kernel's page cache: the file's (mtime, size) are what
    /// this mount saw when it last had the data. Records the new values either way.
    pub fn keep_cache(&self, attr: &Attr) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = (attr.mtime_ns, attr.size);
        seen.insert(attr.ino, now) == Some(now)
    }

    /// Records the attributes this mount's own change produced (its page cache is current).
    pub fn saw(&self, attr: &Attr) {
        if let Some(d) = self.inode(attr.ino) {
            d.invalidate();
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = seen.get_mut(&attr.ino) {
            *v = (attr.mtime_ns, attr.size);
        }
    }

    /// `attr` with the size grown to cover bytes buffered here but not committed yet, and
    /// `st_blocks` counting them (at most the size in blocks: buffered bytes may overwrite
    /// stored ones; the commit makes it exact).
    pub fn with_local_size(&self, mut attr: Attr) -> Attr {
        if let Some(d) = self.inode(attr.ino) {
            let d = d.lock();
            attr.size = attr.size.max(d.end());
            let most = attr.size.div_ceil(4096) * 8;
            attr.blocks = attr
                .blocks
                .saturating_add(d.st_blocks())
                .min(most.max(attr.blocks));
        }
        attr
    }

    /// Runs `apply` (the metadata change that truncates or extends `ino` to `size`) with
    /// this mount's buffer cut to `size` first. Buffered bytes below `size` stay buffered:
    /// committed later, they shadow what they overwrite, as writes after a truncate should.
    /// The flush lock is held throughout so no commit of older bytes lands after the cut.
    pub async fn truncate<T>(
        &self,
        ino: Ino,
        size: u64,
        apply: impl std::future::Future<Output = Result<T, FsError>>,
    ) -> Result<T, FsError> {
        let Some(d) = self.inode(ino) else {
            return apply.await;
        };
        let _g = d.flush_lock.lock().await;
        d.lock().truncate(size);
        let r = apply.await;
        d.invalidate();
        r
    }

    /// Sends the shards whose servers answered this mount's reads with bytes that failed
    /// verification to the metadata leader every second (repair moves them to other
    /// servers), until the returned handle is aborted.
    pub fn start_reporter(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (audit, meta) = (self.chunks.audit().clone(), self.meta.clone());
        tokio::spawn(async move {
            let send = |bad: Vec<_>| {
                let meta = meta.clone();
                async move { meta.report_shards(bad).await.map_err(|e| e.to_string()) }
            };
            audit.report_every(Duration::from_secs(1), send).await;
        })
    }

    /// Flushes buffered writes older than `flush_after` every so often, until the returned
    /// handle is aborted.
    pub fn start_timer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let tick = (me.cfg.flush_after / 2).max(Duration::from_millis(50));
            loop {
                tokio::time::sleep(tick).await;
                let due: Vec<Arc<InodeData>> = me
                    .table()
                    .values()
                    .filter(|d| {
                        d.lock()
                            .since
                            .is_some_and(|t| t.elapsed() >= me.cfg.flush_after)
                    })
                    .cloned()
                    .collect();
                for d in due {
                    if let Err(e) = me.flush(&d).await {
                        tracing::error!(ino = d.ino, "background flush failed: {e}");
                        let mut err = d.error.lock().unwrap_or_else(|p| p.into_inner());
                        err.get_or_insert(e);
                    }
                }
            }
        })
    }

    /// Flushes every open inode (unmount).
    pub async fn flush_all(&self) -> Result<(), FsError> {
        let all: Vec<Arc<InodeData>> = self.table().values().cloned().collect();
        let mut result = Ok(());
        for d in all {
            if let Err(e) = self.flush(&d).await {
                result = Err(e);
            }
        }
        result
    }

    /// Addresses of the listed chunkservers, asking the leader for the ones not known yet.
    async fn learn_addrs(&self, ids: Vec<u64>) -> Result<(), ClientError> {
        let missing = {
            let a = self.addrs.read().unwrap_or_else(|e| e.into_inner());
            // A shard of a degraded write is on no server: nothing to learn.
            ids.iter()
                .any(|id| *id != ShardPlace::NOWHERE && !a.contains_key(id))
        };
        if missing {
            let list = self
                .meta
                .list_chunkservers()
                .await
                .map_err(|e| ClientError::meta("list chunkservers", e))?;
            let mut a = self.addrs.write().unwrap_or_else(|e| e.into_inner());
            for s in list {
                a.insert(s.id, s.addr);
            }
        }
        Ok(())
    }

    fn addr_of(&self, id: u64) -> Option<String> {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}
