//! `tessera status` against a real cluster: healthy, then a chunkserver holding a shard dies.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use std::time::{Duration, Instant};
use tessera_proto::ShardId;
use tessera_proto::fs::{
    ChunkSlice, FileKind, ROOT_INO, ShardPlace, Slice, StripeId, StripeInfo, StripeLayout,
    StripeRef,
};
use tessera_proto::meta::{ListChunkservers, Op, Response};
use tessera_rpc::Client;
use tessera_tests::chunk::{ChunkOptions, Chunkserver};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir, tessera_command};

/// Runs `tessera status --json`; returns the exit code and the parsed report.
fn status(meta: &[String], secret_file: &std::path::Path) -> (i32, serde_json::Value) {
    let out = tessera_command()
        .args(["status", "--json"])
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// `tessera status | head -1`: the reader of its stdout is gone before it prints. It must
/// exit without a panic (status 141, as if killed by SIGPIPE, or 0); returns its stderr.
fn status_into_closed_pipe(meta: &[String], secret_file: &std::path::Path) -> (i32, String) {
    use std::io::Read;
    let mut child = tessera_command()
        .arg("status")
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_reports_a_healthy_cluster_then_a_dead_chunkserver_and_degraded_stripes() {
    let dir = TempDir::new("status");
    let (secret_file, secret) = write_secret(dir.path());
    let opts = MetaOptions {
        dead_after_ms: Some(2_000),
        ..MetaOptions::default()
    };
    let cluster = MetaCluster::start(dir.path(), &secret_file, &secret, 3, &opts).await;
    let chunk_opts = ChunkOptions {
        meta: cluster.addrs(),
        heartbeat_ms: 200,
        ..ChunkOptions::default()
    };
    let mut chunks = Vec::new();
    for i in 1..=6 {
        let data = dir.join(format!("c{i}"));
        chunks.push(
            Chunkserver::start(
                &dir,
                &format!("chunk-{i}"),
                &data,
                (&secret_file, &secret),
                &chunk_opts,
            )
            .await,
        );
    }

    // Wait until the leader lists all six, then store one RS(4,2) stripe: shard i on
    // chunkserver i.
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(10))
        .await
        .unwrap();
    let leader_client = Client::new(
        cluster.members[&leader].addr.clone(),
        secret.clone(),
        tessera_tests::tls::rpc_config(),
    );
    let started = Instant::now();
    let listed = loop {
        let (r, _) = leader_client
            .call_with::<ListChunkservers>(&(), Bytes::new(), Duration::from_secs(2))
            .await
            .unwrap();
        let list = r.unwrap();
        if list.len() == 6 {
            break list;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chunkservers did not register: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id_at = |addr: &str| listed.iter().find(|c| c.addr == addr).unwrap().id;
    let mut shards = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let bytes = Bytes::from(vec![i as u8 + 1; 1024]);
        let id = ShardId(*blake3::hash(&bytes).as_bytes());
        c.client().put(id, bytes).await.unwrap();
        shards.push(ShardPlace {
            shard: id,
            server: id_at(&c.addr),
        });
    }
    let stripe = StripeInfo {
        id: StripeId(*blake3::hash(b"status test stripe").as_bytes()),
        layout: StripeLayout {
            k: 4,
            m: 2,
            shard_len: 1024,
            data_len: 4096,
            shards,
        },
    };
    let client = cluster.client(Default::default());
    let created = client
        .write(Op::Mknod {
            parent: ROOT_INO,
            name: b"f".to_vec(),
            kind: FileKind::Regular,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            open: false,
        })
        .await
        .unwrap();
    let Ok(Response::Attr(file)) = created else {
        panic!("{created:?}")
    };
    let committed = client
        .write(Op::CommitSlice {
            ino: file.ino,
            slices: vec![ChunkSlice {
                chunk: 0,
                slice: Slice {
                    offset: 0,
                    len: 4096,
                    data: Some(StripeRef {
                        stripe: stripe.id,
                        offset: 0,
                    }),
                },
            }],
            stripes: vec![stripe],
        })
        .await
        .unwrap();
    assert!(committed.is_ok(), "{committed:?}");

    let (code, report) = status(&cluster.addrs(), &secret_file);
    let (piped, stderr) = status_into_closed_pipe(&cluster.addrs(), &secret_file);
    assert!(
        !stderr.contains("panicked"),
        "status | head -1 panicked: {stderr}"
    );
    assert!(
        piped == 141 || piped == 0,
        "status into a closed pipe exited {piped}: {stderr}"
    );
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["meta"].as_array().unwrap().len(), 3);
    // The tables give sizes in binary units, used percent per server and a total line.
    let table = tessera_command()
        .arg("status")
        .env("TESSERA_META", cluster.addrs().join(","))
        .env("TESSERA_SECRET_FILE", &secret_file)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("used%"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("total:") && l.contains(" used of ")),
        "{table}"
    );
    assert!(table.contains(" GiB") || table.contains(" MiB"), "{table}");
    assert_eq!(
        report["meta"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "leader")
            .count(),
        1
    );
    assert!(
        report["chunkservers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "up")
    );
    assert_eq!(report["stripes"]["healthy"], 1, "{report:#}");

    // Chunkserver 1 holds data shard 0: once it is declared dead the stripe is degraded.
    let dead_addr = chunks[0].addr.clone();
    chunks[0].kill9();
    let started = Instant::now();
    let report = loop {
        let (code, report) = status(&cluster.addrs(), &secret_file);
        if report["stripes"]["degraded"] == 1 {
            assert_eq!(code, 1, "a degraded cluster must exit non-zero: {report:#}");
            break report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never degraded: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let dead = report["chunkservers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["addr"] == dead_addr.as_str())
        .unwrap();
    assert_eq!(dead["state"], "down", "{report:#}");
    assert_eq!(report["stripes"]["healthy"], 0);
    assert_eq!(report["healthy"], false);
}
