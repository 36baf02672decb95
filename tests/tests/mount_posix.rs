//! POSIX behaviour across two mounts of one cluster: close-to-open consistency, unlink
//! while open, hard links, atomic rename under a reader, flock contention, mmap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FlockOperation, flock};
use tessera_tests::mount::DevCluster;

#[tokio::test(flavor = "multi_thread")]
async fn close_to_open_and_unlink_while_open() {
    let c = DevCluster::start("mount-cto", 2).await;
    let (a, b) = (c.mount(0), c.mount(1));

    std::fs::write(a.join("f"), b"version one").unwrap();
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"version one");
    // Same size, new bytes; then a longer version: each visible on B after A's close.
    std::fs::write(a.join("f"), b"version two").unwrap();
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"version two");
    std::fs::write(a.join("f"), b"version three, longer").unwrap();
    assert_eq!(
        std::fs::read(b.join("f")).unwrap(),
        b"version three, longer"
    );
    // And back: B writes, A reads.
    std::fs::write(b.join("f"), b"from b").unwrap();
    assert_eq!(std::fs::read(a.join("f")).unwrap(), b"from b");

    // Buffered writes reach the cluster within a couple of seconds even without a close
    // (the flush timer), and A's own stat counts them at once.
    let mut open_writer = File::create(a.join("timer")).unwrap();
    open_writer.write_all(b"flushed by the timer").unwrap();
    assert_eq!(std::fs::metadata(a.join("timer")).unwrap().len(), 20);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        std::fs::read(b.join("timer")).unwrap(),
        b"flushed by the timer"
    );
    drop(open_writer);

    // Unlink on B while A holds the file open: A keeps reading and writing it.
    std::fs::write(a.join("u"), b"still here").unwrap();
    let mut held = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.join("u"))
        .unwrap();
    std::fs::remove_file(b.join("u")).unwrap();
    assert!(!b.join("u").exists());
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    held.write_all_at(b"STILL", 0).unwrap();
    held.sync_all().unwrap();
    let mut buf = [0u8; 10];
    held.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"STILL here");
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // A's name cache (1 s)
    assert!(!a.join("u").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn links_renames_and_locks() {
    let c = DevCluster::start("mount-links", 2).await;
    let (a, b) = (c.mount(0), c.mount(1));

    // Hard links: nlink visible on every name, on both mounts.
    std::fs::create_dir(a.join("d")).unwrap();
    std::fs::write(a.join("d/x"), b"linked").unwrap();
    std::fs::hard_link(a.join("d/x"), a.join("y")).unwrap();
    for m in [a, b] {
        let x = std::fs::metadata(m.join("d/x")).unwrap();
        let y = std::fs::metadata(m.join("y")).unwrap();
        assert_eq!((x.nlink(), y.nlink()), (2, 2));
        assert_eq!(x.ino(), y.ino());
    }
    std::fs::remove_file(b.join("y")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // attribute cache
    assert_eq!(std::fs::metadata(a.join("d/x")).unwrap().nlink(), 1);

    // Rename over an existing file while B reads it: every read sees one whole version.
    let old = vec![b'o'; 100_000];
    let new = vec![b'n'; 150_000];
    std::fs::write(a.join("target"), &old).unwrap();
    std::fs::write(a.join("incoming"), &new).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (b.join("target"), stop.clone());
        let (old, new) = (old.clone(), new.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) || reads == 0 {
                let got = std::fs::read(&path).unwrap();
                assert!(
                    got == old || got == new,
                    "a read saw a mix: {} bytes",
                    got.len()
                );
                reads += 1;
            }
            reads
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::rename(a.join("incoming"), a.join("target")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(std::fs::read(b.join("target")).unwrap(), new);
    assert!(!b.join("incoming").exists());

    // flock: an exclusive lock on A makes B's non-blocking attempt fail until released.
    std::fs::write(a.join("lock"), b"").unwrap();
    let fa = File::open(a.join("lock")).unwrap();
    let fb = File::open(b.join("lock")).unwrap();
    flock(&fa, FlockOperation::NonBlockingLockExclusive).unwrap();
    let e = flock(&fb, FlockOperation::NonBlockingLockExclusive).unwrap_err();
    assert_eq!(e, rustix::io::Errno::WOULDBLOCK);
    assert!(flock(&fb, FlockOperation::NonBlockingLockShared).is_err());
    flock(&fa, FlockOperation::Unlock).unwrap();
    flock(&fb, FlockOperation::NonBlockingLockExclusive).unwrap();
    // Closing the holder releases its lock. The kernel sends the release after close()
    // returns, so the other mount sees it shortly after, not at once.
    drop(fb);
    let started = std::time::Instant::now();
    while let Err(e) = flock(&fa, FlockOperation::NonBlockingLockExclusive) {
        assert!(
            started.elapsed().as_secs() < 5,
            "lock not released after close: {e}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mmap_write_then_read() {
    let c = DevCluster::start("mount-mmap", 2).await;
    let (a, b) = (c.mount(0), c.mount(1));
    let path = a.join("m");
    let mut f = File::create(&path).unwrap();
    f.write_all(&vec![b'.'; 3 * 4096 + 10]).unwrap();
    drop(f);
    // Python's mmap keeps this test free of unsafe code.
    let script = format!(
        "import mmap\nf = open({:?}, 'r+b')\nm = mmap.mmap(f.fileno(), 0)\n\
         m[0:5] = b'hello'\nm[8192:8197] = b'world'\nm.flush()\nm.close()\nf.close()\n",
        path.display().to_string()
    );
    let ok = Command::new("python3")
        .args(["-c", &script])
        .status()
        .expect("python3 is needed for the mmap test");
    assert!(ok.success());
    for m in [a, b] {
        let got = std::fs::read(m.join("m")).unwrap();
        assert_eq!(got.len(), 3 * 4096 + 10);
        assert_eq!(&got[0..5], b"hello");
        assert_eq!(&got[8192..8197], b"world");
        assert_eq!(got[5], b'.');
    }
}
