//! Capabilities through real `tessera meta` processes and the client library: a change in
//! the way of another session's cap waits until the leader recalled it (the holder's long
//! poll) and the holder gave it back; so does a read of what another session holds
//! exclusively (its mount may have changed it without telling the leader yet); a holder that does not answer loses its caps when its
//! lease runs out; grants are replicated, so a new leader recalls what the old one granted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::fs::{FsError, Ino, ROOT_INO};
use tessera_proto::meta::{Op, Query, Response};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

fn client_options() -> MetaClientOptions {
    MetaClientOptions {
        deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(5),
        ..MetaClientOptions::default()
    }
}

async fn start_group(tag: &str) -> (TempDir, MetaCluster) {
    let dir = TempDir::new(tag);
    let (secret_file, secret) = write_secret(dir.path());
    let opts = MetaOptions {
        session_check_ms: 200,
        ..MetaOptions::default()
    };
    let cluster = MetaCluster::start(dir.path(), &secret_file, &secret, 3, &opts).await;
    cluster.wait_formatted(Duration::from_secs(30)).await;
    (dir, cluster)
}

async fn session(cluster: &MetaCluster, lease: Duration) -> Arc<MetaClient> {
    let client = Arc::new(cluster.client(client_options()));
    client.open_session("caps-test", lease).await.unwrap();
    client
}

async fn mkdir(client: &MetaClient, parent: Ino, name: &str) -> Ino {
    let op = Op::Mkdir {
        parent,
        name: name.into(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    };
    match client.write(op).await.unwrap() {
        Ok(Response::Attr(a)) => a.ino,
        other => panic!("mkdir {name}: {other:?}"),
    }
}

async fn holders(client: &MetaClient, ino: Ino) -> usize {
    match client
        .read(Query::CapHolders { inos: vec![ino] })
        .await
        .unwrap()
    {
        Ok(Response::Caps(h)) => h.len(),
        other => panic!("cap holders: {other:?}"),
    }
}

/// What a holder did: when each recall arrived and when it gave the caps back.
#[derive(Debug, Default)]
struct Answered {
    recalled: Vec<(Instant, Vec<Ino>)>,
    given_back: Vec<Instant>,
}

/// Answers recalls like a mount would: takes `flush` to store what it buffered, then gives
/// the caps back. Polls across leader changes until aborted.
fn answer_recalls(
    holder: Arc<MetaClient>,
    flush: Duration,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Answered>>) {
    let log = Arc::new(Mutex::new(Answered::default()));
    let task = tokio::spawn({
        let log = log.clone();
        async move {
            loop {
                let inos = match holder.wait_recall(Duration::from_secs(5)).await {
                    Ok(inos) => inos,
                    Err(_) => {
                        // No leader yet (an election): poll again shortly.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if inos.is_empty() {
                    continue;
                }
                log.lock()
                    .unwrap()
                    .recalled
                    .push((Instant::now(), inos.clone()));
                tokio::time::sleep(flush).await;
                assert!(holder.release_caps(inos).await.unwrap().is_ok());
                log.lock().unwrap().given_back.push(Instant::now());
            }
        }
    });
    (task, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_the_way_of_a_cap_waits_for_the_recall() {
    let (_dir, cluster) = start_group("caps-recall").await;
    let (a, b) = (
        session(&cluster, Duration::from_secs(600)).await,
        session(&cluster, Duration::from_secs(600)).await,
    );
    let d = mkdir(&a, ROOT_INO, "d").await;
    assert!(a.grant_caps(vec![d], false, false).await.unwrap().is_ok());
    // Shared caps coexist: b gets one too, at once.
    assert!(b.grant_caps(vec![d], false, false).await.unwrap().is_ok());
    assert_eq!(holders(&a, d).await, 2);
    b.release_caps(vec![d]).await.unwrap().unwrap();

    let (responder, log) = answer_recalls(a.clone(), Duration::from_millis(400));
    let started = Instant::now();
    mkdir(&b, d, "x").await;
    let done = Instant::now();
    responder.abort();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(log.recalled.len(), 1, "one recall: {log:?}");
    assert_eq!(log.recalled[0].1, vec![d]);
    let given_back = log.given_back[0];
    assert!(
        given_back <= done,
        "b's mkdir answered before a gave its cap back"
    );
    eprintln!(
        "recall: arrived {:?} after b's mkdir was sent, mkdir answered {:?} after the cap was given back",
        log.recalled[0].0 - started,
        done - given_back
    );
    assert_eq!(holders(&b, d).await, 0);

    // An exclusive grant waits the same way for a shared holder.
    assert!(a.grant_caps(vec![d], false, false).await.unwrap().is_ok());
    let (responder, log) = answer_recalls(a.clone(), Duration::from_millis(100));
    assert!(b.grant_caps(vec![d], true, false).await.unwrap().is_ok());
    responder.abort();
    assert_eq!(log.lock().unwrap().given_back.len(), 1);
    match b.read(Query::CapHolders { inos: vec![d] }).await.unwrap() {
        Ok(Response::Caps(h)) => {
            assert_eq!(h.len(), 1);
            assert!(h[0].exclusive && h[0].session == b.session());
        }
        other => panic!("cap holders: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_what_another_session_holds_exclusively_waits_for_the_recall() {
    let (_dir, cluster) = start_group("caps-read").await;
    let (a, b) = (
        session(&cluster, Duration::from_secs(600)).await,
        session(&cluster, Duration::from_secs(600)).await,
    );
    let d = mkdir(&a, ROOT_INO, "d").await;
    let lookup = Query::Lookup {
        parent: d,
        name: "x".into(),
    };
    assert!(a.grant_caps(vec![d], true, false).await.unwrap().is_ok());
    // The holder's own reads ask no one.
    assert_eq!(
        a.read(lookup.clone()).await.unwrap(),
        Err(FsError::NotFound)
    );
    assert_eq!(holders(&a, d).await, 1);

    // b's lookup of a name there (absent, as a knows it is) waits until a gave d back.
    let (responder, log) = answer_recalls(a.clone(), Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(b.read(lookup).await.unwrap(), Err(FsError::NotFound));
    let done = Instant::now();
    responder.abort();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(log.recalled.len(), 1, "one recall: {log:?}");
    assert_eq!(log.recalled[0].1, vec![d]);
    assert!(
        log.given_back[0] <= done,
        "b's lookup answered before a gave its cap back"
    );
    eprintln!(
        "a read waited {:?} for a holder that took 400 ms to give its cap back",
        done - started
    );
    assert_eq!(holders(&b, d).await, 0);

    // Shared caps are in no read's way.
    assert!(a.grant_caps(vec![d], false, false).await.unwrap().is_ok());
    match b.read(Query::GetAttr { ino: d }).await.unwrap() {
        Ok(Response::Attr(attr)) => assert_eq!(attr.ino, d),
        other => panic!("getattr: {other:?}"),
    }
    assert_eq!(holders(&b, d).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_does_not_answer_loses_its_caps_with_its_lease() {
    let (_dir, cluster) = start_group("caps-silent").await;
    let b = session(&cluster, Duration::from_secs(600)).await;
    let d = mkdir(&b, ROOT_INO, "d").await;
    // a never renews its 3 s lease and never answers a recall.
    let lease = Duration::from_secs(3);
    let a = session(&cluster, lease).await;
    let opened = Instant::now();
    assert!(a.grant_caps(vec![d], true, false).await.unwrap().is_ok());

    mkdir(&b, d, "x").await;
    let waited = opened.elapsed();
    assert!(
        waited >= lease - Duration::from_millis(200),
        "the change went ahead after {waited:?}, before a's lease ran out"
    );
    assert!(
        waited < lease + Duration::from_secs(10),
        "waited {waited:?}"
    );
    eprintln!("a change waited {waited:?} for a silent holder with a {lease:?} lease");
    assert_eq!(holders(&b, d).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_recalls_what_the_old_one_granted() {
    let (_dir, mut cluster) = start_group("caps-failover").await;
    let (a, b) = (
        session(&cluster, Duration::from_secs(600)).await,
        session(&cluster, Duration::from_secs(600)).await,
    );
    let d = mkdir(&a, ROOT_INO, "d").await;
    assert!(a.grant_caps(vec![d], true, false).await.unwrap().is_ok());

    let all: Vec<u64> = (1..=3).collect();
    let old = cluster
        .wait_leader(&all, Duration::from_secs(10))
        .await
        .unwrap();
    cluster.kill9(old);
    let rest: Vec<u64> = all.iter().copied().filter(|&m| m != old).collect();
    let new = cluster
        .wait_leader(&rest, Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!("leader {old} killed, {new} leads");

    let (responder, log) = answer_recalls(a.clone(), Duration::from_millis(200));
    mkdir(&b, d, "x").await;
    let done = Instant::now();
    responder.abort();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(
        log.recalled.len(),
        1,
        "the new leader recalled a's cap: {log:?}"
    );
    assert!(log.given_back[0] <= done);
    assert_eq!(holders(&b, d).await, 0);
}
