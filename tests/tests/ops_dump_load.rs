//! `tessera dump` / `tessera load` on real processes: a cluster with files is dumped, a NEW
//! metadata group is started, the SAME chunkservers (same disks, new addresses) register with
//! it, the image is loaded, a second dump is byte-identical, and every file reads back
//! bit-exact through a new mount.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use tessera_client::MetaClientOptions;
use tessera_proto::meta::ChunkserverState;
use tessera_rpc::Secret;
use tessera_tests::chunk::{ChunkOptions, Chunkserver};
use tessera_tests::fault::noise;
use tessera_tests::mount::{DevCluster, Mount};
use tessera_tests::{MetaCluster, MetaOptions, START_TIMEOUT, tessera_command};

const MIB: usize = 1 << 20;

/// Runs `tessera ARGS` against the cluster at `meta`; returns (exit code, stdout, stderr).
fn tessera(args: &[&str], meta: &[String], secret_file: &Path) -> (i32, String, String) {
    let out = tessera_command()
        .args(args)
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret_file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// BLAKE3 of every regular file under `root`, by relative path.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn dump_then_load_into_a_new_cluster_with_the_same_chunkservers() {
    let c = DevCluster::start("ops-dump", 1).await;
    let m = c.mount(0);
    std::fs::write(m.join("big"), noise(10 * MIB, 1)).unwrap();
    std::fs::write(m.join("small"), b"hello, tessera\n").unwrap();
    std::fs::write(m.join("empty"), b"").unwrap();
    std::fs::create_dir_all(m.join("dir/sub")).unwrap();
    std::fs::write(m.join("dir/sub/mid"), noise(5 * MIB + 123, 2)).unwrap();
    std::fs::set_permissions(m.join("small"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("dir/sub/mid", m.join("link")).unwrap();
    std::fs::hard_link(m.join("small"), m.join("dir/hard")).unwrap();
    let want = hashes(m.path());
    assert_eq!(want.len(), 5, "{want:?}");

    let dir = c.dir.path().to_path_buf();
    let dump1 = dir.join("one.dump");
    let meta_old = c.meta.addrs();
    let (code, out, err) = tessera(
        &["dump", dump1.to_str().unwrap()],
        &meta_old,
        &c.secret_file,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dumped"), "{out}");
    // An existing file is not replaced without --force.
    let (code, _, err) = tessera(
        &["dump", dump1.to_str().unwrap()],
        &meta_old,
        &c.secret_file,
    );
    assert_ne!(code, 0);
    assert!(err.contains("--force"), "{err}");
    let image = std::fs::read(&dump1).unwrap();
    assert!(image.starts_with(b"tessera-dump 1\n"));

    // The old metadata group goes away (mounts first); the chunkservers stay on their disks.
    let DevCluster {
        mounts,
        chunks,
        meta,
        secret_file,
        dir: tmp,
    } = c;
    drop(mounts);
    drop(meta);
    let secret = Secret::load(&secret_file).unwrap();
    let new_dir = dir.join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let meta =
        MetaCluster::start(&new_dir, &secret_file, &secret, 3, &MetaOptions::default()).await;
    let addrs = meta.addrs();
    // Same data directories (so the same chunkserver ids), new addresses, new --meta.
    let datas: Vec<_> = chunks.iter().map(|cs| cs.data.clone()).collect();
    drop(chunks);
    let opts = ChunkOptions {
        meta: addrs.clone(),
        ..ChunkOptions::default()
    };
    let mut servers = Vec::new();
    for (i, data) in datas.iter().enumerate() {
        let name = format!("chunk-new-{}", i + 1);
        servers.push(Chunkserver::start(&tmp, &name, data, (&secret_file, &secret), &opts).await);
    }
    let client = meta.client(MetaClientOptions::default());
    let started = Instant::now();
    loop {
        let up = client
            .list_chunkservers()
            .await
            .map(|l| l.iter().filter(|s| s.state == ChunkserverState::Up).count())
            .unwrap_or(0);
        if up == servers.len() {
            break;
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "chunkservers did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A damaged image is refused and changes nothing.
    let bad = dir.join("bad.dump");
    let mut damaged = image.clone();
    let n = damaged.len();
    damaged[n / 2] ^= 0x40;
    std::fs::write(&bad, &damaged).unwrap();
    let (code, _, err) = tessera(&["load", bad.to_str().unwrap()], &addrs, &secret_file);
    assert_ne!(code, 0);
    assert!(err.contains("not a usable tessera dump"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let (code, out, err) = tessera(&["load", dump1.to_str().unwrap()], &addrs, &secret_file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("loaded"), "{out}");
    // Loading again is refused: the namespace is not empty any more.
    let (code, _, err) = tessera(&["load", dump1.to_str().unwrap()], &addrs, &secret_file);
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // dump -> load -> dump is byte-identical.
    let dump2 = dir.join("two.dump");
    let (code, out, err) = tessera(&["dump", dump2.to_str().unwrap()], &addrs, &secret_file);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        std::fs::read(&dump2).unwrap() == image,
        "the second dump differs from the first"
    );
    // Every member applied the load.
    assert!(
        meta.wait_converged(&[1, 2, 3], Duration::from_secs(10))
            .await
            .is_some()
    );

    // The files read back bit-exact through a mount of the new cluster.
    let mnt = Mount::start(tmp.path(), "mnt-new", &addrs, &secret_file, "4+2");
    assert_eq!(hashes(mnt.path()), want);
    let small = std::fs::metadata(mnt.join("small")).unwrap();
    assert_eq!(small.mode() & 0o7777, 0o600);
    assert_eq!(small.nlink(), 2);
    assert_eq!(
        small.ino(),
        std::fs::metadata(mnt.join("dir/hard")).unwrap().ino()
    );
    assert_eq!(
        std::fs::read_link(mnt.join("link")).unwrap(),
        Path::new("dir/sub/mid")
    );
    // New files work alongside the restored ones.
    std::fs::write(mnt.join("after"), b"new data").unwrap();
    assert_eq!(std::fs::read(mnt.join("after")).unwrap(), b"new data");
    drop(mnt);
    drop(servers);
    drop(meta);
    drop(tmp);
}

/// An image close to the 3 MiB limit goes through Raft to every member, and a larger file
/// is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_near_the_limit_loads_on_every_member() {
    use std::sync::Arc;
    use tessera_proto::fs::{FileKind, ROOT_INO};
    use tessera_proto::meta::Op;

    let dir = tessera_tests::TempDir::new("ops-dump-big");
    let (secret_file, secret) = tessera_tests::process::write_secret(dir.path());
    let old_dir = dir.join("old");
    std::fs::create_dir_all(&old_dir).unwrap();
    let old = MetaCluster::start(&old_dir, &secret_file, &secret, 3, &MetaOptions::default()).await;
    let client = Arc::new(old.client(MetaClientOptions::default()));
    // Files with 200-byte names: about 0.5 KiB of image each, 2.9 MiB in all.
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..785u32 {
                    let name = format!("{t:02}-{i:05}-{}", "n".repeat(190)).into_bytes();
                    let r = client
                        .write(Op::Mknod {
                            parent: ROOT_INO,
                            name,
                            kind: FileKind::Regular,
                            perm: 0o644,
                            uid: t,
                            gid: i,
                            rdev: 0,
                            open: false,
                        })
                        .await
                        .unwrap();
                    assert!(r.is_ok(), "{r:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let dump1 = dir.join("one.dump");
    let (code, out, err) = tessera(
        &["dump", dump1.to_str().unwrap()],
        &old.addrs(),
        &secret_file,
    );
    assert_eq!(code, 0, "{out}{err}");
    let image = std::fs::read(&dump1).unwrap();
    eprintln!("image of {} bytes", image.len());
    assert!(
        image.len() > (5 << 20) / 2 && image.len() as u64 <= tessera_proto::backup::MAX_LOAD_IMAGE,
        "{} bytes",
        image.len()
    );
    drop(client);
    drop(old);

    let new_dir = dir.join("new");
    std::fs::create_dir_all(&new_dir).unwrap();
    let new = MetaCluster::start(&new_dir, &secret_file, &secret, 3, &MetaOptions::default()).await;
    let (code, out, err) = tessera(
        &["load", dump1.to_str().unwrap()],
        &new.addrs(),
        &secret_file,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        new.wait_converged(&[1, 2, 3], Duration::from_secs(20))
            .await
            .is_some(),
        "the members did not all apply the load"
    );
    let dump2 = dir.join("two.dump");
    let (code, out, err) = tessera(
        &["dump", dump2.to_str().unwrap()],
        &new.addrs(),
        &secret_file,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(std::fs::read(&dump2).unwrap() == image);

    // Over the limit: refused locally, in one line naming the limit.
    let big = dir.join("big.dump");
    std::fs::write(&big, vec![0u8; (3 << 20) + 1]).unwrap();
    let (code, _, err) = tessera(&["load", big.to_str().unwrap()], &new.addrs(), &secret_file);
    assert_ne!(code, 0);
    assert!(err.contains("at most 3145728 bytes"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
