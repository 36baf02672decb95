//! Chunk service round trips against a real `tessera chunk` process (issue 4, acceptance 1):
//! put/get/delete of 0 B, 1 B, 4 KiB and 4 MiB shards, ranged gets, a refused wrong-hash
//! put, stat, and the paged inventory with its sweep filter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_proto::ShardId;
use tessera_proto::chunk::{ChunkError, DeleteOutcome, PutOutcome};
use tessera_tests::TempDir;
use tessera_tests::chunk::{ChunkOptions, Chunkserver, shard, temp_dir};
use tessera_tests::process::write_secret;

async fn start(dir: &TempDir) -> Chunkserver {
    let (path, secret) = write_secret(dir.path());
    Chunkserver::start(
        dir,
        "chunk",
        &dir.join("data"),
        (&path, &secret),
        &ChunkOptions::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_round_trips_for_every_size() {
    let dir = TempDir::new("chunk-sizes");
    let server = start(&dir).await;
    let c = server.client();
    for (seed, len) in [0usize, 1, 4 << 10, 4 << 20].into_iter().enumerate() {
        let (id, data) = shard(len, seed as u64);
        assert_eq!(
            c.put(id, data.clone()).await,
            Ok(PutOutcome::Stored),
            "{len} B"
        );
        assert_eq!(
            c.put(id, data.clone()).await,
            Ok(PutOutcome::AlreadyPresent),
            "{len} B again"
        );
        let got = c.get(id, None).await.unwrap();
        assert_eq!(got.len(), len);
        assert!(got == data, "{len} B shard came back different");
        let stat = c.stat(id).await.unwrap().expect("stat of a stored shard");
        assert_eq!(stat.len, len as u64);
        assert_eq!(c.delete(id).await, Ok(DeleteOutcome::Deleted));
        assert_eq!(c.get(id, None).await, Err(ChunkError::NotFound { id }));
        assert_eq!(c.stat(id).await, Ok(None));
        assert_eq!(c.delete(id).await, Ok(DeleteOutcome::NotPresent));
    }
    assert!(c.list_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ranged_gets_serve_exactly_the_range() {
    let dir = TempDir::new("chunk-ranges");
    let server = start(&dir).await;
    let c = server.client();
    let block = 64 << 10;
    for (seed, len) in [(10u64, 4 << 10), (11, (4 << 20) + 1)] {
        let (id, data) = shard(len, seed);
        c.put(id, data.clone()).await.unwrap();
        let len = len as u64;
        let ranges = [
            (0, 0),
            (0, 1),
            (len - 1, len),
            (0, len),
            (len / 3, len / 2),
            ((block - 1).min(len - 1), (block + 1).min(len)),
            (1000.min(len), (3 * block + 17).min(len)),
        ];
        for (start, end) in ranges {
            let got = c.get(id, Some((start, end))).await.unwrap();
            assert!(
                got[..] == data[start as usize..end as usize],
                "range {start}..{end} of {len}"
            );
        }
        for (start, end) in [(0, len + 1), (len, len + 1), (10, 5)] {
            assert_eq!(
                c.get(id, Some((start, end))).await,
                Err(ChunkError::BadRange {
                    id,
                    start,
                    end,
                    len
                }),
                "range {start}..{end} of {len}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_hash_put_is_refused_and_leaves_nothing() {
    let dir = TempDir::new("chunk-wronghash");
    let server = start(&dir).await;
    let c = server.client();
    let (claimed, _) = shard(1000, 1);
    let (actual, data) = shard(1000, 2);
    assert_eq!(
        c.put(claimed, data.clone()).await,
        Err(ChunkError::WrongHash {
            expected: claimed,
            actual
        })
    );
    assert_eq!(
        c.get(claimed, None).await,
        Err(ChunkError::NotFound { id: claimed })
    );
    assert!(c.list_all().await.is_empty());
    assert_eq!(
        std::fs::read_dir(temp_dir(&server.data)).unwrap().count(),
        0
    );
    // The same bytes under their real id are fine.
    assert_eq!(c.put(actual, data).await, Ok(PutOutcome::Stored));
}

#[tokio::test(flavor = "multi_thread")]
async fn inventory_pages_in_id_order_and_sweeps_by_age() {
    let dir = TempDir::new("chunk-list");
    let server = start(&dir).await;
    let c = server.client();
    let mut ids: Vec<ShardId> = Vec::new();
    for seed in 0..25 {
        let (id, data) = shard(100 + seed as usize, 100 + seed);
        c.put(id, data).await.unwrap();
        ids.push(id);
    }
    ids.sort();

    let mut listed = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = c.list(after, 10, None).await.unwrap();
        assert!(page.shards.len() <= 10);
        listed.extend(page.shards.iter().map(|s| s.id));
        pages += 1;
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    assert_eq!(pages, 3);

    // Everything is at least 0 ms old; nothing is an hour old.
    let all = c.list(None, 100, Some(0)).await.unwrap();
    assert_eq!(all.shards.len(), 25);
    let old = c.list(None, 100, Some(3_600_000)).await.unwrap();
    assert!(old.shards.is_empty());
    assert_eq!(old.next, None);
}
