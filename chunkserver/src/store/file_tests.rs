//! Tests of the file backend, through the `ShardStore` trait wherever possible.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{BLOCK_LEN, FileStore, FileStoreConfig, PutOutcome, ShardId, ShardStore};
use crate::error::{Damage, Error};
use crate::testutil::{TempDir, files_in, shard};

fn open(dir: &TempDir) -> FileStore {
    FileStore::open(dir.path(), FileStoreConfig::default()).unwrap()
}

pub(super) fn assert_corrupt<T: std::fmt::Debug>(r: crate::Result<T>, want: Damage) {
    match r {
        Err(Error::Corrupt { damage, .. }) => assert_eq!(damage, want),
        other => panic!("expected Corrupt({want:?}), got {other:?}"),
    }
}

/// Flips one bit of a stored shard file at `offset`.
pub(super) fn flip(store: &FileStore, id: &ShardId, offset: u64) {
    let f = File::options()
        .read(true)
        .write(true)
        .open(store.shard_path(id))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
}

fn set_age(store: &FileStore, id: &ShardId, age: Duration) {
    let f = File::options()
        .write(true)
        .open(store.shard_path(id))
        .unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

const HEAD: u64 = 64;

#[test]
fn round_trips_whole_and_ranged_for_many_sizes() {
    let dir = TempDir::new("roundtrip");
    let store = open(&dir);
    let b = BLOCK_LEN;
    let sizes = [0, 1, 4096, b, b + 1, 3 * b + 5, 4 << 20];
    let mut file_bytes = 0;
    for (seed, len) in sizes.into_iter().enumerate() {
        let (id, data) = shard(len, seed as u64);
        assert_eq!(store.put(&id, data.clone()).unwrap(), PutOutcome::Stored);
        assert_eq!(store.get(&id, None).unwrap(), data, "len {len}");
        let stat = store.stat(&id).unwrap().unwrap();
        assert_eq!((stat.id, stat.len), (id, len as u64));
        file_bytes += fs::metadata(store.shard_path(&id)).unwrap().len();
        let l = len as u64;
        let ranges = [
            (0, 0),
            (0, l),
            (0, l / 2),
            (l / 3, l - l / 5),
            (l.saturating_sub(1), l),
        ];
        let more = [
            (b as u64 - 1, b as u64 + 1),
            (b as u64, 2 * b as u64),
            (1, 2 * b as u64 + 7),
        ];
        for (s, e) in ranges
            .into_iter()
            .chain(more.into_iter().filter(|r| r.1 <= l))
        {
            let got = store.get(&id, Some(s..e)).unwrap();
            assert_eq!(
                got,
                data.slice(s as usize..e as usize),
                "len {len} range {s}..{e}"
            );
        }
    }
    let usage = store.usage();
    assert_eq!(
        (usage.shards, usage.used_bytes),
        (sizes.len() as u64, file_bytes)
    );
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[test]
fn ranges_outside_the_shard_are_refused() {
    let dir = TempDir::new("range");
    let store = open(&dir);
    let (id, data) = shard(100, 1);
    store.put(&id, data).unwrap();
    #[allow(clippy::reversed_empty_ranges)] // a reversed range is one of the cases under test
    let bad = [0..101, 50..40, 101..101];
    for r in bad {
        assert!(matches!(
            store.get(&id, Some(r)),
            Err(Error::BadRange { len: 100, .. })
        ));
    }
}

#[test]
fn wrong_hash_is_refused_and_nothing_is_stored() {
    let dir = TempDir::new("wronghash");
    let store = open(&dir);
    let (id, _) = shard(1000, 1);
    let (other, data) = shard(1000, 2);
    match store.put(&id, data) {
        Err(Error::WrongHash { expected, actual }) => assert_eq!((expected, actual), (id, other)),
        r => panic!("{r:?}"),
    }
    assert!(matches!(store.get(&id, None), Err(Error::NotFound { .. })));
    assert_eq!(store.usage().shards, 0);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

#[test]
fn put_is_idempotent_and_refreshes_age() {
    let dir = TempDir::new("idem");
    let store = open(&dir);
    let (id, data) = shard(5000, 3);
    assert_eq!(store.put(&id, data.clone()).unwrap(), PutOutcome::Stored);
    let usage = store.usage();
    set_age(&store, &id, Duration::from_secs(3600));
    assert_eq!(
        store.put(&id, data.clone()).unwrap(),
        PutOutcome::AlreadyPresent
    );
    assert_eq!(store.usage(), usage);
    assert!(store.stat(&id).unwrap().unwrap().age < Duration::from_secs(60));
    assert_eq!(store.get(&id, None).unwrap(), data);
}

#[test]
fn concurrent_puts_of_one_id_store_it_once() {
    let dir = TempDir::new("race");
    let store = open(&dir);
    let (id, data) = shard(3 * BLOCK_LEN, 4);
    let outcomes: Vec<PutOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| store.put(&id, data.clone())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PutOutcome::Stored)
            .count(),
        1
    );
    assert_eq!(store.usage().shards, 1);
    assert_eq!(store.get(&id, None).unwrap(), data);
}

#[test]
fn delete_is_idempotent_and_frees_space() {
    let dir = TempDir::new("delete");
    let store = open(&dir);
    let (id, data) = shard(777, 5);
    store.put(&id, data).unwrap();
    assert!(store.delete(&id).unwrap());
    assert!(!store.delete(&id).unwrap());
    assert_eq!((store.usage().shards, store.usage().used_bytes), (0, 0));
    assert!(store.stat(&id).unwrap().is_none());
}

#[test]
fn a_flipped_data_byte_is_never_served_and_is_quarantined() {
    let dir = TempDir::new("flip");
    let store = open(&dir);
    let (small, small_data) = shard(4096, 6);
    store.put(&small, small_data).unwrap();
    flip(&store, &small, HEAD + 100);
    assert_corrupt(store.get(&small, Some(0..10)), Damage::BadData);
    assert!(matches!(
        store.get(&small, None),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(files_in(store.quarantine_dir()).len(), 1);
    assert_eq!(store.usage().shards, 0);
}

#[test]
fn ranged_gets_verify_only_the_blocks_they_touch() {
    let dir = TempDir::new("blocks");
    let store = open(&dir);
    let (id, data) = shard(8 * BLOCK_LEN, 7);
    store.put(&id, data.clone()).unwrap();
    let list_len = 8 * 32;
    // Damage block 5.
    flip(&store, &id, HEAD + list_len + 5 * BLOCK_LEN as u64 + 9);
    let b = BLOCK_LEN as u64;
    assert_eq!(
        store.get(&id, Some(b..3 * b)).unwrap(),
        data.slice(BLOCK_LEN..3 * BLOCK_LEN)
    );
    assert_corrupt(
        store.get(&id, Some(5 * b + 100..5 * b + 200)),
        Damage::BadData,
    );
    assert!(matches!(
        store.get(&id, Some(0..1)),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn damaged_files_are_detected_by_kind() {
    let dir = TempDir::new("damage");
    let store = open(&dir);
    let big = 2 * BLOCK_LEN + 1;

    let (a, d) = shard(big, 10);
    store.put(&a, d).unwrap();
    flip(&store, &a, HEAD + 3); // inside the hash list
    assert_corrupt(store.get(&a, Some(0..1)), Damage::BadHashList);

    let (t, d) = shard(big, 11);
    store.put(&t, d).unwrap();
    let f = File::options()
        .write(true)
        .open(store.shard_path(&t))
        .unwrap();
    f.set_len(HEAD + 500).unwrap(); // torn
    assert_corrupt(store.get(&t, None), Damage::BadLength);

    let (g, d) = shard(10, 12);
    store.put(&g, d).unwrap();
    fs::write(
        store.shard_path(&g),
        b"not a shard at all, but long enough to hold a header....",
    )
    .unwrap();
    assert_corrupt(store.get(&g, None), Damage::BadLength);
    fs::write(store.shard_path(&g), vec![7u8; 200]).unwrap();
    assert_corrupt(store.get(&g, None), Damage::BadMagic);

    // A valid file of another shard under this name.
    let (w, d) = shard(10, 13);
    let (x, dx) = shard(10, 14);
    store.put(&w, d).unwrap();
    store.put(&x, dx).unwrap();
    fs::copy(store.shard_path(&x), store.shard_path(&w)).unwrap();
    assert_corrupt(store.get(&w, None), Damage::WrongId);

    // Header damage is caught by stat too (which never reads data).
    flip(&store, &x, 20);
    assert!(matches!(
        store.stat(&x),
        Err(Error::Corrupt {
            damage: Damage::BadHeader,
            ..
        })
    ));
    assert_eq!(files_in(store.quarantine_dir()).len(), 6);
}

#[test]
fn a_newer_format_version_is_reported_and_left_alone() {
    let dir = TempDir::new("version");
    let store = open(&dir);
    let (id, data) = shard(10, 15);
    store.put(&id, data).unwrap();
    let f = File::options()
        .write(true)
        .open(store.shard_path(&id))
        .unwrap();
    f.write_all_at(&9u16.to_le_bytes(), 8).unwrap();
    assert!(matches!(
        store.get(&id, None),
        Err(Error::UnsupportedFormat { version: 9, .. })
    ));
    assert!(store.shard_path(&id).exists());
}

#[test]
fn list_pages_cover_everything_in_id_order() {
    let dir = TempDir::new("list");
    let store = open(&dir);
    let mut ids: Vec<ShardId> = (0..50)
        .map(|i| {
            let (id, d) = shard(10, 100 + i);
            store.put(&id, d).unwrap();
            id
        })
        .collect();
    ids.sort();
    fs::write(store.shard_path(&ids[0]).with_file_name("stray.txt"), b"x").unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(cursor.as_ref(), 7).unwrap();
        assert!(page.shards.len() <= 7);
        seen.extend(page.shards.iter().map(|s| s.id));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(store.list(Some(&ids[47]), 10).unwrap().shards.len(), 2);
    assert_eq!(store.list(Some(&ids[49]), 10).unwrap(), Default::default());
}

#[test]
fn list_older_than_finds_only_old_shards() {
    let dir = TempDir::new("sweep");
    let store = open(&dir);
    let mut old = Vec::new();
    for i in 0..30 {
        let (id, d) = shard(10, 200 + i);
        store.put(&id, d).unwrap();
        if i % 3 == 0 {
            set_age(&store, &id, Duration::from_secs(7200));
            old.push(id);
        }
    }
    old.sort();
    let grace = Duration::from_secs(3600);
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_older_than(grace, cursor.as_ref(), 4).unwrap();
        assert!(page.shards.iter().all(|s| s.age >= grace));
        found.extend(page.shards.iter().map(|s| s.id));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(found, old);
}

#[test]
fn reopen_rebuilds_usage_and_deletes_unfinished_puts() {
    let dir = TempDir::new("reopen");
    let (id, data) = shard(BLOCK_LEN * 2, 20);
    let usage = {
        let store = open(&dir);
        store.put(&id, data.clone()).unwrap();
        store.put(&shard(3, 21).0, shard(3, 21).1).unwrap();
        fs::write(dir.path().join("tmp").join("leftover.0.tmp"), b"partial").unwrap();
        store.usage()
    };
    let store = open(&dir);
    assert_eq!(store.usage(), usage);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.get(&id, None).unwrap(), data);
}

#[test]
fn a_data_dir_is_opened_by_one_store_at_a_time() {
    let dir = TempDir::new("lock");
    let store = open(&dir);
    assert!(matches!(
        FileStore::open(dir.path(), FileStoreConfig::default()),
        Err(Error::Locked { .. })
    ));
    drop(store);
    open(&dir);
}

#[test]
fn capacity_limits_puts_but_not_reads_or_deletes() {
    let dir = TempDir::new("capacity");
    let config = FileStoreConfig {
        capacity: Some(10_000),
    };
    let store = FileStore::open(dir.path(), config).unwrap();
    let (a, da) = shard(6000, 30);
    let (b, db) = shard(6000, 31);
    store.put(&a, da.clone()).unwrap();
    assert!(matches!(
        store.put(&b, db.clone()),
        Err(Error::NoSpace { needed: 6064, .. })
    ));
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.get(&a, None).unwrap(), da);
    assert_eq!(store.put(&a, da).unwrap(), PutOutcome::AlreadyPresent);
    assert!(store.delete(&a).unwrap());
    assert_eq!(store.put(&b, db).unwrap(), PutOutcome::Stored);
}

/// A real full disk: a 2 MiB tmpfs. Needs root (mount); skipped with a note otherwise.
#[test]
fn a_full_disk_fails_puts_with_no_space_and_leaves_nothing_behind() {
    let dir = TempDir::new("enospc");
    let Some(_mount) = Tmpfs::mount(dir.path(), "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let store = open(&dir);
    let mut stored = Vec::new();
    let mut full = false;
    for i in 0..100 {
        let (id, d) = shard(BLOCK_LEN, 300 + i);
        match store.put(&id, d.clone()) {
            Ok(_) => stored.push((id, d)),
            Err(Error::NoSpace { id: e, .. }) => {
                assert_eq!(e, id);
                full = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full && !stored.is_empty());
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.usage().shards, stored.len() as u64);
    for (id, d) in &stored {
        assert_eq!(&store.get(id, None).unwrap(), d);
    }
    assert!(store.delete(&stored[0].0).unwrap());
    let (id, d) = shard(BLOCK_LEN / 2, 999);
    assert_eq!(store.put(&id, d).unwrap(), PutOutcome::Stored);
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn oversized_puts_are_refused_before_hashing() {
    let dir = TempDir::new("toolarge");
    let store = open(&dir);
    // calloc'd and never touched: costs no memory or time.
    let data = Bytes::from(vec![0u8; super::MAX_SHARD_LEN as usize + 1]);
    let id = ShardId([0; 32]);
    assert!(matches!(store.put(&id, data), Err(Error::TooLarge { .. })));
}

/// How the RPC handler will call the store: one `spawn_blocking` per operation.
#[tokio::test]
async fn usable_from_async_code_through_spawn_blocking() {
    let dir = TempDir::new("async");
    let store: std::sync::Arc<dyn ShardStore> = std::sync::Arc::new(open(&dir));
    let (id, data) = shard(100_000, 40);
    let s = std::sync::Arc::clone(&store);
    let d = data.clone();
    let put = tokio::task::spawn_blocking(move || s.put(&id, d))
        .await
        .unwrap();
    assert_eq!(put.unwrap(), PutOutcome::Stored);
    let s = std::sync::Arc::clone(&store);
    let got = tokio::task::spawn_blocking(move || s.get(&id, Some(10..90_000)))
        .await
        .unwrap();
    assert_eq!(got.unwrap(), data.slice(10..90_000));
}
