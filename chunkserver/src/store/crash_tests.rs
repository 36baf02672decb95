//! Crash test: a child process puts shards from several threads and prints each id once its
//! put has returned; the test kills it with SIGKILL mid-stream, reopens the store and checks
//! that every acknowledged shard is there and verifies, and that nothing partial is visible.
//!
//! The child is this same test binary, re-run on `child_writer` with an environment variable
//! naming the data directory (without it, `child_writer` does nothing and passes).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{FileStore, FileStoreConfig, ShardId, ShardStore};
use crate::testutil::{TempDir, files_in, shard};

const DIR_VAR: &str = "TESSERA_CRASH_CHILD_DIR";
const SIZES: [usize; 6] = [0, 1, 4096, 70_000, 300_000, 1 << 20];

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let store = FileStore::open(&dir, FileStoreConfig::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20); // stops by itself if never killed
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = &store;
            s.spawn(move || {
                for i in 0..10_000u64 {
                    if Instant::now() > deadline {
                        return;
                    }
                    let seed = t * 1_000_000 + i;
                    let (id, data) = shard(SIZES[(seed % 6) as usize], seed);
                    store.put(&id, data).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "acked {id}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn kill_9_during_concurrent_puts_loses_no_acknowledged_shard() {
    let dir = TempDir::new("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::crash_tests::child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: Vec<ShardId> = Vec::new();
    while acked.len() < 60 {
        let Some(line) = lines.next() else { break };
        if let Some(id) = line.unwrap().strip_prefix("acked ") {
            acked.push(id.parse().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    // Acknowledgements already written before the kill count too.
    for line in lines {
        if let Some(id) = line.unwrap().strip_prefix("acked ") {
            acked.push(id.parse().unwrap());
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 60,
        "child stopped early after {} puts",
        acked.len()
    );

    let store = FileStore::open(dir.path(), FileStoreConfig::default()).unwrap();
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    for id in &acked {
        let data = store.get(id, None).unwrap();
        assert_eq!(ShardId::of(&data), *id);
    }
    // Every shard visible under any id is complete and verifies (none half-written).
    let listed = store.list(None, usize::MAX).unwrap().shards;
    // (Acknowledged ids repeat: every empty shard has the same id.)
    let distinct: std::collections::BTreeSet<_> = acked.iter().collect();
    assert!(listed.len() >= distinct.len());
    for s in &listed {
        store.get(&s.id, None).unwrap();
    }
    assert_eq!(store.usage().shards, listed.len() as u64);
    assert!(files_in(store.quarantine_dir()).is_empty());
}
