//! Every Tessera process SIGKILLed during a write workload (issue #6, point 4): after a
//! restart and a new mount every file whose fsync returned is intact, and the shards of the
//! interrupted uploads are swept (sweep grace shortened by flags) until fsck is clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_tests::MetaOptions;
use tessera_tests::fault::{fsck, noise, wait_for};
use tessera_tests::mount::DevCluster;

/// A file name and the content its fsync made durable.
type File = (String, Vec<u8>);

fn options() -> MetaOptions {
    let flags = [
        ("--upload-window-ms", "2000"),
        ("--orphan-grace-ms", "3000"),
        ("--sweep-interval-ms", "1000"),
        ("--gc-grace-ms", "1000"),
    ];
    MetaOptions {
        extra_args: flags
            .iter()
            .flat_map(|(k, v)| [k.to_string(), v.to_string()])
            .collect(),
        ..MetaOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsynced_files_survive_killing_every_process() {
    let mut c = DevCluster::start_opts("fault-crash", 3, 6, "4+2", 1, &options()).await;
    // The writers work in a directory that exists only on Tessera: once the killed mount is
    // detached, the mountpoint is an empty local directory and their next create fails.
    // Writing straight into the mountpoint, a writer between two files would carry on in
    // the local directory underneath, and those "fsynced" files would then be hidden by the
    // new mount (twice seen as a lost file).
    let dir = c.mount(0).path().join("work");
    std::fs::create_dir(&dir).unwrap();
    let synced: Arc<Mutex<Vec<File>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (dir, synced) = (dir.clone(), synced.clone());
        writers.push(std::thread::spawn(move || {
            for i in 0.. {
                let name = format!("c{w}-{i}");
                let data = noise(((i % 7) as usize + 1) * (700 << 10), w * 1_000_000 + i);
                let ok = (|| {
                    let mut f = std::fs::File::create(dir.join(&name))?;
                    f.write_all(&data)?;
                    f.sync_all()
                })();
                match ok {
                    Ok(()) => synced.lock().unwrap().push((name, data)),
                    // The crash: the writer stops at its first error.
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Everything at once: the mount first (so no more fsyncs return), then the servers.
    c.mounts[0].kill9();
    for s in &mut c.chunks {
        s.kill9();
    }
    for id in 1..=3 {
        c.meta.kill9(id);
    }
    // Every writer has met its error before anything restarts, so none can reach the new
    // mount.
    for w in writers {
        w.join().unwrap();
    }
    let synced = std::mem::take(&mut *synced.lock().unwrap());
    assert!(synced.len() > 3, "only {} files were fsynced", synced.len());

    for id in 1..=3 {
        c.meta.restart(id).await;
    }
    for s in &mut c.chunks {
        s.restart().await;
    }
    c.mounts.clear();
    let m = c.add_mount(&[]);
    let mnt = c.mount(m).path().join("work");
    let files = wait_for(
        "the restarted cluster to serve the first file",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || std::fs::read(mnt.join(&synced[0].0)).ok(),
    )
    .await;
    assert!(files == synced[0].1);
    for (name, data) in &synced {
        let got = std::fs::read(mnt.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} differs after the crash");
    }
    let (meta, secret) = (c.meta.addrs(), c.secret_file.clone());
    let out = wait_for(
        "fsck to be clean (interrupted uploads swept)",
        Duration::from_secs(90),
        Duration::from_secs(2),
        || {
            let (code, out) = fsck(&meta, &secret, &["--orphan-age-ms", "3000"]);
            (code == 0).then_some(out)
        },
    )
    .await;
    eprintln!(
        "{} fsynced files intact after SIGKILL of every process\n{out}",
        synced.len()
    );
}
