//! Directory quotas (issue 13, point 3) through real mounts and `tessera quota`: EDQUOT at
//! the byte and inode limits from two mounts at once with the overshoot measured, `df`
//! inside a quota, and usage exact across renames, hard links, truncation and the trash.
//! Also the trash's bytes as the root's `tessera.trash_bytes` attribute (issue 13, point 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tessera_tests::MetaOptions;
use tessera_tests::mount::DevCluster;

const EDQUOT: i32 = 122;

/// The most a writer's `write` calls may accept past what gets committed: what a mount
/// buffers for one file before a write waits for its flush (twice `max_dirty`, 64 MiB),
/// plus one write.
const BOUND: u64 = (128 << 20) + (1 << 20);

async fn cluster(tag: &str, mounts: usize) -> DevCluster {
    let opts = MetaOptions {
        trash_retention_s: 3600,
        ..MetaOptions::default()
    };
    DevCluster::start_opts(tag, 1, 3, "2+1", mounts, &opts).await
}

fn ok(c: &DevCluster, args: &[&str]) -> String {
    let (code, out) = c.admin(args);
    assert_eq!(code, 0, "tessera {args:?}: {out}");
    out
}

/// `(used_bytes, used_inodes)` of the quota on `dir`, from `tessera quota get --json`.
fn usage(c: &DevCluster, dir: &str) -> (u64, u64) {
    let out = ok(c, &["quota", "get", dir, "--json"]);
    let line = out.lines().find(|l| l.starts_with('{')).expect(&out);
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    (
        v["used_bytes"].as_u64().unwrap(),
        v["used_inodes"].as_u64().unwrap(),
    )
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Writes 1 MiB blocks to `path` until a write, the fsync or the close fails; returns the
/// bytes `write` accepted and the errno that stopped it (0 if nothing did).
fn write_until_refused(path: PathBuf, most: u64) -> (u64, i32) {
    let block = vec![0x5au8; 1 << 20];
    let mut f = std::fs::File::create(&path).unwrap();
    let mut accepted = 0;
    while accepted < most {
        match f.write(&block) {
            Ok(n) => accepted += n as u64,
            Err(e) => return (accepted, errno(&e)),
        }
    }
    match f.sync_all() {
        Ok(()) => (accepted, 0),
        Err(e) => (accepted, errno(&e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_limit_from_two_mounts_is_edquot_and_committed_usage_stays_under_it() {
    let c = cluster("quota-bytes", 2).await;
    let (a, b) = (c.mount(0).path(), c.mount(1).path());
    std::fs::create_dir(a.join("q")).unwrap();
    let limit: u64 = 32 << 20;
    ok(&c, &["quota", "set", "/q", "--bytes", "32M"]);

    let writers: Vec<_> = [a.join("q/one"), b.join("q/two")]
        .into_iter()
        .map(|p| std::thread::spawn(move || write_until_refused(p, BOUND * 2)))
        .collect();
    let results: Vec<(u64, i32)> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    for (accepted, err) in &results {
        assert_eq!(*err, EDQUOT, "a writer was not refused: {results:?}");
        assert!(*accepted < BOUND * 2, "never refused: {results:?}");
    }
    let (used, inodes) = usage(&c, "/q");
    assert!(used <= limit, "committed {used} past the limit {limit}");
    assert_eq!(inodes, 2);
    // Past the attribute time, so the kernel asks for the sizes again.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let one = std::fs::metadata(a.join("q/one")).unwrap().len();
    let two = std::fs::metadata(a.join("q/two")).unwrap().len();
    assert_eq!(one + two, used, "file sizes and the quota's count differ");
    // What each writer had accepted but never got committed: within its mount's buffer.
    for ((accepted, _), size) in results.iter().zip([one, two]) {
        assert!(
            accepted - size <= BOUND,
            "overshoot {} past {BOUND}",
            accepted - size
        );
    }
    let accepted: u64 = results.iter().map(|r| r.0).sum();
    eprintln!(
        "quota bytes: limit {limit}, committed {used}, accepted by write() {accepted} \
         (one {} two {}), overshoot seen by writers {} bytes",
        results[0].0,
        results[1].0,
        accepted.saturating_sub(used)
    );
    // Room again once a file goes.
    std::fs::remove_file(b.join("q/two")).unwrap();
    std::fs::write(b.join("q/three"), vec![1u8; 1 << 20]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inode_limit_from_two_mounts_is_exact() {
    let c = cluster("quota-inodes", 2).await;
    let (a, b) = (c.mount(0).path(), c.mount(1).path());
    std::fs::create_dir(a.join("q")).unwrap();
    ok(&c, &["quota", "set", "/q", "--inodes", "40"]);
    let makers: Vec<_> = [(a.join("q"), "a"), (b.join("q"), "b")]
        .into_iter()
        .map(|(dir, tag)| {
            std::thread::spawn(move || {
                for i in 0.. {
                    if let Err(e) = std::fs::File::create(dir.join(format!("{tag}{i}"))) {
                        return (i, errno(&e));
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let made: Vec<(u64, i32)> = makers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(made.iter().all(|m| m.1 == EDQUOT), "{made:?}");
    assert_eq!(made[0].0 + made[1].0, 40, "{made:?}");
    assert_eq!(usage(&c, "/q"), (0, 40));
    let e = std::fs::create_dir(a.join("q/d")).unwrap_err();
    assert_eq!(errno(&e), EDQUOT);
    // Outside the quota nothing is limited.
    std::fs::create_dir(a.join("free")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn df_inside_a_quota_shows_the_quota() {
    let c = cluster("quota-df", 1).await;
    let m = c.mount(0).path();
    std::fs::create_dir_all(m.join("q/sub")).unwrap();
    std::fs::write(m.join("q/sub/f"), vec![7u8; 3 << 20]).unwrap();
    ok(
        &c,
        &["quota", "set", "/q", "--bytes", "10M", "--inodes", "100"],
    );
    for p in [m.join("q"), m.join("q/sub"), m.join("q/sub/f")] {
        let s = nix::sys::statvfs::statvfs(&p).unwrap();
        let frsize = s.fragment_size();
        let total = s.blocks() * frsize;
        let used = (s.blocks() - s.blocks_free()) * frsize;
        eprintln!("df {}: total {total} used {used}", p.display());
        assert_eq!(total, 10 << 20, "{}", p.display());
        assert_eq!(used, 3 << 20, "{}", p.display());
        assert_eq!((s.files(), s.files_free()), (100, 98));
    }
    let whole = nix::sys::statvfs::statvfs(m).unwrap();
    assert!(whole.blocks() * whole.fragment_size() > 10 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renames_in_out_and_between_quota_directories_move_usage() {
    let c = cluster("quota-rename", 1).await;
    let m = c.mount(0).path();
    for d in ["a", "b", "t/deep"] {
        std::fs::create_dir_all(m.join(d)).unwrap();
    }
    std::fs::write(m.join("t/deep/f"), vec![1u8; 300_000]).unwrap();
    std::fs::write(m.join("t/g"), vec![2u8; 1000]).unwrap();
    ok(&c, &["quota", "set", "/a"]);
    ok(&c, &["quota", "set", "/b", "--bytes", "1M"]);

    std::fs::rename(m.join("t"), m.join("a/t")).unwrap();
    assert_eq!(usage(&c, "/a"), (301_000, 4), "moved in");
    std::fs::rename(m.join("a/t"), m.join("b/t")).unwrap();
    assert_eq!(usage(&c, "/a"), (0, 0), "moved between");
    assert_eq!(usage(&c, "/b"), (301_000, 4), "moved between");
    std::fs::write(m.join("a/big"), vec![3u8; 900_000]).unwrap();
    let e = std::fs::rename(m.join("a/big"), m.join("b/big")).unwrap_err();
    assert_eq!(errno(&e), EDQUOT, "a rename past b's limit");
    std::fs::rename(m.join("b/t"), m.join("t")).unwrap();
    assert_eq!(usage(&c, "/b"), (0, 0), "moved out");
    std::fs::rename(m.join("a/big"), m.join("b/big")).unwrap();
    assert_eq!(usage(&c, "/a"), (0, 0));
    assert_eq!(usage(&c, "/b"), (900_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_links_count_in_each_quota_and_truncate_moves_both() {
    let c = cluster("quota-links", 1).await;
    let m = c.mount(0).path();
    for d in ["a", "b"] {
        std::fs::create_dir(m.join(d)).unwrap();
        ok(&c, &["quota", "set", &format!("/{d}")]);
    }
    std::fs::write(m.join("a/f"), vec![1u8; 500_000]).unwrap();
    std::fs::hard_link(m.join("a/f"), m.join("b/f")).unwrap();
    std::fs::hard_link(m.join("a/f"), m.join("a/f2")).unwrap();
    assert_eq!(usage(&c, "/a"), (500_000, 1), "two names in a count once");
    assert_eq!(usage(&c, "/b"), (500_000, 1));
    std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("b/f"))
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(usage(&c, "/a"), (100, 1), "truncated through b");
    assert_eq!(usage(&c, "/b"), (100, 1));
    std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("a/f"))
        .unwrap()
        .set_len(2_000_000)
        .unwrap();
    assert_eq!(usage(&c, "/b"), (2_000_000, 1), "extended through a");
    std::fs::remove_file(m.join("a/f")).unwrap();
    std::fs::remove_file(m.join("a/f2")).unwrap();
    assert_eq!(usage(&c, "/a"), (0, 0));
    assert_eq!(usage(&c, "/b"), (2_000_000, 1));
    assert_eq!(std::fs::metadata(m.join("b/f")).unwrap().nlink(), 1);
}

/// The root's `tessera.trash_bytes` attribute (`getfattr -n tessera.trash_bytes MOUNT`).
fn trash_bytes(mount: &Path) -> u64 {
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(mount, "tessera.trash_bytes", &mut buf[..]).unwrap();
    std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_in_the_trash_stops_counting_and_counts_again_when_restored() {
    let c = cluster("quota-trash", 1).await;
    let m = c.mount(0).path();
    std::fs::create_dir(m.join("q")).unwrap();
    ok(&c, &["quota", "set", "/q", "--bytes", "1M"]);
    std::fs::write(m.join("q/f"), vec![1u8; 700_000]).unwrap();
    let ino = std::fs::metadata(m.join("q/f")).unwrap().ino();
    assert_eq!(trash_bytes(m), 0);
    std::fs::remove_file(m.join("q/f")).unwrap();
    assert_eq!(usage(&c, "/q"), (0, 0));
    assert_eq!(trash_bytes(m), 700_000);
    std::fs::write(m.join("q/g"), vec![1u8; 700_000]).unwrap();
    let (code, out) = c.admin(&["trash", "restore", &ino.to_string()]);
    assert_ne!(code, 0, "a restore past the limit: {out}");
    assert!(out.contains("EDQUOT"), "{out}");
    std::fs::remove_file(m.join("q/g")).unwrap();
    ok(&c, &["trash", "restore", &ino.to_string()]);
    assert_eq!(usage(&c, "/q"), (700_000, 1));
    assert_eq!(trash_bytes(m), 700_000, "g is in the trash now");
    ok(&c, &["quota", "unset", "/q"]);
    let (code, out) = c.admin(&["quota", "get", "/q"]);
    assert_ne!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_count_in_no_quota_and_restores_count_like_new_files() {
    let c = cluster("quota-snapshot", 1).await;
    let m = c.mount(0).path();
    std::fs::create_dir_all(m.join("q/sub")).unwrap();
    std::fs::write(m.join("q/sub/f"), vec![7u8; 300_000]).unwrap();
    std::fs::write(m.join("q/g"), vec![8u8; 100_000]).unwrap();
    ok(&c, &["quota", "set", "/q", "--bytes", "700000"]);
    assert_eq!(usage(&c, "/q"), (400_000, 3));

    ok(&c, &["snapshot", "create", "/q", "s"]);
    assert_eq!(usage(&c, "/q"), (400_000, 3), "a snapshot counted");
    // The live files go: usage drops though the snapshot still holds them.
    std::fs::remove_dir_all(m.join("q/sub")).unwrap();
    assert_eq!(usage(&c, "/q"), (100_000, 1));
    ok(&c, &["snapshot", "restore", "/q", "s", "sub"]);
    assert_eq!(usage(&c, "/q"), (400_000, 3), "a restore did not count");
    // Past the limit a restore is refused, and changes nothing.
    ok(
        &c,
        &["snapshot", "restore", "/q", "s", "sub", "--to", "/q/sub2"],
    );
    assert_eq!(usage(&c, "/q"), (700_000, 5));
    let (code, out) = c.admin(&["snapshot", "restore", "/q", "s", "g", "--to", "/q/g2"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("EDQUOT"), "{out}");
    assert!(!m.join("q/g2").exists());
    ok(&c, &["snapshot", "delete", "/q", "s"]);
    assert_eq!(
        usage(&c, "/q"),
        (700_000, 5),
        "deleting a snapshot moved usage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncate_and_extend_move_usage_by_the_size_change() {
    let c = cluster("quota-truncate", 1).await;
    let m = c.mount(0).path();
    std::fs::create_dir(m.join("q")).unwrap();
    ok(&c, &["quota", "set", "/q", "--bytes", "3M"]);
    std::fs::write(m.join("q/f"), vec![3u8; 500_000]).unwrap();
    assert_eq!(usage(&c, "/q"), (500_000, 1));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.join("q/f"))
        .unwrap();
    f.set_len(100).unwrap();
    assert_eq!(usage(&c, "/q"), (100, 1), "truncated");
    f.set_len(2_000_000).unwrap();
    assert_eq!(
        usage(&c, "/q"),
        (2_000_000, 1),
        "extended (a hole counts: sizes count)"
    );
    let past = f.set_len(4 << 20).unwrap_err();
    assert_eq!(errno(&past), EDQUOT, "{past}");
    assert_eq!(
        usage(&c, "/q"),
        (2_000_000, 1),
        "a refused extension moved usage"
    );
}
