//! Lost and damaged shards come back by themselves (issue #6, points 1 and 2).
//!
//! Repair: files written with EC 4+2 on 6 chunkservers; two are SIGKILLed and stay dead;
//! every file still reads back bit-exact; two empty chunkservers join, and once the leader
//! has marked the dead ones down, repair rebuilds every lost shard on the newcomers until
//! `tessera fsck` is clean. `TESSERA_FAULT_MIB` sets the data size (CI: 48 MiB; the full
//! run in docs/operations.md uses 1024).
//!
//! Bit rot: a byte is flipped in 10 shard files on disk; reads still return the right data
//! (parity), the damaged shards are reported and rebuilt in place, and a deep fsck is clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use tessera_client::MetaClientOptions;
use tessera_proto::meta::{Query, Response};
use tessera_tests::MetaOptions;
use tessera_tests::chunk::shard_file;
use tessera_tests::fault::{fsck, noise, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};

fn options() -> MetaOptions {
    MetaOptions {
        dead_after_ms: Some(3_000),
        extra_args: vec!["--repair-interval-ms".into(), "500".into()],
        ..MetaOptions::default()
    }
}

/// Writes `total` bytes as files of 8 MiB (the last one shorter); returns (name, content).
fn write_files(c: &DevCluster, total: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let (mut left, mut i) = (total, 0u64);
    while left > 0 {
        let n = left.min(8 << 20) - (i as usize % 3); // sizes not all stripe-aligned
        let data = noise(n.max(1), seed + i);
        let name = format!("f{i}");
        std::fs::write(c.mount(0).join(&name), &data).unwrap();
        files.push((name, data));
        left = left.saturating_sub(8 << 20);
        i += 1;
    }
    files
}

fn verify(c: &DevCluster, files: &[(String, Vec<u8>)]) {
    drop_caches();
    for (name, data) in files {
        let got = std::fs::read(c.mount(0).join(name)).unwrap();
        assert!(got == *data, "{name} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_chunkservers_are_rebuilt_onto_new_ones() {
    let mib: usize = std::env::var("TESSERA_FAULT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut c = DevCluster::start_opts("fault-repair", 3, 6, "4+2", 1, &options()).await;
    let files = write_files(&c, mib << 20, 100);
    let meta = c.meta.addrs();
    let (code, out) = fsck(&meta, &c.secret_file, &[]);
    assert_eq!(code, 0, "fsck before the failure:\n{out}");

    c.chunks[1].kill9();
    c.chunks[4].kill9();
    let killed = Instant::now();
    verify(&c, &files);
    c.add_chunkserver().await;
    c.add_chunkserver().await;

    let secret = c.secret_file.clone();
    let (_, last) = wait_for(
        "fsck to report full redundancy after repair",
        Duration::from_secs(600),
        Duration::from_secs(2),
        || {
            let (code, out) = fsck(&meta, &secret, &[]);
            (code == 0).then_some((code, out))
        },
    )
    .await;
    eprintln!(
        "full redundancy {:.1} s after killing 2 of 6 chunkservers holding {mib} MiB \
         (dead-after 3 s):\n{last}",
        killed.elapsed().as_secs_f64()
    );
    // Every shard now lives on a running server: reads need no reconstruction, and a deep
    // check re-hashes them all.
    let (code, out) = fsck(&meta, &secret, &["--deep"]);
    assert_eq!(code, 0, "deep fsck after repair:\n{out}");
    verify(&c, &files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_shards_are_detected_and_rebuilt_in_place() {
    let c = DevCluster::start_opts("fault-rot", 3, 6, "4+2", 1, &options()).await;
    let files = write_files(&c, 48 << 20, 200);
    // One shard in each of 10 stripes (bit rot is independent; more than m = 2 in one stripe
    // would be a loss no code can undo), picked by a fixed seed so a failure can be replayed.
    let client = c.meta.client(MetaClientOptions::default());
    let Ok(Ok(Response::Stripes(stripes))) = client
        .read(Query::Stripes {
            after: None,
            limit: 1000,
        })
        .await
    else {
        panic!("cannot list stripes");
    };
    assert!(stripes.len() >= 10, "only {} stripes", stripes.len());
    let picks = noise(80, 20261125);
    let mut damaged = Vec::new();
    for (n, w) in picks.chunks(8).enumerate() {
        let r = u64::from_le_bytes(w.try_into().unwrap());
        let layout = &stripes[n * stripes.len() / 10].stripe.layout;
        let id = layout.shards[r as usize % layout.shards.len()].shard;
        let path = c
            .chunks
            .iter()
            .map(|s| shard_file(&s.data, &id))
            .find(|p| p.exists())
            .expect("the shard file is on some chunkserver");
        damaged.push((path, r));
    }
    for (path, r) in &damaged {
        let mut bytes = std::fs::read(path).unwrap();
        // In the second half of the file, past the header: a byte of shard data.
        let at = bytes.len() - 1 - (*r as usize >> 8) % (bytes.len() / 2);
        bytes[at] ^= 0x5a;
        std::fs::write(path, bytes).unwrap();
    }
    let meta = c.meta.addrs();
    let (code, out) = fsck(&meta, &c.secret_file, &["--deep"]);
    assert_eq!(code, 1, "a deep fsck must see the damage:\n{out}");
    assert_eq!(out.matches("corrupt shard").count(), 10, "{out}");

    verify(&c, &files);
    let secret = c.secret_file.clone();
    wait_for(
        "repair of the corrupt shards",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || (fsck(&meta, &secret, &["--deep"]).0 == 0).then_some(()),
    )
    .await;
    for (path, _) in &damaged {
        assert!(path.exists(), "{} was not rebuilt", path.display());
    }
    verify(&c, &files);
}
