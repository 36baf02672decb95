//! Snapshots (issue 13, point 1) through real mounts and `tessera snapshot`: a snapshot
//! taken while another mount writes equals the tree at one point of the writer's history;
//! taking it stores no shard bytes; the writer's longest operation across it is measured;
//! a deleted subtree comes back bit-exact from it; it is read-only (EROFS) and hidden from
//! its directory's listing; deleting it gives its space back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera_tests::MetaOptions;
use tessera_tests::fault::{noise, shard_bytes, wait_for};
use tessera_tests::mount::DevCluster;

const EROFS: i32 = 30;

/// Path below the tree's root -> BLAKE3 of the file's bytes (or "dir").
type Manifest = BTreeMap<String, String>;

fn ok(c: &DevCluster, args: &[&str]) -> String {
    let (code, out) = c.admin(args);
    assert_eq!(code, 0, "tessera {args:?}: {out}");
    out
}

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// What `root` holds now, read through a mount.
fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let key = rel.to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(key, "dir".into());
                dirs.push(rel);
            } else {
                out.insert(key, hash(&std::fs::read(root.join(&rel)).unwrap()));
            }
        }
    }
    out
}

/// The writer's history: the tree after each of its operations, and how long each took.
#[derive(Default)]
struct History {
    states: Vec<Manifest>,
    ops: Vec<(Instant, Duration)>,
}

/// Changes `live` only by operations that are one namespace command each (a rename of a
/// finished file in from `stage`, an unlink, a rename within, a mkdir), so every state
/// between two of them is one the writer recorded.
fn write_history(live: PathBuf, stage: PathBuf, stop: Arc<AtomicBool>) -> History {
    let mut h = History::default();
    let mut tree = Manifest::new();
    h.states.push(tree.clone());
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let names: Vec<String> = tree
            .iter()
            .filter(|(_, v)| *v != "dir")
            .map(|(k, _)| k.clone())
            .collect();
        let started = Instant::now();
        match i % 7 {
            // Two in seven add a subdirectory's worth of variety; most add or replace files.
            0 if tree.len() < 400 => {
                let d = format!("d{i}");
                std::fs::create_dir(live.join(&d)).unwrap();
                tree.insert(d, "dir".into());
            }
            3 if !names.is_empty() => {
                let victim = &names[(i as usize * 31) % names.len()];
                std::fs::remove_file(live.join(victim)).unwrap();
                tree.remove(victim);
            }
            5 if !names.is_empty() => {
                let from = names[(i as usize * 17) % names.len()].clone();
                let to = format!("r{i}");
                std::fs::rename(live.join(&from), live.join(&to)).unwrap();
                let v = tree.remove(&from).unwrap();
                tree.insert(to, v);
            }
            _ => {
                let data = noise(1000 + (i as usize * 7919) % 60_000, i);
                let tmp = stage.join(format!("t{i}"));
                std::fs::write(&tmp, &data).unwrap();
                let dirs: Vec<&String> = tree
                    .iter()
                    .filter(|(_, v)| *v == "dir")
                    .map(|(k, _)| k)
                    .collect();
                let name = match dirs.get(i as usize % (dirs.len() + 1)) {
                    Some(d) => format!("{d}/f{}", i % 50),
                    None => format!("f{}", i % 50),
                };
                // Timed from the rename: the stage write is outside the tree.
                let started = Instant::now();
                std::fs::rename(&tmp, live.join(&name)).unwrap();
                tree.insert(name, hash(&data));
                h.ops.push((started, started.elapsed()));
                h.states.push(tree.clone());
                continue;
            }
        }
        h.ops.push((started, started.elapsed()));
        h.states.push(tree.clone());
    }
    h
}

/// Removes everything in `dir`.
fn empty(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_under_a_writer_is_one_point_of_its_history_and_restores_bit_exact() {
    let opts = MetaOptions::default().with_fast_gc();
    let c = DevCluster::start_opts("snapshot", 3, 3, "2+1", 2, &opts).await;
    let (a, b) = (
        c.mount(0).path().to_path_buf(),
        c.mount(1).path().to_path_buf(),
    );
    std::fs::create_dir(a.join("live")).unwrap();
    std::fs::create_dir(a.join("stage")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (live, stage, stop) = (a.join("live"), a.join("stage"), stop.clone());
        std::thread::spawn(move || write_history(live, stage, stop))
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let taken = Instant::now();
    // A small first step, so the leader copies the rest while the writer goes on (what it
    // changes meanwhile is copied first).
    let out = ok(&c, &["snapshot", "create", "/live", "s1", "--step", "20"]);
    let took = taken.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let history = writer.join().unwrap();
    eprintln!("snapshot create: {out}");

    // The snapshot, read on the other mount, is one state the writer recorded.
    let snap = manifest(&b.join("live/.snapshots/s1"));
    let at = history.states.iter().position(|s| *s == snap);
    assert!(
        at.is_some(),
        "the snapshot ({} entries) is no state of the writer's history ({} states)",
        snap.len(),
        history.states.len()
    );
    // Its stall: the writer's longest operation that overlapped the command.
    let window = (taken, taken + took);
    let during = history
        .ops
        .iter()
        .filter(|(start, d)| *start <= window.1 && *start + *d >= window.0)
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    let overall = history.ops.iter().map(|(_, d)| *d).max().unwrap();
    eprintln!(
        "snapshot of {} entries = writer state {} of {}; command {:?}; writer's longest \
         operation across it {:?} (longest of the run {:?}, {} operations)",
        snap.len(),
        at.unwrap(),
        history.states.len(),
        took,
        during,
        overall,
        history.ops.len()
    );
    assert!(snap.len() > 10, "the writer had done too little: {snap:?}");

    // Hidden from the listing, found by name; read-only on every mount.
    let listed: Vec<String> = std::fs::read_dir(b.join("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!listed.iter().any(|n| n == ".snapshots"), "{listed:?}");
    let root = a.join("live/.snapshots/s1");
    let file = snap.iter().find(|(_, v)| *v != "dir").unwrap().0.clone();
    let erofs = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
    assert_eq!(erofs(std::fs::write(root.join("new"), b"x")), Some(EROFS));
    assert_eq!(erofs(std::fs::remove_file(root.join(&file))), Some(EROFS));
    assert_eq!(
        erofs(std::fs::rename(root.join(&file), a.join("stolen"))),
        Some(EROFS)
    );
    assert_eq!(
        erofs(
            std::fs::OpenOptions::new()
                .append(true)
                .open(root.join(&file))
                .map(|_| ())
        ),
        Some(EROFS)
    );
    let chmod = std::fs::set_permissions(root.join(&file), std::fs::Permissions::from_mode(0o600));
    assert_eq!(erofs(chmod), Some(EROFS));
    assert_eq!(erofs(std::fs::create_dir(root.join("d"))), Some(EROFS));
    assert_eq!(
        manifest(&root),
        snap,
        "a refused change changed the snapshot"
    );

    // Quiet now: a second snapshot stores no shard bytes. Quiet means the stripes the
    // writer's changes freed are collected (also those of replaced files whose last open,
    // on either mount, was released late) and stray shards swept: the shard bytes stayed
    // the same for longer than the orphan sweep's grace and interval (5 s + 2 s here).
    let dirs: Vec<PathBuf> = c.chunks.iter().map(|s| s.data.clone()).collect();
    let shards = || shard_bytes(dirs.iter().map(|d| d.as_path()));
    ok(&c, &["gc", "--wait-ms", "60000"]);
    let mut before = shards();
    let mut steady = 0;
    for _ in 0..240 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = shards();
        if now == before {
            steady += 1;
            if steady >= 16 {
                break;
            }
        } else {
            (before, steady) = (now, 0);
        }
    }
    assert!(steady >= 16, "the shard bytes never settled");
    let live_now = manifest(&a.join("live"));
    ok(&c, &["snapshot", "create", "/live", "s2"]);
    assert_eq!(
        shards(),
        before,
        "taking a snapshot changed the shard bytes"
    );
    eprintln!("shard bytes {before} before and after the second snapshot");

    // The live tree goes (`live` itself cannot while it holds snapshots: ENOTEMPTY); the
    // snapshot brings it back bit-exact, writable.
    empty(&a.join("live"));
    let rmdir = std::fs::remove_dir(a.join("live")).unwrap_err();
    assert_eq!(rmdir.raw_os_error(), Some(39), "{rmdir}");
    ok(&c, &["snapshot", "restore", "/live", "s2", "--to", "/back"]);
    assert_eq!(
        manifest(&b.join("back")),
        live_now,
        "restore is not bit-exact"
    );
    std::fs::write(b.join("back/writable"), b"yes").unwrap();
    let sub = live_now
        .iter()
        .find(|(_, v)| *v == "dir")
        .map(|(k, _)| k.clone());
    if let Some(sub) = sub {
        ok(&c, &["snapshot", "restore", "/live", "s1", &sub]);
        let want: Manifest = snap
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(&format!("{sub}/"))
                    .map(|rest| (rest.to_string(), v.clone()))
            })
            .collect();
        assert_eq!(manifest(&b.join("live").join(&sub)), want);
    }

    let listing = ok(&c, &["snapshot", "list", "/live", "--json"]);
    assert_eq!(
        listing.lines().filter(|l| l.starts_with('{')).count(),
        2,
        "{listing}"
    );

    // Deleting both snapshots and every file gives the shard space back.
    std::fs::remove_dir_all(b.join("back")).unwrap();
    empty(&a.join("live"));
    std::fs::remove_dir_all(a.join("stage")).unwrap();
    ok(&c, &["snapshot", "delete", "/live", "s1"]);
    ok(&c, &["snapshot", "delete", "/live", "s2"]);
    assert!(!b.join("live/.snapshots").exists());
    std::fs::remove_dir(a.join("live")).unwrap();
    let left = wait_for(
        "the shard space of deleted snapshots to return",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || {
            let now = shards();
            (now == 0).then_some(now)
        },
    )
    .await;
    eprintln!("shard bytes after deleting everything: {left}");
}
