//! The metadata group as real `tessera meta` processes: failover under load, catch-up by
//! snapshot, full restart, partition of the leader, POSIX errors through the client library.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::fs::{FileKind, FsError, ROOT_INO, RenameMode};
use tessera_proto::meta::{MetaStatusReply, Op, Response};
use tessera_tests::firewall::Partition;
use tessera_tests::meta_workload::{run_worker, verify_worker};
use tessera_tests::process::write_secret;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

/// These tests time elections and failovers: running two clusters at once on a 2-core machine
/// would measure the machine, not Tessera. Each test holds this for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client_options() -> MetaClientOptions {
    MetaClientOptions {
        deadline: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(2),
        ..MetaClientOptions::default()
    }
}

/// A fresh 3-member group in its own directory (the directory outlives the processes:
/// destructure as `let (_dir, cluster) = ...`).
async fn start_group(tag: &str, opts: &MetaOptions) -> (TempDir, MetaCluster) {
    let dir = TempDir::new(tag);
    let (secret_file, secret) = write_secret(dir.path());
    let cluster = MetaCluster::start(dir.path(), &secret_file, &secret, 3, opts).await;
    (dir, cluster)
}

async fn session_client(cluster: &MetaCluster) -> Arc<MetaClient> {
    let client = Arc::new(cluster.client(client_options()));
    client
        .open_session("test", Duration::from_secs(600))
        .await
        .expect("open a session");
    client
}

/// Runs `workers` workers of `groups` groups each; `progress` counts finished groups.
fn spawn_workload(
    client: Arc<MetaClient>,
    workers: usize,
    groups: usize,
    progress: Arc<AtomicUsize>,
    first_worker: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut handles = Vec::new();
        for w in first_worker..first_worker + workers {
            let (client, progress) = (client.clone(), progress.clone());
            handles.push(tokio::spawn(async move {
                let (done, problems) = run_worker_counting(client, w, groups, progress).await;
                (w, done, problems)
            }));
        }
        let mut problems = Vec::new();
        for h in handles {
            let (w, done, p) = h.await.unwrap();
            if done != groups {
                problems.push(format!("worker {w} finished {done} of {groups} groups"));
            }
            problems.extend(p);
        }
        problems
    })
}

async fn run_worker_counting(
    client: Arc<MetaClient>,
    w: usize,
    groups: usize,
    progress: Arc<AtomicUsize>,
) -> (usize, Vec<String>) {
    // Run in slices of ten groups so progress is visible to the fault injector.
    let dir = match tessera_tests::meta_workload::worker_dir(&client, w).await {
        Ok(d) => d,
        Err(e) => return (0, vec![e]),
    };
    for k in 0..groups {
        if let Err(e) = tessera_tests::meta_workload::group(&client, dir, k).await {
            return (k, vec![format!("worker {w} group {k}: {e}")]);
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    (groups, Vec::new())
}

async fn wait_progress(progress: &AtomicUsize, at_least: usize, timeout: Duration) {
    let t = Instant::now();
    while progress.load(Ordering::Relaxed) < at_least {
        assert!(
            t.elapsed() < timeout,
            "workload stalled at {}",
            progress.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_mutations_survive_two_leader_kills_exactly_once() {
    let _serial = SERIAL.lock().await;
    let (_dir, mut cluster) = start_group("meta-failover", &MetaOptions::default()).await;
    let client = session_client(&cluster).await;

    // 8 workers x 250 groups x 5 operations = 10,000 mutations.
    let (workers, groups) = (8, 250);
    let progress = Arc::new(AtomicUsize::new(0));
    let load = spawn_workload(client.clone(), workers, groups, progress.clone(), 0);

    let mut gaps = Vec::new();
    for at in [workers * groups / 5, workers * groups / 2] {
        wait_progress(&progress, at, Duration::from_secs(120)).await;
        let leader = cluster
            .wait_leader(&[1, 2, 3], Duration::from_secs(20))
            .await
            .unwrap();
        cluster.kill9(leader);
        let killed_at = Instant::now();
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != leader).collect();
        let new = cluster.wait_leader(&others, Duration::from_secs(20)).await;
        gaps.push(killed_at.elapsed());
        assert!(new.is_some(), "no new leader after killing {leader}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart(leader).await;
    }
    let problems = load.await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    println!("leader failover gaps: {gaps:?}");

    for w in 0..workers {
        let p = verify_worker(&client, w, groups).await;
        assert!(p.is_empty(), "{p:#?}");
    }
    let d = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await
        .expect("all three members reach the same state");
    println!(
        "converged at index {} digest {:02x?}",
        d.applied_index,
        &d.digest[..8]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_stopped_for_50000_operations_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let opts = MetaOptions {
        snapshot_every: 5_000,
        keep_logs: 1_000,
        ..MetaOptions::default()
    };
    let (_dir, mut cluster) = start_group("meta-snapshot", &opts).await;
    let client = session_client(&cluster).await;
    cluster.kill9(3);
    let sizes_before: Vec<u64> = [1, 2].iter().map(|i| cluster.log_bytes(*i)).collect();

    // 16 workers x 625 groups x 5 operations = 50,000 mutations.
    let (workers, groups) = (16, 625);
    let progress = Arc::new(AtomicUsize::new(0));
    let problems = spawn_workload(client.clone(), workers, groups, progress, 0)
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    let sizes_after: Vec<u64> = [1, 2].iter().map(|i| cluster.log_bytes(*i)).collect();
    let s1 = cluster.status(1).await.unwrap();
    let s2 = cluster.status(2).await.unwrap();
    println!(
        "raft log file bytes before {sizes_before:?} after {sizes_after:?}; member 1 last log {:?} snapshot {:?} purged {:?}; member 2 purged {:?}",
        s1.last_log_index, s1.snapshot_index, s1.purged_index, s2.purged_index
    );
    let last = s1.last_log_index.unwrap();
    for s in [&s1, &s2] {
        let purged = s.purged_index.expect("the log was compacted");
        assert!(
            purged + 10_000 > last,
            "member {} kept {} entries behind its snapshot",
            s.id,
            last - purged
        );
    }

    cluster.restart(3).await;
    let d = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(60))
        .await
        .expect("member 3 caught up");
    let s3 = cluster.status(3).await.unwrap();
    println!(
        "member 3 after restart: snapshot {:?} purged {:?} applied {:?}",
        s3.snapshot_index, s3.purged_index, s3.applied_index
    );
    // It was down for 50,000 entries and the others kept at most ~10,000: only a snapshot
    // can have brought it here.
    assert!(s3.snapshot_index.is_some_and(|i| i >= 40_000), "{s3:?}");
    assert_eq!(s3.applied_index, Some(d.applied_index));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_restart_keeps_the_tree_and_posix_errors_are_replies() {
    let _serial = SERIAL.lock().await;
    let (_dir, mut cluster) = start_group("meta-restart", &MetaOptions::default()).await;
    let client = session_client(&cluster).await;
    let (done, problems) = run_worker(client.clone(), 0, 200).await;
    assert!(problems.is_empty() && done == 200, "{problems:?}");

    // POSIX errors come back as replies, through the whole stack.
    let mkdir = |parent, name: &str| Op::Mkdir {
        parent,
        name: name.as_bytes().to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    };
    let ino = |r: Result<Result<Response, FsError>, _>| match r {
        Ok(Ok(Response::Attr(a))) => a.ino,
        other => panic!("{other:?}"),
    };
    let a = ino(client.write(mkdir(ROOT_INO, "a")).await);
    let b = ino(client.write(mkdir(a, "b")).await);
    let _ = b;
    let into_child = client
        .write(Op::Rename {
            parent: ROOT_INO,
            name: b"a".to_vec(),
            new_parent: b,
            new_name: b"a".to_vec(),
            mode: RenameMode::Replace,
        })
        .await
        .unwrap();
    assert_eq!(into_child, Err(FsError::Invalid));
    let rmdir = client
        .write(Op::Rmdir {
            parent: ROOT_INO,
            name: b"a".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(rmdir, Err(FsError::NotEmpty));
    let long = client
        .write(mkdir(ROOT_INO, &"x".repeat(256)))
        .await
        .unwrap();
    assert_eq!(long, Err(FsError::NameTooLong));
    let link_dir = client
        .write(Op::Link {
            ino: a,
            new_parent: ROOT_INO,
            new_name: b"alias".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(link_dir, Err(FsError::NotPermitted));
    let kind_ok = client
        .write(Op::Mknod {
            parent: a,
            name: b"fifo".to_vec(),
            kind: FileKind::Fifo,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            open: false,
        })
        .await
        .unwrap();
    assert!(kind_ok.is_ok());

    let before = cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await
        .expect("converged before the restart");
    println!("before restart: {before:?}");
    for id in [1, 2, 3] {
        cluster.kill9(id);
    }
    for id in [1, 2, 3] {
        cluster.restart(id).await;
    }
    cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await
        .expect("a leader after restart");
    // Every member must get back at least to where the group was (a new leader may add a
    // blank entry after it).
    let after = cluster
        .wait_converged_at(&[1, 2, 3], before.applied_index, Duration::from_secs(30))
        .await
        .expect("converged after the restart");
    println!(
        "before: index {} after: index {}",
        before.applied_index, after.applied_index
    );
    // A new leader appends a blank entry, so the index moves on; the tree must not.
    assert_eq!(before.digest, after.digest);
    let client = session_client(&cluster).await;
    let p = verify_worker(&client, 0, 200).await;
    assert!(p.is_empty(), "{p:#?}");
}

/// `id`'s status once its applied index has stayed put for 300 ms (far longer than one
/// replication round trip), at most 5 s.
async fn settled_status(cluster: &MetaCluster, id: u64) -> MetaStatusReply {
    let mut last = cluster
        .status(id)
        .await
        .expect("the test reaches the member");
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = cluster
            .status(id)
            .await
            .expect("the test reaches the member");
        if now.applied_index == last.applied_index {
            return now;
        }
        last = now;
    }
    panic!("member {id}'s applied index kept moving while cut off: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_is_replaced_within_five_seconds_and_commits_nothing() {
    let _serial = SERIAL.lock().await;
    let opts = MetaOptions {
        distinct_ips: true,
        ..MetaOptions::default()
    };
    let (_dir, cluster) = start_group("meta-partition", &opts).await;
    let old = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(20))
        .await
        .expect("a leader");
    let client = session_client(&cluster).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = spawn_workload(client.clone(), 4, 150, progress.clone(), 0);
    wait_progress(&progress, 50, Duration::from_secs(60)).await;

    let ip = |id: u64| format!("127.0.0.{}", 10 + id);
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|i| *i != old).collect();
    let other_ips: Vec<String> = others.iter().map(|i| ip(*i)).collect();
    let other_refs: Vec<&str> = other_ips.iter().map(String::as_str).collect();
    let mut partition = Partition::cut(&ip(old), &other_refs);
    let cut_at = Instant::now();
    let at_cut = cluster
        .status(old)
        .await
        .expect("the test still reaches the old leader");

    let new = cluster
        .wait_leader(&others, Duration::from_secs(10))
        .await
        .expect("the majority elects a new leader");
    let election = cut_at.elapsed();
    println!("new leader {new} elected {election:?} after the partition");
    assert!(
        election < Duration::from_secs(5),
        "election took {election:?}"
    );

    // Acknowledgements already on their way when the cut came may still commit entries that
    // were in the old leader's log then: wait until its applied index stops moving, and
    // check that it only reached entries it had at the cut.
    let frozen = settled_status(&cluster, old).await;
    assert!(
        frozen.applied_index <= at_cut.last_log_index,
        "the partitioned old leader applied (so committed) entries it appended after the cut: \
         {at_cut:?} -> {frozen:?}"
    );

    // The workload goes on through the new leader while the old one is cut off.
    let at_election = progress.load(Ordering::Relaxed);
    wait_progress(&progress, at_election + 50, Duration::from_secs(30)).await;
    let cut_off = cluster
        .status(old)
        .await
        .expect("old leader answers the test");
    assert_eq!(
        cut_off.applied_index, frozen.applied_index,
        "the partitioned old leader applied (so committed) entries: {frozen:?} -> {cut_off:?}"
    );

    partition.heal();
    let problems = load.await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    for w in 0..4 {
        let p = verify_worker(&client, w, 150).await;
        assert!(p.is_empty(), "{p:#?}");
    }
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(30))
        .await
        .expect("all three agree after healing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_session_releases_its_open_files_but_a_renewed_one_keeps_them() {
    let _serial = SERIAL.lock().await;
    let opts = MetaOptions {
        session_check_ms: 200,
        ..MetaOptions::default()
    };
    let (_dir, cluster) = start_group("meta-session", &opts).await;
    let lease = Duration::from_secs(2);

    // Two clients each create a file open in their session, then unlink it: the inode
    // lives on as an orphan while open.
    let mut inos = Vec::new();
    let mut clients = Vec::new();
    for name in ["dies", "lives"] {
        let c = Arc::new(cluster.client(client_options()));
        c.open_session(name, lease).await.unwrap();
        let created = c
            .write(Op::Mknod {
                parent: ROOT_INO,
                name: name.as_bytes().to_vec(),
                kind: FileKind::Regular,
                perm: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                open: true,
            })
            .await
            .unwrap();
        let Ok(Response::Attr(a)) = created else {
            panic!("{created:?}")
        };
        let unlinked = c
            .write(Op::Unlink {
                parent: ROOT_INO,
                name: name.as_bytes().to_vec(),
            })
            .await
            .unwrap();
        assert!(unlinked.is_ok());
        inos.push(a.ino);
        clients.push(c);
    }
    let _keeper = clients[1].keep_session_alive(lease);
    let observer = cluster.client(client_options());
    let getattr = |ino| tessera_proto::meta::Query::GetAttr { ino };

    // Within the lease both orphans exist; after it, only the renewed client's remains.
    assert!(observer.read(getattr(inos[0])).await.unwrap().is_ok());
    let t = Instant::now();
    loop {
        let r = observer.read(getattr(inos[0])).await.unwrap();
        if r == Err(FsError::NotFound) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "expired session still holds its file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "orphan of the expired session freed {:?} after the check began",
        t.elapsed()
    );
    tokio::time::sleep(lease * 2).await;
    assert!(
        observer.read(getattr(inos[1])).await.unwrap().is_ok(),
        "a renewed session lost its open file"
    );
}
