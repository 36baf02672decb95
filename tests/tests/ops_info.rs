//! `tessera info` on a real mount: a 10 MiB file lists every stripe with its k+m shard ids,
//! and each shard is really on the chunkserver the report names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use tessera_proto::ShardId;
use tessera_tests::chunk::shard_file;
use tessera_tests::fault::noise;
use tessera_tests::mount::DevCluster;
use tessera_tests::tessera_command;

const MIB: usize = 1 << 20;

fn info(c: &DevCluster, path: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = tessera_command();
    cmd.arg("info").arg(path);
    if json {
        cmd.arg("--json");
    }
    let out = cmd
        .env("TESSERA_META", c.meta.addrs().join(","))
        .env("TESSERA_SECRET_FILE", &c.secret_file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every shard file under a chunkserver data directory (names are 64 hex digits).
fn shard_files(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            shard_files(&p, out);
        } else if let Some(name) = p.file_name().and_then(|n| n.to_str())
            && name.len() == 64
            && name.parse::<ShardId>().is_ok()
        {
            out.insert(name.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn info_lists_every_stripe_and_where_each_shard_is() {
    let c = DevCluster::start("ops-info", 1).await;
    let m = c.mount(0);
    let data = noise(10 * MIB, 7);
    let path = m.join("big");
    std::fs::write(&path, &data).unwrap();

    let (code, out, err) = info(&c, &path, true);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(r["ino"], std::fs::metadata(&path).unwrap().ino());
    assert_eq!(r["size"], 10 * MIB as u64);
    assert_eq!(r["codes"], serde_json::json!(["4+2"]));
    assert_eq!(r["stripe_size"], 4 * MIB as u64);

    let stripes = r["stripes"].as_array().unwrap();
    // 10 MiB in stripes of at most 4 MiB: at least three.
    assert!(stripes.len() >= 3, "{r:#}");
    let data_total: u64 = stripes
        .iter()
        .map(|s| s["data_len"].as_u64().unwrap())
        .sum();
    assert!(data_total >= 10 * MIB as u64, "{r:#}");
    // Every slice points at a listed stripe, and the slices cover the file.
    let ids: BTreeSet<&str> = stripes.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let mut covered = 0;
    for chunk in r["chunks"].as_array().unwrap() {
        for s in chunk["slices"].as_array().unwrap() {
            assert!(ids.contains(s["stripe"].as_str().unwrap()), "{s}");
            covered += s["len"].as_u64().unwrap();
        }
    }
    assert_eq!(covered, 10 * MIB as u64);

    // Stripes come in file order: the first slice's stripe first.
    let first_chunk = &r["chunks"][0]["slices"];
    assert_eq!(stripes[0]["id"], first_chunk[0]["stripe"], "{r:#}");
    assert_eq!(stripes[1]["id"], first_chunk[1]["stripe"], "{r:#}");

    let mut listed = BTreeSet::new();
    for s in stripes {
        let shards = s["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 6, "4+2 means six shards: {s:#}");
        let servers: BTreeSet<&str> = shards
            .iter()
            .map(|sh| sh["server"].as_str().unwrap())
            .collect();
        assert_eq!(servers.len(), 6, "each shard on its own server: {s:#}");
        for (i, sh) in shards.iter().enumerate() {
            assert_eq!(sh["index"], i);
            assert_eq!(sh["parity"], i >= 4);
            assert_eq!(sh["state"], "up");
            let id: ShardId = sh["shard"].as_str().unwrap().parse().unwrap();
            let addr = sh["addr"].as_str().unwrap();
            let server = c
                .chunks
                .iter()
                .find(|cs| cs.addr == addr)
                .unwrap_or_else(|| panic!("{addr} is not one of the chunkservers"));
            assert!(
                shard_file(&server.data, &id).is_file(),
                "shard {id} is not in {}",
                server.data.display()
            );
            listed.insert(id.to_string());
        }
    }
    // And nothing stored that the report does not list (this is the only file).
    let mut stored = BTreeSet::new();
    for cs in &c.chunks {
        shard_files(&cs.data, &mut stored);
    }
    assert_eq!(stored, listed);

    // The text form names every shard too.
    let (code, text, err) = info(&c, &path, false);
    assert_eq!(code, 0, "{err}");
    for id in &listed {
        assert!(text.contains(id.as_str()), "{id} missing from:\n{text}");
    }
    assert!(text.contains("4+2"), "{text}");

    // A directory shows the layout its new files get (none here: the mount's --ec).
    let (code, text, err) = info(&c, m.path(), false);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("new files    no layout"), "{text}");
    // A path outside any mount is refused with one line.
    let outside = c.dir.join("outside");
    std::fs::write(&outside, b"x").unwrap();
    let (code, _, err) = info(&c, &outside, false);
    assert_ne!(code, 0);
    assert!(err.contains("not in a Tessera mount"), "{err}");
}
