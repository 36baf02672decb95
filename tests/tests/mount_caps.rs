//! Mounts caching under capabilities (`--caps`): after a listing, lookups and stats of the
//! directory are answered by the mount (no metadata read reaches the leader), and another
//! mount's change is seen at once, because the leader recalls the caps before applying it.
//! Both mounts run with `--attr-ttl-ms 0`, so the kernel asks the mount every time.
//! Opens of held files are answered by the mount too, and reported to the leader when
//! another mount's unlink or a lock needs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::fcntl::{Flock, FlockArg};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};
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

fn meta_writes(metrics: &str) -> f64 {
    sum_at(
        metrics,
        "tessera_rpc_client_requests_total",
        &[("method", "meta-write")],
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

fn content(i: usize) -> String {
    format!("file {i}")
}

/// A new cluster with two `--caps` mounts, a (0, exporting metrics at the address returned)
/// and b (1), and directory `d` holding `FILES` files `f{i}` made through a.
async fn two_mounts_and_files(tag: &str) -> (DevCluster, String) {
    let mut c = DevCluster::start(tag, 0).await;
    let metrics = format!("127.0.0.1:{}", free_port());
    c.add_mount(&["--caps", "--attr-ttl-ms", "0", "--metrics-addr", &metrics]);
    c.add_mount(&["--caps", "--attr-ttl-ms", "0"]);
    let dir = c.mount(0).join("d");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("f{i}")), content(i)).unwrap();
    }
    (c, metrics)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_directory_is_served_by_the_mount_until_another_mount_changes_it() {
    let (c, metrics) = two_mounts_and_files("mount-caps").await;
    let (a, b) = (c.mount(0), c.mount(1));
    let dir = a.join("d");
    // The listing fills the cache: caps on d and its entries, then the whole listing.
    assert_eq!(names(&dir).len(), FILES);

    let before = meta_reads(&metrics);
    let started = Instant::now();
    for _ in 0..3 {
        for i in 0..FILES {
            let md = std::fs::metadata(dir.join(format!("f{i}"))).unwrap();
            assert_eq!(md.len(), content(i).len() as u64);
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

    // a's own removals keep its listing (the name is taken out once the leader applied
    // the unlink), so removing names one by one, each followed by a listing, does not
    // read the directory again each time.
    let left = names(&dir);
    assert_eq!(left.len(), FILES);
    let before = meta_reads(&metrics);
    for (i, name) in left.iter().enumerate() {
        std::fs::remove_file(dir.join(name)).unwrap();
        assert!(std::fs::metadata(dir.join(name)).is_err());
        assert_eq!(names(&dir).len(), left.len() - i - 1);
    }
    let reads = meta_reads(&metrics) - before;
    eprintln!(
        "{} unlinks, each with a listing: {reads} metadata reads",
        left.len()
    );
    assert!(reads <= 2.0 * left.len() as f64, "{reads} metadata reads");
    assert!(names(&bdir).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn opens_under_caps_ask_no_one_until_an_unlink_or_a_lock_needs_them() {
    let (c, metrics) = two_mounts_and_files("mount-caps-opens").await;
    let (a, b) = (c.mount(0), c.mount(1));
    let dir = a.join("d");
    let read_all = || {
        for i in 0..FILES {
            let got = std::fs::read_to_string(dir.join(format!("f{i}"))).unwrap();
            assert_eq!(got, content(i));
        }
    };
    // The first read of each file moves its access time (relatime: the first read after
    // the change), a change the leader stamps: those opens ask it.
    read_all();
    // The listing takes caps on d and its entries; the batched releases go out.
    assert_eq!(names(&dir).len(), FILES);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = meta_writes(&metrics);
    read_all();
    read_all();
    let writes = meta_writes(&metrics) - before;
    eprintln!(
        "{} opens, reads and closes under caps: {writes} metadata writes",
        2 * FILES
    );
    // Without caps each open is a write and the releases a few more (this run: 120 opens).
    // Left: a lease renewal that may fall in between.
    assert!(
        writes <= 3.0,
        "{writes} metadata writes for opens under caps"
    );

    // The first read after a change moves the access time (relatime): a moves it itself,
    // shows it at once, and sends the times in the background, in batches; the leader
    // records exactly the times a showed.
    for i in 20..40 {
        let on_b = b.join("d").join(format!("f{i}"));
        std::fs::set_permissions(on_b, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    assert_eq!(names(&dir).len(), FILES);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let atime = |md: &std::fs::Metadata| md.atime() * 1_000_000_000 + md.atime_nsec();
    let ctime = |md: &std::fs::Metadata| md.ctime() * 1_000_000_000 + md.ctime_nsec();
    let before = meta_writes(&metrics);
    let mut shown = Vec::new();
    for i in 20..40 {
        let path = dir.join(format!("f{i}"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content(i));
        let md = std::fs::metadata(&path).unwrap();
        assert!(
            atime(&md) > ctime(&md),
            "f{i}: the read did not move the access time"
        );
        shown.push(atime(&md));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = meta_writes(&metrics) - before;
    eprintln!("20 first reads after a change under caps: {writes} metadata writes");
    assert!(writes < 10.0, "{writes} metadata writes for 20 reads");
    for (i, shown) in (20..40).zip(shown) {
        let md = std::fs::metadata(b.join("d").join(format!("f{i}"))).unwrap();
        assert_eq!(
            atime(&md),
            shown,
            "f{i}: b sees another access time than a showed"
        );
    }

    // An unlink on b while a has the file open (an open b's leader did not hear of): the
    // recall makes a report it first, so the file lives on as an orphan until closed.
    let before = meta_writes(&metrics);
    let mut open = std::fs::File::open(dir.join("f7")).unwrap();
    assert_eq!(
        meta_writes(&metrics) - before,
        0.0,
        "the open asked the leader"
    );
    std::fs::remove_file(b.join("d").join("f7")).unwrap();
    assert!(!names(&dir).contains(&"f7".to_string()));
    let md = open
        .metadata()
        .expect("the open file lives on as an orphan");
    assert_eq!(md.nlink(), 0);
    let mut got = String::new();
    open.read_to_string(&mut got).unwrap();
    assert_eq!(got, content(7));
    drop(open);

    // The same through a's own unlink (no recall: a reports its opens before the change).
    // (The listing fills the cache again, and its access time goes out in the background.)
    let listed = names(&dir).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = meta_writes(&metrics);
    let mut open = std::fs::File::open(dir.join("f9")).unwrap();
    assert_eq!(
        meta_writes(&metrics) - before,
        0.0,
        "the open asked the leader"
    );
    std::fs::remove_file(dir.join("f9")).unwrap();
    assert_eq!(names(&dir).len(), listed - 1);
    assert_eq!(open.metadata().expect("an orphan").nlink(), 0);
    let mut got = String::new();
    open.read_to_string(&mut got).unwrap();
    assert_eq!(got, content(9));
    drop(open);

    // A lock on a file opened under caps: the leader learns of the open first, and the lock
    // is the leader's (b cannot take it).
    let held = Flock::lock(
        std::fs::File::open(dir.join("f8")).unwrap(),
        FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, e)| e)
    .expect("flock of a file opened under caps");
    let other = std::fs::File::open(b.join("d").join("f8")).unwrap();
    let (other, e) = Flock::lock(other, FlockArg::LockExclusiveNonblock)
        .map(|_| ())
        .expect_err("b took a lock a holds");
    assert_eq!(e, nix::errno::Errno::EWOULDBLOCK);
    drop(held);
    Flock::lock(other, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .expect("b takes the lock once a closed the file");
}
