//! Metadata operations per second through the client library against a 3-member group of
//! real `tessera meta` processes on 127.0.0.1 (every create is fsynced on a majority).
//!
//! `scripts/bench-meta.sh` builds the release binary and runs this; it prints creates/s,
//! stats/s and unlinks/s with 1 and 16 concurrent clients, median of `TESSERA_BENCH_ROUNDS`
//! (default 3) rounds, each on a fresh cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::fs::{FileKind, Ino, ROOT_INO};
use tessera_proto::meta::{Op, Query, Response};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

const FILES: usize = 10_000;

fn ok_attr(
    r: Result<Result<Response, tessera_proto::fs::FsError>, tessera_client::MetaClientError>,
) -> Ino {
    match r {
        Ok(Ok(Response::Attr(a))) => a.ino,
        other => panic!("{other:?}"),
    }
}

/// Runs `op` for files `0..FILES` split over `clients`, each client in its own directory;
/// returns operations per second.
async fn phase<F, Fut>(clients: &[(Arc<MetaClient>, Ino)], op: F) -> f64
where
    F: Fn(Arc<MetaClient>, Ino, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per = FILES / clients.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, dir) in clients {
        let (client, dir, op) = (client.clone(), *dir, op.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                op(client.clone(), dir, i).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * clients.len()) as f64 / started.elapsed().as_secs_f64()
}

async fn round(n_clients: usize) -> (f64, f64, f64) {
    let dir = TempDir::new("bench-meta");
    let (secret_file, secret) = write_secret(dir.path());
    let cluster = MetaCluster::start(
        dir.path(),
        &secret_file,
        &secret,
        3,
        &MetaOptions::default(),
    )
    .await;
    let mut clients = Vec::new();
    for c in 0..n_clients {
        let client = Arc::new(cluster.client(MetaClientOptions::default()));
        client
            .open_session("bench", Duration::from_secs(600))
            .await
            .unwrap();
        let d = ok_attr(
            client
                .write(Op::Mkdir {
                    parent: ROOT_INO,
                    name: format!("c{c}").into_bytes(),
                    perm: 0o755,
                    uid: 0,
                    gid: 0,
                })
                .await,
        );
        clients.push((client, d));
    }
    let name = |i: usize| format!("file-{i:06}").into_bytes();
    let creates = phase(&clients, move |c: Arc<MetaClient>, d, i| async move {
        ok_attr(
            c.write(Op::Mknod {
                parent: d,
                name: name(i),
                kind: FileKind::Regular,
                perm: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                open: false,
            })
            .await,
        );
    })
    .await;
    let stats = phase(&clients, move |c: Arc<MetaClient>, d, i| async move {
        ok_attr(
            c.read(Query::Lookup {
                parent: d,
                name: name(i),
            })
            .await,
        );
    })
    .await;
    let unlinks = phase(&clients, move |c: Arc<MetaClient>, d, i| async move {
        let r = c
            .write(Op::Unlink {
                parent: d,
                name: name(i),
            })
            .await;
        assert!(matches!(r, Ok(Ok(_))), "{r:?}");
    })
    .await;
    (creates, stats, unlinks)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("TESSERA_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!("| clients | creates/s | stats/s | unlinks/s |");
    println!("|---|---|---|---|");
    for n in [1, 16] {
        let (mut c, mut s, mut u) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let (a, b, d) = round(n).await;
            eprintln!(
                "{n} clients, round {}: creates {a:.0}/s stats {b:.0}/s unlinks {d:.0}/s",
                r + 1
            );
            c.push(a);
            s.push(b);
            u.push(d);
        }
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} |",
            median(c),
            median(s),
            median(u)
        );
    }
}
