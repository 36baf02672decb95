//! A frozen chunkserver (SIGSTOP: its connections accept nothing and answer nothing): reads
//! go around it through parity after the learnt hedge delay, new writes are stored without
//! it (degraded, repaired later) once its puts miss the grace, and after SIGCONT everything
//! is consistent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};
use tessera_tests::fault::{fsck, noise, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_chunkserver_slows_but_does_not_break_reads_or_writes() {
    let c = DevCluster::start_with("fault-stop", 3, 7, "4+2", 1).await;
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("s{i}"), noise(5 << 20, 700 + i as u64)))
        .collect();
    for (name, data) in &files {
        std::fs::write(c.mount(0).join(name), data).unwrap();
    }
    let pid = c.chunks[0].process.pid().expect("running");
    signal(pid, "-STOP");
    let frozen = Instant::now();
    drop_caches();
    for (name, data) in &files {
        let t = Instant::now();
        assert!(
            std::fs::read(c.mount(0).join(name)).unwrap() == *data,
            "{name}"
        );
        eprintln!(
            "read {name} with a frozen server: {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let mut f = std::fs::File::create(c.mount(0).join("new")).unwrap();
    f.write_all(&noise(5 << 20, 9)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    eprintln!(
        "write + fsync with a frozen server: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    signal(pid, "-CONT");
    eprintln!("frozen for {:.1} s", frozen.elapsed().as_secs_f64());
    drop_caches();
    assert!(std::fs::read(c.mount(0).join("new")).unwrap() == noise(5 << 20, 9));
    let (meta, secret) = (c.meta.addrs(), c.secret_file.clone());
    wait_for(
        "fsck clean after SIGCONT",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || (fsck(&meta, &secret, &[]).0 == 0).then_some(()),
    )
    .await;
}
