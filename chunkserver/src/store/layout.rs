//! Where things live in a data directory, and the startup pass over it.
//!
//! ```text
//! DIR/FORMAT                `tessera-chunk-data 1`: the layout version (see `marker.rs`)
//! DIR/LOCK                  held with an exclusive file lock while a store has DIR open
//! DIR/shards/ab/<hex>       a shard, fanned out by the first id byte (256 directories)
//! DIR/tmp/<hex>.<n>.tmp     puts in progress; all of it is deleted at startup
//! DIR/quarantine/<hex>.<t>  shards that failed verification, kept for inspection
//! ```
//!
//! Temporary files live in their own directory on the same filesystem, so a link into
//! `shards/` is atomic and a crash can never leave a partial file under a shard's name.
//!
//! One fan-out level of 256 directories, all created when the store is opened: a put then
//! never creates a directory. An earlier layout had two levels (65,536 leaves) created on
//! demand; in a young store nearly every put created a leaf and paid two extra directory
//! fsyncs under a mutex that serialized concurrent puts, and measured 1 MiB puts at 8 in
//! flight ran at about half of a plain fsynced fio write. The cost of one level is longer
//! directories: 10 million shards are about 40,000 entries per directory, which ext4's hashed
//! directories handle, and which a listing page reads once (`list.rs`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
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
        self.shards.join(id.hex_prefix(1))
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

/// Number of fan-out directories: one per value of the id's first byte.
pub(super) const FAN_OUT: usize = 256;

/// What startup found in a data directory.
#[derive(Debug)]
pub(super) struct Opened {
    pub layout: Layout,
    pub lock: File,
    pub shards: u64,
    pub used_bytes: u64,
    pub removed_tmp: u64,
}

/// Creates or opens a data directory: checks its format marker, takes the lock, creates the
/// fan-out directories (so a put never has to), deletes leftover temporary files (puts that
/// never completed, so never acknowledged), and scans the shards to rebuild accounting.
///
/// Existing fan-out directories are not fsynced here: an entry that a crashed process linked
/// but had not made durable was never acknowledged, and a later put of that id finds it
/// present and fsyncs the directory itself before acknowledging.
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

    let (mut shards, mut used_bytes, mut created) = (0, 0, 0);
    for first in 0..FAN_OUT {
        let prefix = format!("{first:02x}");
        let leaf = layout.shards.join(&prefix);
        match fs::create_dir(&leaf) {
            Ok(()) => created += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", &leaf, None, e)),
        }
        for name in hex_names(&leaf, ShardId::HEX_LEN).map_err(io("list", &leaf))? {
            if !name.starts_with(&prefix) {
                tracing::warn!(file = %leaf.join(&name).display(), "shard file in the wrong directory; ignored");
                continue;
            }
            let path = leaf.join(&name);
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
    if created > 0 {
        // One fsync makes every new entry durable; each directory's own inode is written by
        // the first put's fsync of it.
        sync_dir(&layout.shards).map_err(io("fsync", &layout.shards))?;
    }
    Ok(Opened {
        layout,
        lock,
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
