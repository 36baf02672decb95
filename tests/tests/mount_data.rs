//! File data through a real mount: sizes around stripe boundaries, holes, truncates and
//! overwrites, each read back bit-exact from a second mount (whose page cache never saw
//! the data, so the bytes come from the chunkservers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tessera_tests::fault::noise;
use tessera_tests::mount::{DevCluster, drop_caches};

const MIB: usize = 1 << 20;

/// Reads `path` in 1 MiB pieces and compares with `want`, naming the first difference.
fn assert_content(path: &Path, want: &[u8]) {
    let mut f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    assert_eq!(len, want.len(), "size of {}", path.display());
    let mut buf = vec![0u8; MIB];
    let mut at = 0;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n] != want[at..at + n] {
            let i = (0..n).find(|&i| buf[i] != want[at + i]).unwrap();
            panic!("{}: first difference at byte {}", path.display(), at + i);
        }
        at += n;
    }
    assert_eq!(at, want.len(), "bytes read from {}", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn sizes_round_trip_bit_exact() {
    let c = DevCluster::start("mount-sizes", 2).await;
    let (a, b) = (c.mount(0), c.mount(1));
    let sizes = [0, 1, 4095, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 9 * MIB + 17];
    for (i, &size) in sizes.iter().enumerate() {
        let data = noise(size, i as u64);
        std::fs::write(a.join(format!("f{size}")), &data).unwrap();
        assert_content(&b.join(format!("f{size}")), &data);
        assert_content(&a.join(format!("f{size}")), &data);
    }
    // 200 MiB: many full stripes across chunk boundaries (64 MiB).
    let big = noise(200 * MIB, 99);
    let mut f = File::create(a.join("big")).unwrap();
    for piece in big.chunks(MIB) {
        f.write_all(piece).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    assert_content(&b.join("big"), &big);
}

#[tokio::test(flavor = "multi_thread")]
async fn holes_truncates_and_overwrites() {
    let c = DevCluster::start("mount-holes", 2).await;
    let (a, b) = (c.mount(0), c.mount(1));

    // A sparse file: data, a 10 MiB gap, data; an all-zero write in the middle.
    let mut model = vec![0u8; 12 * MIB + 100];
    let head = noise(5000, 1);
    let tail = noise(100, 2);
    model[..5000].copy_from_slice(&head);
    model[12 * MIB..].copy_from_slice(&tail);
    let f = File::create(a.join("sparse")).unwrap();
    f.write_all_at(&head, 0).unwrap();
    f.write_all_at(&vec![0u8; MIB], 3 * MIB as u64).unwrap();
    f.write_all_at(&tail, 12 * MIB as u64).unwrap();
    drop(f);
    assert_content(&b.join("sparse"), &model);

    // Truncate down into the middle of a stripe, then up again: the cut bytes read as zeros.
    let mut model = noise(6 * MIB, 3);
    std::fs::write(a.join("t"), &model).unwrap();
    let f = OpenOptions::new().write(true).open(a.join("t")).unwrap();
    f.set_len(MIB as u64 + 123).unwrap();
    model.truncate(MIB + 123);
    drop(f);
    assert_content(&b.join("t"), &model);
    let f = OpenOptions::new().write(true).open(b.join("t")).unwrap();
    f.set_len(5 * MIB as u64).unwrap();
    model.resize(5 * MIB, 0);
    drop(f);
    assert_content(&a.join("t"), &model);
    assert_content(&b.join("t"), &model);

    // Overwrite 4 KiB in the middle of a stripe, and a range across a stripe boundary.
    let mut model = noise(10 * MIB, 4);
    std::fs::write(a.join("o"), &model).unwrap();
    let patch = noise(4096, 5);
    let cross = noise(300_000, 6);
    let mut f = OpenOptions::new().write(true).open(a.join("o")).unwrap();
    f.seek(SeekFrom::Start(3 * MIB as u64 + 100)).unwrap();
    f.write_all(&patch).unwrap();
    f.write_all_at(&cross, 4 * MIB as u64 - 150_000).unwrap();
    drop(f);
    model[3 * MIB + 100..3 * MIB + 100 + 4096].copy_from_slice(&patch);
    model[4 * MIB - 150_000..4 * MIB + 150_000].copy_from_slice(&cross);
    assert_content(&b.join("o"), &model);
    drop_caches();
    assert_content(&a.join("o"), &model);

    // Many small random overwrites in one flush (packed into shared stripes), some of them
    // overlapping, some all zeros.
    let f = OpenOptions::new().write(true).open(a.join("o")).unwrap();
    let mut x = 12345u64;
    for i in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (x >> 20) as usize % (model.len() - 5000);
        let len = 1 + (x >> 8) as usize % 4096;
        let data = if i % 10 == 0 {
            vec![0u8; len]
        } else {
            noise(len, x)
        };
        f.write_all_at(&data, off as u64).unwrap();
        model[off..off + len].copy_from_slice(&data);
    }
    f.sync_all().unwrap();
    drop(f);
    assert_content(&b.join("o"), &model);

    // Appends to a file another mount wrote.
    let mut f = OpenOptions::new().append(true).open(b.join("o")).unwrap();
    f.write_all(b"appended").unwrap();
    drop(f);
    model.extend_from_slice(b"appended");
    assert_content(&a.join("o"), &model);
}
