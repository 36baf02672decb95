//! Tests of the scrubber against a real file store.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::store::{
    BLOCK_LEN, FileStore, FileStoreConfig, ListPage, PutOutcome, ShardInfo, ShardStat, Usage,
};
use crate::testutil::{TempDir, shard};

fn store_with(dir: &TempDir, n: u64, len: usize) -> (Arc<FileStore>, Vec<ShardId>) {
    let store = Arc::new(FileStore::open(dir.path(), FileStoreConfig::default()).unwrap());
    let ids = (0..n)
        .map(|i| {
            let (id, d) = shard(len, 1000 + i);
            store.put(&id, d).unwrap();
            id
        })
        .collect();
    (store, ids)
}

fn flip_last_byte(store: &FileStore, id: &ShardId) {
    let f = File::options()
        .read(true)
        .write(true)
        .open(store.shard_path(id))
        .unwrap();
    let at = f.metadata().unwrap().len() - 1;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[!b[0]], at).unwrap();
}

fn unlimited() -> ScrubConfig {
    ScrubConfig {
        bytes_per_sec: 0,
        page_len: 3,
        pass_interval: Duration::from_secs(3600),
    }
}

#[test]
fn a_pass_reports_a_flipped_byte_and_quarantines_the_shard() {
    let dir = TempDir::new("scrub-pass");
    let (store, ids) = store_with(&dir, 10, 2 * BLOCK_LEN + 10);
    flip_last_byte(&store, &ids[4]);
    let scrubber = Scrubber::new(Arc::clone(&store), unlimited());
    let mut reports = Vec::new();
    let stats = scrubber
        .run_pass(&Stop::new(), &mut |r| reports.push(r))
        .unwrap();
    assert_eq!(
        reports,
        vec![ScrubReport::Corrupt {
            id: ids[4],
            damage: Damage::BadData
        }]
    );
    assert_eq!((stats.shards, stats.corrupt, stats.finished), (10, 1, true));
    assert_eq!(stats.bytes, 9 * (2 * BLOCK_LEN as u64 + 10));
    assert!(!store.shard_path(&ids[4]).exists());
    // The next pass is clean.
    let stats = scrubber
        .run_pass(&Stop::new(), &mut |r| panic!("{r:?}"))
        .unwrap();
    assert_eq!((stats.shards, stats.corrupt), (9, 0));
}

#[test]
fn a_running_scrubber_reports_within_one_pass_and_stops_promptly() {
    let dir = TempDir::new("scrub-thread");
    let (store, ids) = store_with(&dir, 6, 5000);
    flip_last_byte(&store, &ids[2]);
    let (tx, rx) = mpsc::channel();
    let config = ScrubConfig {
        bytes_per_sec: 1 << 30,
        ..unlimited()
    };
    let handle = Scrubber::new(Arc::clone(&store), config)
        .spawn(move |r| tx.send(r).unwrap())
        .unwrap();
    let wait = Duration::from_secs(30);
    assert_eq!(
        rx.recv_timeout(wait).unwrap(),
        ScrubReport::Corrupt {
            id: ids[2],
            damage: Damage::BadData
        }
    );
    match rx.recv_timeout(wait).unwrap() {
        ScrubReport::PassComplete(stats) => assert_eq!((stats.shards, stats.corrupt), (6, 1)),
        r => panic!("{r:?}"),
    }
    // Asleep for an hour now; stop must wake it.
    let t = Instant::now();
    handle.stop();
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_rate_limit_paces_a_pass() {
    let dir = TempDir::new("scrub-rate");
    let (store, _) = store_with(&dir, 4, BLOCK_LEN);
    // 256 KiB at 1 MiB/s: at least ~250 ms (only a lower bound is checked).
    let config = ScrubConfig {
        bytes_per_sec: 1 << 20,
        ..unlimited()
    };
    let stats = Scrubber::new(store, config)
        .run_pass(&Stop::new(), &mut |_| {})
        .unwrap();
    assert!(
        stats.elapsed >= Duration::from_millis(240),
        "{:?}",
        stats.elapsed
    );
}

#[test]
fn a_stopped_pass_ends_unfinished_and_reports_nothing_more() {
    let dir = TempDir::new("scrub-stop");
    let (store, _) = store_with(&dir, 3, 100);
    let stop = Stop::new();
    stop.stop();
    let stats = Scrubber::new(store, unlimited())
        .run_pass(&stop, &mut |r| panic!("{r:?}"))
        .unwrap();
    assert!(!stats.finished);
    assert_eq!(stats.shards, 0);
}

/// A store whose listing names one shard that is not there, as if its file was lost.
struct Phantom {
    inner: FileStore,
    ghost: ShardId,
}

impl ShardStore for Phantom {
    fn put(&self, id: &ShardId, data: Bytes) -> Result<PutOutcome> {
        self.inner.put(id, data)
    }
    fn get(&self, id: &ShardId, range: Option<Range<u64>>) -> Result<Bytes> {
        self.inner.get(id, range)
    }
    fn delete(&self, id: &ShardId) -> Result<bool> {
        self.inner.delete(id)
    }
    fn list(&self, after: Option<&ShardId>, limit: usize) -> Result<ListPage> {
        let mut page = self.inner.list(after, limit)?;
        if after.is_none() {
            page.shards.insert(
                0,
                ShardInfo {
                    id: self.ghost,
                    age: Duration::ZERO,
                },
            );
        }
        Ok(page)
    }
    fn stat(&self, id: &ShardId) -> Result<Option<ShardStat>> {
        self.inner.stat(id)
    }
    fn usage(&self) -> Usage {
        self.inner.usage()
    }
}

#[test]
fn a_listed_shard_that_is_gone_is_reported_missing() {
    let dir = TempDir::new("scrub-missing");
    let (store, _) = store_with(&dir, 2, 100);
    drop(store);
    let inner = FileStore::open(dir.path(), FileStoreConfig::default()).unwrap();
    let ghost = shard(10, 1).0;
    let scrubber = Scrubber::new(Arc::new(Phantom { inner, ghost }), unlimited());
    let mut reports = Vec::new();
    let stats = scrubber
        .run_pass(&Stop::new(), &mut |r| reports.push(r))
        .unwrap();
    assert_eq!(reports, vec![ScrubReport::Missing { id: ghost }]);
    assert_eq!((stats.shards, stats.missing), (3, 1));
}
