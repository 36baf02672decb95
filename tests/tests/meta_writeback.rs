//! The leader's side of write-back (issue 11), through real `tessera meta` processes and
//! the client library: a session holding a directory exclusively makes files under inode
//! numbers delegated to it, sends them with their attribute changes as one batch (one Raft
//! entry), and another session's read of that directory waits for the holder to give the
//! cap back; the delegation survives a leader failover; replies are per operation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::fs::{FileKind, FsError, Ino, ROOT_INO, SetAttr};
use tessera_proto::meta::{Op, Query, Reply, Response};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

fn client_options() -> MetaClientOptions {
    MetaClientOptions {
        deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(5),
        ..MetaClientOptions::default()
    }
}

async fn session(cluster: &MetaCluster) -> Arc<MetaClient> {
    let client = Arc::new(cluster.client(client_options()));
    client
        .open_session("writeback-test", Duration::from_secs(600))
        .await
        .unwrap();
    client
}

fn make_file(parent: Ino, name: &str) -> Op {
    Op::MakeNode {
        parent,
        name: name.into(),
        kind: FileKind::Regular,
        perm: 0o666,
        umask: 0o022,
        uid: 1000,
        gid: 1000,
        rdev: 0,
        open: false,
    }
}

fn chmod(ino: Ino, mode: u16) -> Op {
    Op::SetAttr {
        ino,
        set: SetAttr {
            perm: Some(mode),
            ..SetAttr::default()
        },
    }
}

async fn batch(client: &MetaClient, ops: Vec<Op>) -> Vec<Reply> {
    match client.write(Op::Batch { ops }).await.unwrap() {
        Ok(Response::Batch(replies)) => replies,
        other => panic!("batch: {other:?}"),
    }
}

fn attr_of(reply: &Reply) -> (Ino, u16) {
    match reply {
        Ok(Response::Attr(a)) => (a.ino, a.perm),
        other => panic!("expected attributes, got {other:?}"),
    }
}

/// Gives every recalled cap back at once, as a mount does once its batch is sent.
fn answer_recalls(holder: Arc<MetaClient>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match holder.wait_recall(Duration::from_secs(5)).await {
                Ok(inos) if !inos.is_empty() => {
                    holder.release_caps(inos).await.unwrap().unwrap();
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_under_delegated_numbers_arrive_in_one_batch_and_survive_a_failover() {
    let dir = TempDir::new("writeback");
    let (secret_file, secret) = write_secret(dir.path());
    let opts = MetaOptions {
        session_check_ms: 200,
        ..MetaOptions::default()
    };
    let mut cluster = MetaCluster::start(dir.path(), &secret_file, &secret, 3, &opts).await;
    cluster.wait_formatted(Duration::from_secs(30)).await;
    let (a, b) = (session(&cluster).await, session(&cluster).await);

    let d = match a
        .write(Op::Mkdir {
            parent: ROOT_INO,
            name: "d".into(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        })
        .await
        .unwrap()
    {
        Ok(Response::Attr(attr)) => attr.ino,
        other => panic!("mkdir: {other:?}"),
    };
    assert!(a.grant_caps(vec![d], true, false).await.unwrap().is_ok());
    let first = match a.write(Op::DelegateInos { count: 100 }).await.unwrap() {
        Ok(Response::Inos { first, count: 100 }) => first,
        other => panic!("delegate: {other:?}"),
    };

    // Ten creates and ten chmods, and one create refused (the name is taken), in one
    // entry of the log.
    let all: Vec<u64> = (1..=3).collect();
    let leader = cluster
        .wait_leader(&all, Duration::from_secs(10))
        .await
        .unwrap();
    let applied_before = cluster.status(leader).await.unwrap().applied_index.unwrap();
    let mut ops = Vec::new();
    for i in 0..10u64 {
        let as_ino = |node| Op::MakeNodeAs {
            ino: first + i,
            node: Box::new(node),
        };
        ops.push(as_ino(make_file(d, &format!("f{i}"))));
        ops.push(chmod(first + i, 0o600));
    }
    ops.push(Op::MakeNodeAs {
        ino: first + 10,
        node: Box::new(make_file(d, "f0")),
    });
    let replies = batch(&a, ops).await;
    let applied_after = cluster.status(leader).await.unwrap().applied_index.unwrap();
    assert_eq!(applied_after, applied_before + 1, "one batch, one entry");
    assert_eq!(replies.len(), 21);
    for i in 0..10u64 {
        assert_eq!(attr_of(&replies[2 * i as usize]), (first + i, 0o644));
        assert_eq!(attr_of(&replies[2 * i as usize + 1]), (first + i, 0o600));
    }
    assert_eq!(replies[20], Err(FsError::Exists));

    // b's lookup in d waits for a's exclusive cap, then sees what the batch made.
    let responder = answer_recalls(a.clone());
    let lookup = Query::Lookup {
        parent: d,
        name: "f3".into(),
    };
    match b.read(lookup).await.unwrap() {
        Ok(Response::Attr(attr)) => {
            assert_eq!((attr.ino, attr.perm, attr.uid), (first + 3, 0o600, 1000));
        }
        other => panic!("lookup: {other:?}"),
    }
    responder.abort();

    // The delegation is replicated: after the leader dies, a goes on with its numbers
    // (the refused create used none), and each makes one inode only.
    cluster.kill9(leader);
    let rest: Vec<u64> = all.iter().copied().filter(|&m| m != leader).collect();
    cluster
        .wait_leader(&rest, Duration::from_secs(30))
        .await
        .unwrap();
    let again = batch(
        &a,
        vec![
            Op::MakeNodeAs {
                ino: first + 10,
                node: Box::new(make_file(d, "late")),
            },
            Op::MakeNodeAs {
                ino: first + 10,
                node: Box::new(make_file(d, "later")),
            },
        ],
    )
    .await;
    assert_eq!(attr_of(&again[0]).0, first + 10);
    assert_eq!(again[1], Err(FsError::Invalid), "a number used twice");
    // And no one else may use them.
    let theirs = batch(
        &b,
        vec![Op::MakeNodeAs {
            ino: first + 12,
            node: Box::new(make_file(ROOT_INO, "theirs")),
        }],
    )
    .await;
    assert_eq!(theirs[0], Err(FsError::Invalid));
    let fresh = match b.write(make_file(ROOT_INO, "fresh")).await.unwrap() {
        Ok(Response::Attr(attr)) => attr.ino,
        other => panic!("create: {other:?}"),
    };
    assert!(fresh >= first + 100, "{fresh} was delegated to a");
}
