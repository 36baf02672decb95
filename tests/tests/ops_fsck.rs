//! `tessera info` and `tessera fsck` together (issue #7, point 2): a shard file listed by
//! `info` for a 10 MiB file is removed from a chunkserver's disk; `fsck --deep` reports
//! exactly that shard, `fsck --repair` rebuilds it, and a deep check is clean again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_tests::chunk::shard_file;
use tessera_tests::fault::{fsck, noise};
use tessera_tests::mount::DevCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_reports_exactly_the_removed_shard_and_repairs_it() {
    let c = DevCluster::start("ops-fsck", 1).await;
    let path = c.mount(0).join("ten");
    std::fs::write(&path, noise(10 << 20, 42)).unwrap();
    let out = tessera_tests::fault::info(&c.meta.addrs(), &c.secret_file, &path, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stripes = info["stripes"].as_array().unwrap();
    assert_eq!(stripes.len(), 3, "10 MiB in 4 MiB stripes");
    let victim = stripes[1]["shards"][2]["shard"]
        .as_str()
        .unwrap()
        .to_string();
    let id = tessera_proto::ShardId(
        (0..32)
            .map(|i| u8::from_str_radix(&victim[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap(),
    );
    let file = c
        .chunks
        .iter()
        .map(|s| shard_file(&s.data, &id))
        .find(|p| p.exists())
        .expect("the listed shard is on a chunkserver's disk");
    std::fs::remove_file(&file).unwrap();

    let meta = c.meta.addrs();
    let (code, out) = fsck(&meta, &c.secret_file, &["--deep"]);
    assert_eq!(code, 1, "{out}");
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("missing") || l.starts_with("corrupt"))
        .collect();
    assert_eq!(problems.len(), 1, "{out}");
    assert!(problems[0].contains(&victim), "{out}");

    let (code, out) = fsck(&meta, &c.secret_file, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(file.exists(), "the shard was rebuilt in place");
    let (code, out) = fsck(&meta, &c.secret_file, &["--deep"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), noise(10 << 20, 42));
}
