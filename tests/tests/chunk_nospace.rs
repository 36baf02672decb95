//! A full disk (issue 4, acceptance 4): with a small tmpfs as the data directory, puts fail
//! with `NoSpace` once it is full, nothing partial remains, reads and deletes keep working,
//! and heartbeats say the server is full.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use tessera_proto::ShardId;
use tessera_proto::chunk::{ChunkError, DeleteOutcome, PutOutcome};
use tessera_tests::chunk::{ChunkOptions, Chunkserver, shard, temp_dir};
use tessera_tests::process::write_secret;
use tessera_tests::{FakeMeta, TempDir, Tmpfs};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_puts_cleanly_and_keeps_serving() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    // Drop order (reverse of declaration): server, mount, directory.
    let dir = TempDir::new("chunk-nospace");
    let (path, secret) = write_secret(dir.path());
    let data = dir.join("data");
    let _mount = Tmpfs::mount(&data, 8 << 20).unwrap();
    let meta = FakeMeta::start(&secret).await;
    let opts = ChunkOptions {
        meta: vec![meta.addr()],
        ..ChunkOptions::default()
    };
    let server = Chunkserver::start(&dir, "chunk", &data, (&path, &secret), &opts).await;
    let c = server.client();

    // Fill it with 1 MiB shards.
    let mut stored: Vec<ShardId> = Vec::new();
    let mut refused = None;
    for seed in 0..20 {
        let (id, bytes) = shard(MIB, seed);
        match c.put(id, bytes).await {
            Ok(PutOutcome::Stored) => stored.push(id),
            Err(ChunkError::NoSpace { id: failed, .. }) => {
                assert_eq!(failed, id);
                refused = Some(id);
                break;
            }
            other => panic!("unexpected put result {other:?}"),
        }
    }
    let refused = refused.expect("an 8 MiB tmpfs never filled up");
    assert!(stored.len() >= 4, "only {} shards fit", stored.len());
    assert_nothing_partial(&server, &stored).await;
    assert_eq!(
        c.get(refused, None).await,
        Err(ChunkError::NotFound { id: refused })
    );

    // Reads keep working and the leader hears that the server is full.
    for (seed, id) in stored.iter().enumerate() {
        assert!(c.get(*id, None).await.unwrap() == shard(MIB, seed as u64).1);
    }
    meta.wait_heartbeat(Duration::from_secs(10), |h| h.full)
        .await;

    // A 4 MiB put that starts writing and runs out of space half-way leaves nothing either.
    for id in stored.drain(..2) {
        assert_eq!(c.delete(id).await, Ok(DeleteOutcome::Deleted));
    }
    let (big, big_bytes) = shard(4 * MIB, 99);
    assert!(matches!(
        c.put(big, big_bytes).await,
        Err(ChunkError::NoSpace { .. })
    ));
    assert_nothing_partial(&server, &stored).await;

    // Space freed by deletes is usable again, and the server stops saying it is full.
    let (again, again_bytes) = shard(MIB, 1000);
    assert_eq!(c.put(again, again_bytes).await, Ok(PutOutcome::Stored));
    stored.push(again);
    assert_nothing_partial(&server, &stored).await;
    meta.wait_heartbeat(Duration::from_secs(10), |h| {
        !h.full && h.shards == stored.len() as u64
    })
    .await;
}

/// The inventory is exactly `stored` and no temporary file is left.
async fn assert_nothing_partial(server: &Chunkserver, stored: &[ShardId]) {
    let listed: HashSet<ShardId> = server
        .client()
        .list_all()
        .await
        .iter()
        .map(|s| s.id)
        .collect();
    let want: HashSet<ShardId> = stored.iter().copied().collect();
    assert_eq!(listed, want);
    let leftovers: Vec<_> = std::fs::read_dir(temp_dir(&server.data))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
