//! Where things live in a data directory, and the startup pass over it.
//!
//! ```text
//! DIR/FORMAT                `tessera-chunk-data 1`: the layout version (see `marker.rs`)
//! DIR/LOCK                  held with an exclusive file lock while a store has DIR open
//! DIR/shards/ab/cd/<hex>    a shard, fanned out by the first two id bytes
//! DIR/tmp/<hex>.<n>.tmp     puts in progress; all of it is deleted at startup
//! DIR/quarantine/<hex>.<t>  shards that failed verification, kept for inspection
//! ```
//!
//! Temporary files live in their own directory on the same filesystem, so a link into
//! `shards/` is atomic and a crash can never leave a partial file under a shard's name.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{ShardId, marker};
use crate::error::{Error, Result};

/// The paths of one data directory.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub root: PathBuf,
    pub shards: PathBuf,
    pub tmp: PathBuf,
    pub quarantine: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            shards: root.join("shards"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
        }
    }

    pub fn leaf_dir(&self, id: &ShardId) -> PathBuf {
        let p = id.hex_prefix(2);
        self.shards.join(&p[0..2]).join(&p[2..4])
    }

    pub fn shard_path(&self, id: &ShardId) -> PathBuf {
        self.leaf_dir(id).join(id.to_string())
    }

    pub fn tmp_path(&self, id: &ShardId, seq: u64) -> PathBuf {
        self.tmp.join(format!("{id}.{seq}.tmp"))
    }

    /// A fresh name per quarantine, so a shard that is repaired and rots again keeps both copies.
    pub fn quarantine_path(&self, id: &ShardId) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.quarantine.join(format!("{id}.{nanos}"))
    }
}

/// Where the file of shard `id` lives in the data directory `root` (for tools and tests that
/// look at the disk without opening the store).
pub fn shard_file(root: &Path, id: &ShardId) -> PathBuf {
    Layout::new(root).shard_path(id)
}

/// The directory of puts in progress in the data directory `root`.
pub fn temp_dir(root: &Path) -> PathBuf {
    Layout::new(root).tmp
}

/// The directory of quarantined shards in the data directory `root`.
pub fn quarantine_dir(root: &Path) -> PathBuf {
    Layout::new(root).quarantine
}

/// fsyncs a directory, making the entries created or renamed in it durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remembers which fan-out directories are known to exist durably, so a put fsyncs the
/// parents only when it creates a directory, and never acknowledges a shard whose directory
/// entry a concurrent creator has not yet made durable.
#[derive(Debug)]
pub(super) struct FanOut {
    durable: Box<[AtomicU64]>, // one bit per `ab/cd` directory: 65536 bits
    create: Mutex<()>,
}

fn fan_index(id: &ShardId) -> usize {
    (usize::from(id.0[0]) << 8) | usize::from(id.0[1])
}

impl FanOut {
    fn new() -> FanOut {
        FanOut {
            durable: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            create: Mutex::new(()),
        }
    }

    fn is_durable(&self, i: usize) -> bool {
        self.durable[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    fn mark(&self, i: usize) {
        self.durable[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
    }

    /// Makes sure `shards/ab/cd` exists and its entry is durable.
    pub fn ensure(&self, layout: &Layout, id: &ShardId) -> io::Result<()> {
        let i = fan_index(id);
        if self.is_durable(i) {
            return Ok(());
        }
        // Rare (once per directory per process): serialize creators so a second put waits
        // for the first one's parent fsyncs instead of racing past them.
        let _guard = self.create.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_durable(i) {
            return Ok(());
        }
        let leaf = layout.leaf_dir(id);
        let mid = leaf.parent().unwrap_or(&layout.shards);
        create_synced(mid, &layout.shards)?;
        create_synced(&leaf, mid)?;
        self.mark(i);
        Ok(())
    }
}

fn create_synced(dir: &Path, parent: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        // Already there: made before this process knew of it, so make sure it is durable too.
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => sync_dir(parent),
    }
}

/// What startup found in a data directory.
#[derive(Debug)]
pub(super) struct Opened {
    pub layout: Layout,
    pub lock: File,
    pub fan_out: FanOut,
    pub shards: u64,
    pub used_bytes: u64,
    pub removed_tmp: u64,
}

/// Creates or opens a data directory: takes the lock, deletes leftover temporary files (puts
/// that never completed, so never acknowledged), and scans the shards to rebuild accounting.
/// The scan also fsyncs every fan-out directory once, so entries a crashed process created
/// but had not yet made durable are durable before anything new is acknowledged.
pub(super) fn open_dir(root: &Path) -> Result<Opened> {
    let layout = Layout::new(root);
    fs::create_dir_all(&layout.root).map_err(io("create directory", &layout.root))?;
    // Before anything is created or deleted inside: refuse a directory we do not understand.
    marker::check_or_create(&layout.root)?;
    for d in [&layout.shards, &layout.tmp, &layout.quarantine] {
        fs::create_dir_all(d).map_err(io("create directory", d))?;
    }
    sync_dir(&layout.root).map_err(io("fsync", &layout.root))?;

    let lock_path = layout.root.join("LOCK");
    let lock = File::create(&lock_path).map_err(io("create", &lock_path))?;
    lock.try_lock().map_err(|e| match e {
        fs::TryLockError::WouldBlock => Error::Locked {
            path: layout.root.clone(),
        },
        fs::TryLockError::Error(e) => Error::io("lock", &lock_path, None, e),
    })?;

    let mut removed_tmp = 0;
    for entry in fs::read_dir(&layout.tmp).map_err(io("list", &layout.tmp))? {
        let path = entry.map_err(io("list", &layout.tmp))?.path();
        fs::remove_file(&path).map_err(io("remove leftover temporary file", &path))?;
        removed_tmp += 1;
    }
    if removed_tmp > 0 {
        tracing::info!(removed_tmp, dir = %layout.tmp.display(), "deleted unfinished puts");
    }

    let fan_out = FanOut::new();
    let (mut shards, mut used_bytes) = (0, 0);
    for mid in hex_names(&layout.shards, 2).map_err(io("list", &layout.shards))? {
        let mid_path = layout.shards.join(&mid);
        sync_dir(&mid_path).map_err(io("fsync", &mid_path))?;
        for leaf in hex_names(&mid_path, 2).map_err(io("list", &mid_path))? {
            let leaf_path = mid_path.join(&leaf);
            let prefix = format!("{mid}{leaf}");
            if let Ok(i) = usize::from_str_radix(&prefix, 16) {
                fan_out.mark(i);
            }
            for name in hex_names(&leaf_path, ShardId::HEX_LEN).map_err(io("list", &leaf_path))? {
                if !name.starts_with(&prefix) {
                    tracing::warn!(file = %leaf_path.join(&name).display(), "shard file in the wrong directory; ignored");
                    continue;
                }
                let path = leaf_path.join(&name);
                match fs::symlink_metadata(&path) {
                    Ok(m) => {
                        shards += 1;
                        used_bytes += m.len();
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("stat", &path, None, e)),
                }
            }
        }
    }
    sync_dir(&layout.shards).map_err(io("fsync", &layout.shards))?;
    Ok(Opened {
        layout,
        lock,
        fan_out,
        shards,
        used_bytes,
        removed_tmp,
    })
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(op, path, None, e)
}

/// Names in `dir` that are `len` lowercase hex digits, sorted (which is id order). Anything
/// else in the directory is not ours and is skipped. A missing directory lists as empty.
pub(super) fn hex_names(dir: &Path, len: usize) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(name) = name.to_str()
            && name.len() == len
            && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}
