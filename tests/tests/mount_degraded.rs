//! Reads survive the loss of m chunkservers: with EC 4+2, two chunkservers SIGKILLed,
//! every file written before reads back bit-exact (from a mount whose page cache never
//! held it, so every byte comes from the surviving shards).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_tests::fault::noise;
use tessera_tests::mount::{DevCluster, drop_caches};

#[tokio::test(flavor = "multi_thread")]
async fn files_read_back_with_two_chunkservers_killed() {
    let mut c = DevCluster::start("mount-degraded", 2).await;
    let sizes = [1usize, 4095, (4 << 20) - 1, (4 << 20) + 1, 20 << 20];
    let files: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("f{i}"), noise(n, i as u64 + 10)))
        .collect();
    for (name, data) in &files {
        std::fs::write(c.mount(0).join(name), data).unwrap();
    }
    c.chunks[0].kill9();
    c.chunks[3].kill9();
    drop_caches();
    for m in 0..2 {
        for (name, data) in &files {
            let got = std::fs::read(c.mount(m).join(name)).unwrap();
            assert!(
                got == *data,
                "{name} on mount {m} differs after losing two chunkservers"
            );
        }
    }
}
