//! `tessera drain` moves every shard off a chunkserver (issue #7): afterwards no stripe
//! names it, the server can be killed with every file still readable and every stripe
//! healthy, and `tessera repair` / `tessera gc` report it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_tests::fault::{fsck, noise};
use tessera_tests::mount::{DevCluster, drop_caches};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_chunkserver_can_be_removed_without_degrading_anything() {
    let mut c = DevCluster::start_with("ops-drain", 3, 7, "4+2", 1).await;
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("d{i}"), noise((4 << 20) + 1000 * i, 300 + i as u64)))
        .collect();
    for (name, data) in &files {
        std::fs::write(c.mount(0).join(name), data).unwrap();
    }
    let victim = c.chunks[2].addr.clone();
    let (code, out) = c.admin(&["drain", &victim, "--wait-ms", "120000"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("can be stopped"), "{out}");
    // Not a terminal: progress comes as plain lines, one per change.
    assert!(
        out.lines().any(|l| l.ends_with(" shards left")),
        "drain shows its progress: {out}"
    );
    // The drain stands (no new shards) until the server goes, and status says so.
    let (_, out) = c.admin(&["status"]);
    let row = out
        .lines()
        .find(|l| l.contains(&victim))
        .unwrap_or_default();
    assert!(row.contains("DRAINING"), "{out}");
    assert!(out.contains("shards left to move"), "{out}");
    c.chunks[2].kill9();
    let (code, out) = c.admin(&["repair", "--wait-ms", "0"]);
    assert_eq!(code, 0, "no stripe may depend on the drained server: {out}");
    drop_caches();
    for (name, data) in &files {
        assert!(
            std::fs::read(c.mount(0).join(name)).unwrap() == *data,
            "{name}"
        );
    }
    let (code, out) = fsck(&c.meta.addrs(), &c.secret_file, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.admin(&["gc"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GC queue"), "{out}");
}
