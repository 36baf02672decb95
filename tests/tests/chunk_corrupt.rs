//! Bit rot on disk (issue 4, acceptance 2): a flipped byte in a stored shard file is never
//! served; the read gets `Corrupt`, the shard is quarantined and reported to the metadata
//! leader, and the scrubber finds (and reports) one nobody read within one pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use tessera_proto::ShardId;
use tessera_proto::chunk::ChunkError;
use tessera_tests::chunk::{ChunkOptions, Chunkserver, quarantine_dir, shard, shard_file};
use tessera_tests::process::write_secret;
use tessera_tests::{FakeMeta, TempDir};

const WAIT: Duration = Duration::from_secs(15);

/// Flips one bit of the byte `from_end` bytes before the end of the shard's file (the data
/// is at the end of the file, after the header and hash list).
fn flip_byte(data_dir: &Path, id: &ShardId, from_end: u64) {
    let path = shard_file(data_dir, id);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1 - from_end as usize;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_is_never_served_and_is_reported() {
    let dir = TempDir::new("chunk-flip");
    let (path, secret) = write_secret(dir.path());
    let meta = FakeMeta::start(&secret).await;
    let opts = ChunkOptions {
        meta: vec![meta.addr()],
        // The startup pass sees an empty store; no other pass runs during this test, so the
        // client read is the one that finds the damage.
        ..ChunkOptions::default()
    };
    let server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let c = server.client();

    let (small, small_data) = shard(4096, 1);
    let (big, big_data) = shard(4 << 20, 2);
    c.put(small, small_data).await.unwrap();
    c.put(big, big_data.clone()).await.unwrap();

    flip_byte(&server.data, &small, 100);
    match c.get(small, None).await {
        Err(ChunkError::Corrupt { id, .. }) => assert_eq!(id, small),
        other => panic!("expected Corrupt, got {:?}", other.map(|b| b.len())),
    }
    // Quarantined: out of service, kept for inspection.
    assert_eq!(
        c.get(small, None).await,
        Err(ChunkError::NotFound { id: small })
    );
    assert_eq!(
        std::fs::read_dir(quarantine_dir(&server.data))
            .unwrap()
            .count(),
        1
    );

    // In a large shard a ranged read of the damaged block is refused too; the verdict is
    // not limited to whole-shard reads.
    flip_byte(&server.data, &big, 10);
    let len = big_data.len() as u64;
    match c.get(big, Some((len - 20, len))).await {
        Err(ChunkError::Corrupt { id, .. }) => assert_eq!(id, big),
        other => panic!("expected Corrupt, got {:?}", other.map(|b| b.len())),
    }

    let hb = meta
        .wait_heartbeat(WAIT, |h| {
            h.corrupt.contains(&small) && h.corrupt.contains(&big)
        })
        .await;
    assert_eq!(hb.shards, 0, "quarantined shards are not counted as stored");
    // Reported until acknowledged, then no longer carried.
    let seen = meta.heartbeats().len();
    meta.wait_heartbeat_since(seen, WAIT, |h| h.corrupt.is_empty())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scrubber_finds_and_reports_damage_nobody_read() {
    let dir = TempDir::new("chunk-scrub");
    let (path, secret) = write_secret(dir.path());
    let meta = FakeMeta::start(&secret).await;
    let opts = ChunkOptions {
        meta: vec![meta.addr()],
        scrub_rate: Some(0),
        scrub_interval_ms: Some(200),
        ..ChunkOptions::default()
    };
    let server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let c = server.client();

    let mut shards = Vec::new();
    for seed in 0..20 {
        let (id, data) = shard(100_000 + seed as usize * 1000, seed);
        c.put(id, data).await.unwrap();
        shards.push(id);
    }
    let victim = shards[7];
    flip_byte(&server.data, &victim, 5000);

    let hb = meta
        .wait_heartbeat(WAIT, |h| h.corrupt.contains(&victim))
        .await;
    assert_eq!(
        hb.corrupt,
        vec![victim],
        "only the damaged shard is reported"
    );
    assert_eq!(
        c.get(victim, None).await,
        Err(ChunkError::NotFound { id: victim })
    );
    for id in shards.iter().filter(|id| **id != victim) {
        c.get(*id, None).await.unwrap();
    }
    assert!(
        server.process.log().contains("shard quarantined"),
        "the chunkserver log names the quarantine"
    );
}
