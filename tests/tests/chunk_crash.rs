//! Crash safety (issue 4, acceptance 3): SIGKILL the chunkserver in the middle of many
//! concurrent puts, restart it, and check that every acknowledged shard is there and
//! verifies, and that nothing partial is visible under any id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_tests::TempDir;
use tessera_tests::chunk::{ChunkClient, ChunkOptions, Chunkserver, shard, temp_dir};
use tessera_tests::process::write_secret;

/// Concurrent writers.
const WRITERS: u64 = 8;
/// Kill rounds; each kills the server while all writers are busy.
const ROUNDS: u64 = 5;

#[derive(Default)]
struct Ledger {
    /// Every shard a writer tried to put, by id (acknowledged or not).
    attempted: HashMap<ShardId, Bytes>,
    /// Shards whose put was acknowledged.
    acked: HashSet<ShardId>,
}

/// Puts fresh shards until the connection breaks, recording attempts and acknowledgements.
async fn writer(client: Arc<ChunkClient>, ledger: Arc<Mutex<Ledger>>, round: u64, w: u64) {
    for i in 0u64.. {
        // Sizes from 1 KiB to 2 MiB, so puts of one and of many blocks are both cut short.
        let len = 1024 + ((i * 7919 + w * 104_729) % (2 << 20)) as usize;
        let (id, data) = shard(len, (round << 40) | (w << 32) | i);
        ledger.lock().unwrap().attempted.insert(id, data.clone());
        match client.try_put(id, data).await {
            Ok(Ok(_)) => {
                ledger.lock().unwrap().acked.insert(id);
            }
            Ok(Err(e)) => panic!("put refused while the server was up: {e}"),
            // The server died under us: this put may or may not have completed.
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_concurrent_puts_loses_no_acknowledged_shard() {
    let dir = TempDir::new("chunk-crash");
    let (path, secret) = write_secret(dir.path());
    let mut server = Chunkserver::start(
        &dir,
        "chunk",
        &dir.join("data"),
        (&path, &secret),
        &ChunkOptions::default(),
    )
    .await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    for round in 0..ROUNDS {
        let client = Arc::new(server.client());
        let before = ledger.lock().unwrap().acked.len();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(client.clone(), ledger.clone(), round, w)))
            .collect();
        // Let the writers get going, then kill the server while puts are in flight.
        let started = std::time::Instant::now();
        while ledger.lock().unwrap().acked.len() < before + 20
            && started.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.kill9();
        for w in writers {
            w.await.unwrap();
        }
        let acked_now = ledger.lock().unwrap().acked.len();
        assert!(
            acked_now >= before + 20,
            "round {round}: too few puts acknowledged"
        );

        server.restart().await;
        let c = server.client();
        assert_eq!(
            std::fs::read_dir(temp_dir(&server.data)).unwrap().count(),
            0,
            "leftover temporary files after restart"
        );
        let listed = c.list_all().await;
        let ledger = ledger.lock().unwrap().clone_for_check();
        // Every acknowledged shard is listed and verifies.
        let listed_ids: HashSet<ShardId> = listed.iter().map(|s| s.id).collect();
        for id in &ledger.acked {
            assert!(listed_ids.contains(id), "acknowledged shard {id} lost");
        }
        // Everything listed is a complete shard that was really put: reading it verifies
        // the whole of it against its id.
        for id in &listed_ids {
            let want = ledger
                .attempted
                .get(id)
                .unwrap_or_else(|| panic!("unknown shard {id} listed"));
            let got = c.get(*id, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(got == *want, "shard {id} reads back different bytes");
        }
        eprintln!(
            "round {round}: {} acknowledged in all, {} listed after restart",
            ledger.acked.len(),
            listed_ids.len()
        );
    }
}

impl Ledger {
    fn clone_for_check(&self) -> Ledger {
        Ledger {
            attempted: self.attempted.clone(),
            acked: self.acked.clone(),
        }
    }
}
