//! Mounts caching under capabilities (`--caps`): after a listing, lookups and stats of the
//! directory are answered by the mount (no metadata read reaches the leader), and another
//! mount's change is seen at once, because the leader recalls the caps before applying it.
//! Both mounts run with `--attr-ttl-ms 0`, so the kernel asks the mount every time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Instant;
use tessera_tests::mount::DevCluster;
use tessera_tests::ports::free_port;
use tessera_tests::scrape::sum_at;

const FILES: usize = 60;

fn meta_reads(metrics: &str) -> f64 {
    sum_at(
        metrics,
        "tessera_rpc_client_requests_total",
        &[("method", "meta-read")],
    )
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_directory_is_served_by_the_mount_until_another_mount_changes_it() {
    let mut c = DevCluster::start("mount-caps", 0).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let a = c.add_mount(&["--caps", "--attr-ttl-ms", "0", "--metrics-addr", &metrics]);
    let b = c.add_mount(&["--caps", "--attr-ttl-ms", "0"]);
    let (a, b) = (c.mount(a), c.mount(b));

    let dir = a.join("d");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    // The listing fills the cache: caps on d and its entries, then the whole listing.
    assert_eq!(names(&dir).len(), FILES);

    let before = meta_reads(&metrics);
    let started = Instant::now();
    for _ in 0..3 {
        for i in 0..FILES {
            let md = std::fs::metadata(dir.join(format!("f{i}"))).unwrap();
            assert_eq!(md.len(), format!("file {i}").len() as u64);
        }
        assert!(std::fs::metadata(dir.join("missing")).is_err());
        assert_eq!(names(&dir).len(), FILES);
    }
    let reads = meta_reads(&metrics) - before;
    eprintln!(
        "{} stats, 3 negative lookups, 3 listings: {reads} metadata reads, {:?}",
        3 * FILES,
        started.elapsed()
    );
    // Without the cache each stat asks the leader at least once (this run: 560 reads).
    // With it: the root's first fill, and a listing read again after each listing's
    // access-time update (this mount's own change to d).
    assert!(reads <= 12.0, "{reads} metadata reads for cached stats");

    // b's changes are seen by a at once: the leader recalls a's caps first.
    let bdir = b.join("d");
    std::fs::write(bdir.join("new"), b"from b").unwrap();
    assert_eq!(std::fs::read(dir.join("new")).unwrap(), b"from b");
    assert_eq!(names(&dir).len(), FILES + 1);
    std::fs::set_permissions(bdir.join("f3"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("f3")).unwrap().mode() & 0o777,
        0o600
    );
    std::fs::remove_file(bdir.join("f4")).unwrap();
    assert!(std::fs::metadata(dir.join("f4")).is_err());
    std::fs::write(bdir.join("f5"), b"longer contents from b").unwrap();
    assert_eq!(
        std::fs::metadata(dir.join("f5")).unwrap().len(),
        "longer contents from b".len() as u64
    );
    // And a's own changes by a, in a directory it caches.
    std::fs::rename(dir.join("f6"), dir.join("g6")).unwrap();
    assert!(std::fs::metadata(dir.join("f6")).is_err());
    assert!(names(&dir).contains(&"g6".to_string()));
    assert!(names(&bdir).contains(&"g6".to_string()));
}
