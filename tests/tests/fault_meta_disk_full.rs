//! A metaserver whose data disk fills up: its Raft core stops, and the process exits
//! non-zero with one line naming the cause (fail-stop, so a supervisor restarts it) instead
//! of living on as a zombie that logs errors; the other two members keep serving, and no
//! process repeats a log line more than once a second on average (plus one burst).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use tessera_tests::mount::Mount;
use tessera_tests::process::write_secret;
use tessera_tests::tmpfs::Tmpfs;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

/// Fills the filesystem holding `dir` with one file, until it refuses more.
fn fill(dir: &std::path::Path) -> u64 {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    let _ = f.sync_all();
    written
}

/// The most times one message (the log line without its timestamp) appears, and the line.
fn most_repeated(log: &str) -> (usize, String) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in log.lines() {
        // Lines start with an RFC 3339 timestamp and a space.
        let message = line.split_once(' ').map(|(_, m)| m).unwrap_or(line);
        *counts.entry(message.to_string()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(m, n)| (n, m))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metaserver_whose_disk_fills_exits_and_the_group_serves_on() {
    let dir = TempDir::new("meta-disk-full");
    let (secret_file, secret) = write_secret(dir.path());
    let disk = Tmpfs::mount(&dir.join("meta-2"), 48 << 20).expect("a tmpfs for meta-2");
    let mut cluster = MetaCluster::start(
        dir.path(),
        &secret_file,
        &secret,
        3,
        &MetaOptions::default(),
    )
    .await;
    let mount = Mount::start(dir.path(), "mnt", &cluster.addrs(), &secret_file, "2+1");
    let started = Instant::now();
    std::fs::create_dir(mount.join("d")).unwrap();

    let filled = fill(disk.path());
    eprintln!("meta-2's disk filled with {} MiB", filled >> 20);
    let full_at = Instant::now();
    let mut created = 0;
    let mut exited = None;
    while full_at.elapsed() < Duration::from_secs(60) {
        for _ in 0..20 {
            std::fs::File::create(mount.join(format!("d/f{created}"))).unwrap();
            created += 1;
        }
        let m = cluster.members.get_mut(&2).unwrap();
        if let Some(status) = m.process.try_wait() {
            exited = Some((status, full_at.elapsed()));
            break;
        }
    }
    let (status, after) = exited.expect("meta-2 still running 60 s after its disk filled");
    let log = cluster.members[&2].process.log();
    let last = log
        .lines()
        .rev()
        .find(|l| !l.starts_with("==="))
        .unwrap_or("");
    eprintln!(
        "meta-2 exited ({status}) {:.1} s after its disk filled, {created} files created meanwhile; \
         its last line: {last}",
        after.as_secs_f64()
    );
    assert!(!status.success(), "meta-2 exited with {status}");
    assert!(
        log.contains("the metadata replica stopped")
            && log.contains("exiting so it can be restarted"),
        "no line naming the cause in meta-2's log:\n{}",
        cluster.members[&2].process.log_tail(20)
    );

    // The other two keep serving.
    for i in 0..200 {
        std::fs::File::create(mount.join(format!("d/after{i}"))).unwrap();
    }
    let names = std::fs::read_dir(mount.join("d")).unwrap().count();
    assert_eq!(names, created + 200);

    // Let the survivors notice the dead member for a while, then check that no process
    // repeats one line more than once a second on average (warnings and errors pass at most
    // 5 per 5 s per log statement: one window's burst is allowed on top).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let secs = started.elapsed().as_secs_f64().ceil() as usize + 5;
    for (name, log) in [
        ("meta-1", cluster.members[&1].process.log()),
        ("meta-2", cluster.members[&2].process.log()),
        ("meta-3", cluster.members[&3].process.log()),
        ("mount", mount.process().unwrap().log()),
    ] {
        let (n, line) = most_repeated(&log);
        eprintln!("{name}: most repeated line x{n} in {secs} s: {line}");
        assert!(
            n <= secs,
            "{name} logged one line {n} times in {secs} s: {line}"
        );
    }
    drop(mount);
    drop(cluster);
    drop(disk);
}
