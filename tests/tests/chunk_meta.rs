//! Chunkservers with the real metadata service: registration, heartbeats, following a
//! leader change, and keeping their id across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};
use tessera_proto::meta::{ChunkserverInfo, ChunkserverState, ListChunkservers};
use tessera_rpc::{Client, Secret};
use tessera_tests::chunk::{ChunkOptions, Chunkserver};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

/// The chunkservers the current leader lists as up, by address.
async fn listed_up(
    cluster: &MetaCluster,
    among: &[u64],
    secret: &Secret,
) -> Option<Vec<ChunkserverInfo>> {
    let leader = cluster.wait_leader(among, Duration::from_secs(10)).await?;
    let client = Client::new(
        cluster.members[&leader].addr.clone(),
        secret.clone(),
        tessera_tests::tls::rpc_config(),
    );
    let (reply, _) = client
        .call_with::<ListChunkservers>(&(), bytes::Bytes::new(), Duration::from_secs(2))
        .await
        .ok()?;
    let list = reply.ok()?;
    Some(
        list.into_iter()
            .filter(|c| c.state == ChunkserverState::Up)
            .collect(),
    )
}

async fn wait_listed(
    cluster: &MetaCluster,
    among: &[u64],
    secret: &Secret,
    addrs: &[&str],
) -> Vec<ChunkserverInfo> {
    let started = Instant::now();
    loop {
        if let Some(list) = listed_up(cluster, among, secret).await {
            let mut seen: Vec<&str> = list.iter().map(|c| c.addr.as_str()).collect();
            seen.sort();
            let mut want = addrs.to_vec();
            want.sort();
            if seen == want {
                return list;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the leader does not list {addrs:?} as up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunkservers_register_follow_a_new_leader_and_keep_their_id() {
    let dir = TempDir::new("chunk-meta");
    let (secret_file, secret) = write_secret(dir.path());
    let mut cluster = MetaCluster::start(
        dir.path(),
        &secret_file,
        &secret,
        3,
        &MetaOptions::default(),
    )
    .await;
    let opts = ChunkOptions {
        meta: cluster.addrs(),
        heartbeat_ms: 200,
        ..ChunkOptions::default()
    };
    let mut c1 = Chunkserver::start(
        &dir,
        "chunk-1",
        &dir.join("c1"),
        (&secret_file, &secret),
        &opts,
    )
    .await;
    let c2 = Chunkserver::start(
        &dir,
        "chunk-2",
        &dir.join("c2"),
        (&secret_file, &secret),
        &opts,
    )
    .await;
    let (a1, a2) = (c1.addr.clone(), c2.addr.clone());
    let addrs = [a1.as_str(), a2.as_str()];

    let first = wait_listed(&cluster, &[1, 2, 3], &secret, &addrs).await;
    let id_of =
        |list: &[ChunkserverInfo], addr: &str| list.iter().find(|c| c.addr == addr).unwrap().id;
    let c1_id = id_of(&first, &a1);
    assert!(first.iter().all(|c| c.capacity > 0), "{first:?}");

    // A new leader knows nothing of them until they re-register; they must find it.
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await
        .unwrap();
    cluster.kill9(leader);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
    let after_failover = wait_listed(&cluster, &others, &secret, &addrs).await;
    assert_eq!(id_of(&after_failover, &a1), c1_id);

    // A restarted chunkserver comes back under the same id.
    c1.kill9();
    c1.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_restart = wait_listed(&cluster, &others, &secret, &addrs).await;
    assert_eq!(id_of(&after_restart, &a1), c1_id);
}
