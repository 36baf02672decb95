//! Snapshots copied in steps across a leader failover, through real `tessera meta`
//! processes and the client library: the leader that took the snapshot is SIGKILLed right
//! after, a client goes on changing the tree, and the new leader finishes the copy, which
//! is the tree as it was at the snapshot; every member ends with the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::fs::{FileKind, Ino, ROOT_INO};
use tessera_proto::meta::{Op, Query, Response, SnapshotEntry};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

/// 10,000 files: ten steps of the leader's, more than it can do before it is killed.
const DIRS: usize = 100;
const FILES: usize = 100;

async fn ok(client: &MetaClient, op: Op) -> Response {
    match client.write(op.clone()).await.unwrap() {
        Ok(r) => r,
        Err(e) => panic!("{op:?}: {e}"),
    }
}

fn ino(r: Response) -> Ino {
    match r {
        Response::Attr(a) => a.ino,
        other => panic!("{other:?}"),
    }
}

/// Every path below `dir` (directories end in "/").
async fn tree(client: &MetaClient, dir: Ino) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![(dir, String::new())];
    while let Some((d, path)) = dirs.pop() {
        let mut after = 2;
        loop {
            let q = Query::ReadDir {
                ino: d,
                after,
                limit: 500,
                plus: false,
            };
            let Ok(Ok(Response::Entries(list))) = client.read(q).await else {
                panic!("readdir {d}")
            };
            if list.is_empty() {
                break;
            }
            for e in list {
                after = e.cookie;
                let name = String::from_utf8(e.name).unwrap();
                if e.kind == FileKind::Directory {
                    out.insert(format!("{path}{name}/"));
                    dirs.push((e.ino, format!("{path}{name}/")));
                } else {
                    out.insert(format!("{path}{name}"));
                }
            }
        }
    }
    out
}

async fn snapshots(client: &MetaClient, dir: Ino) -> Vec<SnapshotEntry> {
    match client.read(Query::Snapshots { dir: Some(dir) }).await {
        Ok(Ok(Response::Snapshots(s))) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_finishes_a_snapshot_copy_as_of_the_snapshot() {
    let dir = TempDir::new("snapshot-failover");
    let (secret_file, secret) = write_secret(dir.path());
    let mut cluster = MetaCluster::start(
        dir.path(),
        &secret_file,
        &secret,
        3,
        &MetaOptions::default(),
    )
    .await;
    cluster.wait_formatted(Duration::from_secs(30)).await;
    let options = MetaClientOptions {
        deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(5),
        ..MetaClientOptions::default()
    };
    let client = Arc::new(cluster.client(options));
    client
        .open_session("snapshot-test", Duration::from_secs(600))
        .await
        .unwrap();
    let top = ino(ok(&client, mkdir(ROOT_INO, "top")).await);
    let mut tasks = Vec::new();
    for d in 0..DIRS {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sub = ino(ok(&client, mkdir(top, &format!("d{d:02}"))).await);
            for f in 0..FILES {
                ok(&client, mknod(sub, &format!("f{f:03}"))).await;
            }
            sub
        }));
    }
    let mut subs = Vec::new();
    for t in tasks {
        subs.push(t.await.unwrap());
    }
    let want = tree(&client, top).await;
    assert_eq!(want.len(), DIRS * (FILES + 1));

    // A first step of 5 entries: the leader has nearly all of it left to copy, and is
    // killed as soon as the snapshot is taken.
    let all: Vec<u64> = (1..=3).collect();
    let old = cluster
        .wait_leader(&all, Duration::from_secs(10))
        .await
        .unwrap();
    let op = Op::SnapshotCreate {
        dir: top,
        name: b"s".to_vec(),
        budget: 5,
    };
    let Response::Snapshots(taken) = ok(&client, op).await else {
        panic!("no snapshot")
    };
    cluster.kill9(old);
    assert!(!taken[0].ready, "{taken:?}");
    // The tree changes while the copy is unfinished: every file of the first directories
    // goes, the first directory too, and new files come.
    for (d, &sub) in subs.iter().enumerate().take(3) {
        for f in 0..FILES {
            let unlink = Op::Unlink {
                parent: sub,
                name: format!("f{f:03}").into_bytes(),
            };
            ok(&client, unlink).await;
        }
        ok(&client, mknod(sub, "new")).await;
        if d == 0 {
            ok(
                &client,
                Op::Unlink {
                    parent: sub,
                    name: b"new".to_vec(),
                },
            )
            .await;
            let rmdir = Op::Rmdir {
                parent: top,
                name: b"d00".to_vec(),
            };
            ok(&client, rmdir).await;
        }
    }
    ok(&client, mknod(top, "late")).await;
    let rest: Vec<u64> = all.iter().copied().filter(|&m| m != old).collect();
    let new = cluster
        .wait_leader(&rest, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("leader {old} killed after the snapshot, {new} leads");

    let started = Instant::now();
    let snap = loop {
        let s = snapshots(&client, top).await;
        if s[0].ready {
            break s[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the new leader did not finish the copy: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "copy finished {:?} after the new leader was seen: {} dirs, {} files",
        started.elapsed(),
        snap.dirs,
        snap.files
    );
    assert_eq!(
        tree(&client, snap.root).await,
        want,
        "the snapshot is not the tree"
    );
    assert_eq!(
        (snap.dirs, snap.files),
        (DIRS as u64 + 1, (DIRS * FILES) as u64)
    );
    assert_ne!(
        tree(&client, top).await,
        want,
        "the live tree did not change"
    );
    let log = cluster.member(new).process.log();
    assert!(
        log.contains("snapshot copy finished"),
        "the new leader did not finish the copy itself"
    );
    cluster
        .wait_converged(&rest, Duration::from_secs(30))
        .await
        .expect("the members that are left hold different states");
}

fn mkdir(parent: Ino, name: &str) -> Op {
    Op::Mkdir {
        parent,
        name: name.into(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    }
}

fn mknod(parent: Ino, name: &str) -> Op {
    Op::Mknod {
        parent,
        name: name.into(),
        kind: FileKind::Regular,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        open: false,
    }
}
