//! A writer through the mount while the metadata leader is SIGKILLed three times (issue #6,
//! point 3): no call fails, each failover's gap (longest single write+fsync) stays under
//! 5 s, and every fsynced file verifies afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera_tests::fault::noise;
use tessera_tests::mount::{DevCluster, drop_caches};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_sees_no_error_across_three_leader_kills() {
    let mut c = DevCluster::start("fault-failover", 1).await;
    let dir = c.mount(0).path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // (name, content, seconds the write + fsync took)
            let mut done: Vec<(String, Vec<u8>, f64)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w{i}");
                let data = noise(64 << 10, i);
                let t = Instant::now();
                let mut f = std::fs::File::create(dir.join(&name))
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                f.write_all(&data)
                    .unwrap_or_else(|e| panic!("write {name}: {e}"));
                f.sync_all().unwrap_or_else(|e| panic!("fsync {name}: {e}"));
                drop(f);
                let back = std::fs::read(dir.join(&name)).unwrap();
                assert!(back == data, "{name} read back differently");
                done.push((name, data, t.elapsed().as_secs_f64()));
                i += 1;
            }
            done
        })
    };
    let all: Vec<u64> = vec![1, 2, 3];
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = c
            .meta
            .wait_leader(&all, Duration::from_secs(20))
            .await
            .expect("a leader");
        c.meta.kill9(leader);
        eprintln!("round {round}: killed leader {leader}");
        tokio::time::sleep(Duration::from_secs(4)).await;
        c.meta.restart(leader).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let done = writer.join().expect("the writer saw an error");
    let mut slowest: Vec<f64> = done.iter().map(|d| d.2).collect();
    slowest.sort_by(|a, b| b.total_cmp(a));
    eprintln!(
        "{} files written and fsynced; slowest write+fsync (failover gaps): {:.2?} s",
        done.len(),
        &slowest[..3.min(slowest.len())]
    );
    assert!(slowest[0] < 5.0, "a failover gap of {:.2} s", slowest[0]);
    drop_caches();
    for (name, data, _) in &done {
        let got = std::fs::read(c.mount(0).join(name)).unwrap();
        assert!(got == *data, "{name} differs after the failovers");
    }
}
