//! The trash (issue 13, point 2): a file deleted on one mount is listed by `tessera trash`,
//! restored bit-exact with its mode and owner and seen from another mount; purged, it is
//! gone; with a short retention the expiry frees it and its shard bytes return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use tessera_tests::MetaOptions;
use tessera_tests::fault::{noise, shard_bytes, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};

fn options() -> MetaOptions {
    MetaOptions {
        trash_retention_s: 3600,
        ..MetaOptions::default()
    }
    .with_fast_gc()
}

/// The trash as `tessera trash list --json` prints it: one object per file.
fn listed(c: &DevCluster) -> Vec<serde_json::Value> {
    let (code, out) = c.admin(&["trash", "list", "--json"]);
    assert_eq!(code, 0, "trash list: {out}");
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ok(c: &DevCluster, args: &[&str]) -> String {
    let (code, out) = c.admin(args);
    assert_eq!(code, 0, "tessera {args:?}: {out}");
    out
}

/// Waits until `path` exists as seen through a mount (its negative entry may be cached
/// for the attribute time).
async fn appears(path: &Path) {
    wait_for(
        &format!("{} to appear", path.display()),
        Duration::from_secs(10),
        Duration::from_millis(100),
        || path.exists().then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_file_is_listed_restored_from_another_mount_purged_and_expired() {
    let c = DevCluster::start_opts("trash", 3, 6, "4+2", 2, &options()).await;
    let (a, b) = (
        c.mount(0).path().to_path_buf(),
        c.mount(1).path().to_path_buf(),
    );
    std::fs::create_dir(a.join("d")).unwrap();
    let data = noise(300_000, 13);
    let f = a.join("d/report");
    std::fs::write(&f, &data).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let ino = std::fs::metadata(&f).unwrap().ino();

    // Deleted on one mount, listed with where it came from.
    std::fs::remove_file(&f).unwrap();
    let out = ok(&c, &["trash"]);
    assert!(
        out.contains("1 file,") && out.contains("kept 1 hour (3600 s)"),
        "{out}"
    );
    let list = listed(&c);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["ino"], ino);
    assert_eq!(list[0]["size"], data.len() as u64);
    assert_eq!(list[0]["path"], "/d/report");
    let (code, status) = c.admin(&["status"]);
    assert!(
        status.contains("trash: 1 file, 293.0 KiB in the trash"),
        "status exit {code}: {status}"
    );

    // Restored where it was, and read from the other mount: same bytes, mode and owner.
    ok(&c, &["trash", "restore", &ino.to_string()]);
    let g = b.join("d/report");
    appears(&g).await;
    drop_caches();
    assert!(std::fs::read(&g).unwrap() == data, "restored bytes differ");
    let m = std::fs::metadata(&g).unwrap();
    assert_eq!(
        (m.ino(), m.mode() & 0o7777, m.uid(), m.gid()),
        (ino, 0o640, 1234, 5678)
    );
    assert!(listed(&c).is_empty());

    // Deleted on the other mount, restored under another name, deleted, purged.
    std::fs::remove_file(&g).unwrap();
    ok(&c, &["trash", "restore", &ino.to_string(), "--to", "/copy"]);
    appears(&a.join("copy")).await;
    assert!(std::fs::read(a.join("copy")).unwrap() == data);
    std::fs::remove_file(a.join("copy")).unwrap();
    ok(&c, &["trash", "purge", &ino.to_string()]);
    assert!(listed(&c).is_empty());
    let (code, out) = c.admin(&["trash", "restore", &ino.to_string()]);
    assert_ne!(code, 0, "a purged file restored: {out}");
    assert!(out.contains("not in the trash"), "{out}");

    // A short retention: the expiry frees a deleted file and its shards go.
    let dirs: Vec<_> = c.chunks.iter().map(|s| s.data.clone()).collect();
    let before = shard_bytes(dirs.iter().map(|d| d.as_path()));
    let big = a.join("big");
    std::fs::write(&big, noise(16 << 20, 14)).unwrap();
    let full = shard_bytes(dirs.iter().map(|d| d.as_path()));
    assert!(full > before + (16 << 20), "{before} -> {full}");
    ok(&c, &["trash", "--retention", "2"]);
    std::fs::remove_file(&big).unwrap();
    assert_eq!(listed(&c).len(), 1, "kept until its 2 s run out");
    wait_for(
        "the expiry to free the file",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || listed(&c).is_empty().then_some(()),
    )
    .await;
    let after = wait_for(
        "its shard bytes to return",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || {
            let now = shard_bytes(dirs.iter().map(|d| d.as_path()));
            (now <= before).then_some(now)
        },
    )
    .await;
    eprintln!("trash expiry: shard bytes {before} -> {full} -> {after}");

    // Retention 0: a delete frees at once, nothing is listed.
    ok(&c, &["trash", "--retention", "0"]);
    std::fs::write(a.join("gone"), b"x").unwrap();
    std::fs::remove_file(a.join("gone")).unwrap();
    assert!(listed(&c).is_empty());
}
