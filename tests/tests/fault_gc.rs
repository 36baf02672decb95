//! Space comes back after deletes, and GC never takes what a concurrent writer of the same
//! content needs (issue #6, point 7). GC grace, upload window and sweep are shortened by
//! flags so the test runs in seconds. `TESSERA_FAULT_MIB=1024` runs the full-size delete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera_tests::MetaOptions;
use tessera_tests::fault::{fsck, noise, shard_bytes, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};

fn options() -> MetaOptions {
    MetaOptions::default().with_fast_gc()
}

fn dirs(c: &DevCluster) -> Vec<PathBuf> {
    c.chunks.iter().map(|s| s.data.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_files_give_their_space_back() {
    let c = DevCluster::start_opts("fault-gc", 3, 6, "4+2", 1, &options()).await;
    let dirs = dirs(&c);
    let before = shard_bytes(dirs.iter().map(|d| d.as_path()));
    // TESSERA_FAULT_MIB sets the size deleted (CI: 64 MiB; the full run uses 1024).
    let mib: u64 = std::env::var("TESSERA_FAULT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let names: Vec<String> = (0..mib.div_ceil(8)).map(|i| format!("g{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(c.mount(0).join(n), noise(8 << 20, 500 + i as u64)).unwrap();
    }
    let full = shard_bytes(dirs.iter().map(|d| d.as_path()));
    let written = names.len() as u64 * (8 << 20);
    assert!(
        full >= before + written * 3 / 2,
        "{written} bytes at 4+2 should store half as much again in shards ({before} -> {full})"
    );
    let deleted = Instant::now();
    for n in &names {
        std::fs::remove_file(c.mount(0).join(n)).unwrap();
    }
    let after = wait_for(
        "shard bytes to return to their level before the writes",
        Duration::from_secs(180),
        Duration::from_millis(250),
        || {
            let now = shard_bytes(dirs.iter().map(|d| d.as_path()));
            (now <= before).then_some(now)
        },
    )
    .await;
    eprintln!(
        "{written} bytes deleted: shard bytes {before} -> {full} -> {after}, back {:.1} s \
         after the deletes (grace 1 s, upload window 3 s)",
        deleted.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_of_the_same_content_during_gc_loses_nothing() {
    let c = DevCluster::start_opts("fault-gc-dedup", 3, 6, "4+2", 1, &options()).await;
    let contents: Vec<Vec<u8>> = (0..4).map(|i| noise(6 << 20, 900 + i)).collect();
    let mnt = c.mount(0).path().to_path_buf();
    // Round after round: delete the previous copies (their stripes go to GC) and write the
    // same content under new names, so commits keep hitting stripes that GC is about to
    // claim, is deleting, or has just deleted.
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(15) {
        for (i, data) in contents.iter().enumerate() {
            if round > 0 {
                std::fs::remove_file(mnt.join(format!("d{}-{i}", round - 1))).unwrap();
            }
            std::fs::write(mnt.join(format!("d{round}-{i}")), data).unwrap();
        }
        round += 1;
        // Let the grace run out now and then, so claims and deletes happen between rounds.
        tokio::time::sleep(Duration::from_millis(300 * (round % 5))).await;
    }
    // Past the grace and the upload window: anything GC would wrongly delete is gone now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop_caches();
    for (i, data) in contents.iter().enumerate() {
        let got = std::fs::read(mnt.join(format!("d{}-{i}", round - 1))).unwrap();
        assert!(got == *data, "copy {i} of round {} differs", round - 1);
    }
    let (code, out) = fsck(&c.meta.addrs(), &c.secret_file, &["--deep"]);
    assert_eq!(code, 0, "after {round} rounds:\n{out}");
    eprintln!("{round} delete-and-rewrite rounds, all data intact");
}
