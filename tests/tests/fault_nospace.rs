//! Full chunkserver disks (issue #6, point 9), on real size-limited tmpfs filesystems: one
//! small server fills up and writes go to the others; when every server is full the writer
//! gets ENOSPC (not EIO), nothing stored before is harmed, and after files are deleted (GC
//! grace shortened) writes succeed again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::Duration;
use tessera_client::MetaClientOptions;
use tessera_proto::meta::ChunkserverState;
use tessera_tests::chunk::{ChunkOptions, Chunkserver};
use tessera_tests::fault::{noise, wait_for};
use tessera_tests::mount::{Mount, drop_caches};
use tessera_tests::process::write_secret;
use tessera_tests::tmpfs::Tmpfs;
use tessera_tests::{MetaCluster, MetaOptions, TempDir};

const MIB: u64 = 1 << 20;

/// Writes and fsyncs one file; the error kind on failure.
fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_disks_give_enospc_and_harm_nothing() {
    let dir = TempDir::new("fault-nospace");
    let (secret_file, secret) = write_secret(dir.path());
    let opts = MetaOptions {
        extra_args: ["--gc-grace-ms", "500", "--upload-window-ms", "1000"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..MetaOptions::default()
    };
    let meta = MetaCluster::start(dir.path(), &secret_file, &secret, 3, &opts).await;
    // Six servers of 24 MiB and one of 6 MiB: the small one fills first.
    let sizes = [24, 24, 24, 24, 24, 24, 6];
    let mut disks = Vec::new();
    let mut servers = Vec::new();
    let chunk_opts = ChunkOptions {
        meta: meta.addrs(),
        ..ChunkOptions::default()
    };
    for (i, mib) in sizes.iter().enumerate() {
        let disk = Tmpfs::mount(&dir.join(format!("disk-{i}")), mib * MIB).unwrap();
        let data = disk.path().join("data");
        disks.push(disk);
        let name = format!("chunk-{i}");
        servers.push(
            Chunkserver::start(&dir, &name, &data, (&secret_file, &secret), &chunk_opts).await,
        );
    }
    let client = meta.client(MetaClientOptions::default());
    wait_for_up(&client, sizes.len()).await;
    let mount = Mount::start(dir.path(), "mnt", &meta.addrs(), &secret_file, "4+2");

    // 1) 40 MiB (60 MiB of shards): more than the small server holds, less than the rest.
    let mut stored = Vec::new();
    for i in 0..10u64 {
        let data = noise(4 * MIB as usize, i);
        write_file(&mount.join(format!("a{i}")), &data).unwrap();
        stored.push((format!("a{i}"), data));
    }
    // 2) Fill everything: the writer must get ENOSPC.
    let mut err = None;
    for i in 0..40u64 {
        let data = noise(4 * MIB as usize, 100 + i);
        match write_file(&mount.join(format!("b{i}")), &data) {
            Ok(()) => stored.push((format!("b{i}"), data)),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("writing past every disk's size must fail");
    assert_eq!(err.raw_os_error(), Some(28), "expected ENOSPC, got {err}");
    eprintln!("ENOSPC after {} files of 4 MiB", stored.len());
    // 3) Nothing stored before is harmed.
    drop_caches();
    for (name, data) in &stored {
        assert!(
            std::fs::read(mount.join(name)).unwrap() == *data,
            "{name} differs"
        );
    }
    // 4) Free space, and writes succeed again.
    for (name, _) in stored.iter().filter(|(n, _)| n.starts_with('a')) {
        std::fs::remove_file(mount.join(name)).unwrap();
    }
    let data = noise(4 * MIB as usize, 999);
    let path = mount.join("after");
    wait_for(
        "space to come back",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || write_file(&path, &data).ok(),
    )
    .await;
    drop_caches();
    assert!(std::fs::read(&path).unwrap() == data);
    drop(mount);
    drop(servers);
    drop(disks);
}

async fn wait_for_up(client: &tessera_client::MetaClient, n: usize) {
    for _ in 0..400 {
        let up = client
            .list_chunkservers()
            .await
            .map(|l| l.iter().filter(|s| s.state == ChunkserverState::Up).count())
            .unwrap_or(0);
        if up >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chunkservers did not register");
}
