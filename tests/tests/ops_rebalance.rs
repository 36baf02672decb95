//! Rebalance (issue 15, point 1): six chunkservers hold the data, three empty ones join, and
//! `tessera rebalance --wait` moves shards until every server's used fraction is within the
//! band of the mean, while the leader and one of the servers receiving shards are SIGKILLed
//! halfway. A poller checks all along that every shard the stripe table names is on its
//! server (no move ever lowers redundancy); afterwards every file reads back, and once the
//! sweep has run `fsck --deep` finds nothing missing, corrupt or leaked.
//!
//! `TESSERA_REBALANCE_MIB` sets the data written (default 96 MiB; the run is 1024).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::ShardId;
use tessera_proto::meta::{Query, Response};
use tessera_tests::chunk::{ChunkClient, ChunkOptions};
use tessera_tests::fault::{fsck, noise};
use tessera_tests::meta::MetaOptions;
use tessera_tests::mount::{DevCluster, drop_caches};

const MIB: u64 = 1 << 20;

/// The leader's rebalance status as JSON (without starting a round).
fn rebalance_status(c: &DevCluster) -> serde_json::Value {
    let (code, out) = c.admin(&["rebalance", "--status", "--json"]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Every `(server, shard)` the stripe table names, or `None` if it cannot be read now.
async fn named_places(meta: &MetaClient) -> Option<HashSet<(u64, ShardId)>> {
    let mut out = HashSet::new();
    let mut after = None;
    loop {
        let page = match meta.read(Query::Stripes { after, limit: 1024 }).await {
            Ok(Ok(Response::Stripes(page))) => page,
            _ => return None,
        };
        for e in page.iter().filter(|e| !e.deleting) {
            out.extend(e.stripe.layout.shards.iter().map(|p| (p.server, p.shard)));
        }
        if page.len() < 1024 {
            return Some(out);
        }
        after = page.last().map(|e| e.stripe.id);
    }
}

/// Polls until `stop`: reads the stripe table, every reachable server's inventory, and the
/// table again; a place named by both reads whose server answered without the shard is a
/// shard the moves lost (a move deletes an old copy only after its new place is committed,
/// so a place unchanged across the listing was never deleted by one). Returns the number
/// of rounds checked and the lost places seen.
async fn watch_redundancy(
    meta: MetaClient,
    secret: tessera_rpc::Secret,
    servers: HashMap<u64, String>,
    stop: Arc<AtomicBool>,
) -> (u64, Vec<(u64, ShardId)>) {
    let clients: HashMap<u64, ChunkClient> = servers
        .iter()
        .map(|(id, addr)| (*id, ChunkClient::new(addr, &secret)))
        .collect();
    let (mut rounds, mut lost) = (0u64, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let Some(before) = named_places(&meta).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut held: HashMap<u64, HashSet<ShardId>> = HashMap::new();
        for (id, client) in &clients {
            if let Some(list) = client.try_list_all().await {
                held.insert(*id, list.into_iter().map(|s| s.id).collect());
            }
        }
        let Some(after) = named_places(&meta).await else {
            continue;
        };
        for place in before.intersection(&after) {
            if let Some(shards) = held.get(&place.0)
                && !shards.contains(&place.1)
            {
                lost.push(*place);
            }
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (rounds, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_chunkservers_are_filled_through_a_leader_and_a_mover_kill() {
    let data_mib: u64 = std::env::var("TESSERA_REBALANCE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    // Six servers start a third full (4+2 stores 1.5x the data); with nine, the mean is
    // 22%, so the old ones must give and the new ones take to come within 5 points.
    let capacity = data_mib * MIB * 3 / 4;
    let server = ChunkOptions {
        capacity: Some(capacity),
        ..ChunkOptions::default()
    };
    let meta_opts = MetaOptions {
        extra_args: [
            "--rebalance",
            "manual",
            // Slow enough that the kills land halfway.
            "--rebalance-rate-mb",
            &(data_mib / 8).max(4).to_string(),
            // Orphans (an old copy a killed leader did not delete, a copy a killed mover
            // stored but nobody committed) are swept within seconds.
            "--sweep-interval-ms",
            "3000",
            "--orphan-grace-ms",
            "5000",
            "--upload-window-ms",
            "5000",
        ]
        .map(String::from)
        .to_vec(),
        ..MetaOptions::default()
    };
    let mut c = DevCluster::start_custom(
        "ops-rebalance",
        (3, &meta_opts),
        vec![server.clone(); 6],
        "4+2",
        1,
    )
    .await;
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            let len = (data_mib * MIB / 8) as usize - 1000 * i;
            (format!("f{i}"), noise(len, 900 + i as u64))
        })
        .collect();
    let started = Instant::now();
    for (name, data) in &files {
        std::fs::write(c.mount(0).join(name), data).unwrap();
    }
    eprintln!(
        "wrote {data_mib} MiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for _ in 0..3 {
        c.add_chunkserver_with(server.clone()).await;
    }
    let before = rebalance_status(&c);
    assert_eq!(before["balanced"], false, "{before}");
    eprintln!("before: {before}");

    let meta = c.meta.client(MetaClientOptions::default());
    let ids: HashMap<u64, String> = meta
        .list_chunkservers()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.addr))
        .collect();
    let secret = tessera_rpc::Secret::load(&c.secret_file).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_redundancy(meta, secret, ids, stop.clone()));

    // Start, and once shards are moving SIGKILL the leader; once the next leader moves
    // shards, SIGKILL the first new server (it receives copies) and start it again.
    let (code, out) = c.admin(&["rebalance"]);
    assert_eq!(code, 0, "{out}");
    wait_moves(&c, 3).await;
    let leader = c
        .meta
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await
        .unwrap();
    c.meta.kill9(leader);
    eprintln!("killed leader {leader}");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    c.meta
        .wait_leader(&others, Duration::from_secs(20))
        .await
        .expect("a new leader");
    let (code, out) = c.admin(&["rebalance"]);
    assert_eq!(code, 0, "the next leader takes the request: {out}");
    wait_moves(&c, 2).await;
    c.chunks[6].kill9();
    eprintln!("killed mover {}", c.chunks[6].addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.chunks[6].restart().await;
    c.meta.restart(leader).await;

    let (code, out) = c.admin(&["rebalance", "--wait", "--wait-ms", "600000"]);
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}");
    let after = rebalance_status(&c);
    eprintln!("after: {after}");
    assert_eq!(after["balanced"], true, "{after}");
    let band = after["band"].as_f64().unwrap();
    let (_, table) = c.admin(&["status"]);
    eprintln!("{table}");
    assert!(table.contains("rebalance: balanced"), "{table}");
    eprintln!("rebalanced in {:.1} s", started.elapsed().as_secs_f64());

    stop.store(true, Ordering::SeqCst);
    let (rounds, lost) = watcher.await.unwrap();
    assert!(
        rounds >= 3,
        "the redundancy watcher ran only {rounds} rounds"
    );
    assert!(lost.is_empty(), "moves lost shards: {lost:?}");
    eprintln!("redundancy checked {rounds} times during the moves, nothing missing");

    // Every server ends within the band, by what the servers themselves report.
    let list = c
        .meta
        .client(MetaClientOptions::default())
        .list_chunkservers()
        .await
        .unwrap();
    let (used, cap) = list
        .iter()
        .fold((0u64, 0u64), |(u, k), s| (u + s.used, k + s.capacity));
    let mean = used as f64 / cap as f64;
    for s in &list {
        let f = s.used as f64 / s.capacity as f64;
        assert!(
            (f - mean).abs() <= band + 1e-9,
            "{} at {f:.3}, mean {mean:.3}: {list:?}",
            s.addr
        );
    }

    drop_caches();
    for (name, data) in &files {
        assert!(
            std::fs::read(c.mount(0).join(name)).unwrap() == *data,
            "{name} reads back changed"
        );
    }
    // The sweep (every 3 s here) deletes what the kills left unreferenced.
    let t = Instant::now();
    loop {
        let (code, out) = fsck(
            &c.meta.addrs(),
            &c.secret_file,
            &["--deep", "--orphan-age-ms", "10000"],
        );
        if code == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "fsck stays unclean: {out}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Waits until the current leader reports at least `n` shards moved (its counters start at
/// zero when it takes over).
async fn wait_moves(c: &DevCluster, n: u64) {
    let t = Instant::now();
    loop {
        let s = rebalance_status(c);
        if s["moved_shards"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no moves: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
