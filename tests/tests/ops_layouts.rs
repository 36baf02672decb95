//! Per-directory layouts (issue 13, point 4): files under `ec=6+3`, `ec=1+2` (three plain
//! copies) and the mount's own `--ec` (2+1 here) coexist in one cluster of 9 chunkservers.
//! A second mount with another `--ec` writing under the 6+3 directory still writes 6+3:
//! the metadata service decides. Each file's stripes have its layout (`tessera info`);
//! for each file in turn, m chunkservers holding its shards are killed, every file reads
//! back bit-exact, m empty servers join, and repair brings every stripe of every file back
//! to its own k+m shards. Bad layouts are refused with EINVAL and a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tessera_tests::MetaOptions;
use tessera_tests::fault::{fsck, info, noise, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};

fn options() -> MetaOptions {
    MetaOptions {
        dead_after_ms: Some(3_000),
        extra_args: vec!["--repair-interval-ms".into(), "500".into()],
        ..MetaOptions::default()
    }
}

fn ok(c: &DevCluster, args: &[&str]) -> String {
    let (code, out) = c.admin(args);
    assert_eq!(code, 0, "tessera {args:?}: {out}");
    out
}

/// One stripe as `tessera info --json` shows it: (k, m, chunkserver address per shard,
/// state per shard).
type Stripe = (u8, u8, Vec<String>, Vec<String>);

/// `tessera info --json PATH`: the recorded layout and the stripes.
fn stripes(c: &DevCluster, path: &Path) -> (Option<String>, Vec<Stripe>) {
    let out = info(&c.meta.addrs(), &c.secret_file, path, true);
    assert!(
        out.status.success(),
        "info {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layout = v["layout"].as_str().map(str::to_string);
    let rows = v["stripes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let shards = s["shards"].as_array().unwrap();
            (
                s["k"].as_u64().unwrap() as u8,
                s["m"].as_u64().unwrap() as u8,
                shards
                    .iter()
                    .map(|x| x["addr"].as_str().unwrap_or("-").to_string())
                    .collect(),
                shards
                    .iter()
                    .map(|x| x["state"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    (layout, rows)
}

struct File {
    path: PathBuf,
    data: Vec<u8>,
    k: u8,
    m: u8,
}

fn write(path: PathBuf, len: usize, seed: u64, k: u8, m: u8) -> File {
    let data = noise(len, seed);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    File { path, data, k, m }
}

fn verify(files: &[File]) {
    drop_caches();
    for f in files {
        let got = std::fs::read(&f.path).unwrap();
        assert!(got == f.data, "{} differs", f.path.display());
    }
}

/// Every stripe of `f` is in its code, with k+m shards on distinct servers that are up and
/// not among `dead`.
fn check_full(c: &DevCluster, f: &File, dead: &BTreeSet<String>) {
    let (_, rows) = stripes(c, &f.path);
    assert!(!rows.is_empty(), "{} has no stripes", f.path.display());
    for (k, m, addrs, states) in rows {
        assert_eq!((k, m), (f.k, f.m), "{}", f.path.display());
        let distinct: BTreeSet<&String> = addrs.iter().collect();
        assert_eq!(distinct.len(), usize::from(k + m), "{addrs:?}");
        assert!(states.iter().all(|s| s == "up"), "{states:?}");
        assert!(
            addrs.iter().all(|a| !dead.contains(a)),
            "a shard on a killed server"
        );
    }
}

/// `m` live chunkservers to kill that hold shards of `target`'s first stripe, such that no
/// stripe of any file loses more than its own m shards.
fn victims(c: &DevCluster, target: &File, files: &[File]) -> Vec<String> {
    let all: Vec<Vec<Stripe>> = files.iter().map(|f| stripes(c, &f.path).1).collect();
    let (_, rows) = stripes(c, &target.path);
    let first: Vec<String> = rows[0].2.clone();
    let m = usize::from(target.m);
    // Every m-subset of the first stripe's servers, in order, until one is safe.
    let n = first.len();
    let mut pick: Vec<usize> = (0..m).collect();
    loop {
        let set: BTreeSet<&String> = pick.iter().map(|&i| &first[i]).collect();
        let safe = all.iter().flatten().all(|(_, sm, addrs, _)| {
            addrs.iter().filter(|a| set.contains(a)).count() <= usize::from(*sm)
        });
        if safe {
            return set.into_iter().cloned().collect();
        }
        // Next combination.
        let mut i = m;
        loop {
            assert!(
                i > 0,
                "no {m} servers of {} can go safely",
                target.path.display()
            );
            i -= 1;
            if pick[i] < n - m + i {
                pick[i] += 1;
                for j in i + 1..m {
                    pick[j] = pick[j - 1] + 1;
                }
                break;
            }
        }
    }
}

fn xattr(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_keep_their_directorys_layout_through_loss_and_repair() {
    let mut c = DevCluster::start_opts("layouts", 3, 9, "2+1", 1, &options()).await;
    // add_mount mounts with --ec 4+2.
    let other = c.add_mount(&[]);
    let root = c.mount(0).path().to_path_buf();
    for d in ["wide", "copies", "plain", "huge"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }

    // Set through the CLI (a mount path), and through setfattr on the mount.
    let wide = root.join("wide");
    let out = ok(
        &c,
        &[
            "layout",
            "set",
            wide.to_str().unwrap(),
            "ec=6+3",
            "stripe=1M",
        ],
    );
    assert!(out.contains("ec=6+3 stripe=1M"), "{out}");
    let copies = root.join("copies");
    let (done, out) = xattr(&[
        "setfattr",
        "-n",
        "tessera.layout",
        "-v",
        "stripe=1M ec=1+2",
        copies.to_str().unwrap(),
    ]);
    assert!(done, "setfattr: {out}");
    let (_, out) = xattr(&[
        "getfattr",
        "--absolute-names",
        "--only-values",
        "-n",
        "tessera.layout",
        copies.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "ec=1+2 stripe=1M", "stored canonical");
    // A path from the file system's root works too (no mount needed).
    let out = ok(&c, &["layout", "get", "/copies"]);
    assert!(out.contains("ec=1+2 stripe=1M (3 copies"), "{out}");
    let out = ok(&c, &["layout", "get", "/plain"]);
    assert!(out.contains("no layout"), "{out}");
    // A subdirectory made after the set copies the layout.
    std::fs::create_dir(wide.join("sub")).unwrap();
    let out = ok(&c, &["info", wide.join("sub").to_str().unwrap()]);
    assert!(
        out.contains("new files    ec=6+3 stripe=1M (6 data + 3 parity"),
        "{out}"
    );

    // Refusals: EINVAL with a message.
    let (code, out) = c.admin(&["layout", "set", "/plain", "ec=0+2"]);
    assert_ne!(code, 0);
    assert!(out.contains("K must be at least 1"), "{out}");
    let (code, out) = c.admin(&["layout", "set", "/plain", "ec=200+100"]);
    assert_ne!(code, 0);
    assert!(out.contains("more than 255"), "{out}");
    let (code, out) = c.admin(&["layout", "set", "/plain", "ec=4+2", "stripe=1G"]);
    assert_ne!(code, 0);
    assert!(out.contains("not a byte count"), "{out}");
    let plain = root.join("plain");
    let (done, out) = xattr(&[
        "setfattr",
        "-n",
        "tessera.layout",
        "-v",
        "ec=6",
        plain.to_str().unwrap(),
    ]);
    assert!(!done && out.contains("Invalid argument"), "{out}");
    let out = ok(&c, &["layout", "get", "/plain"]);
    assert!(
        out.contains("no layout"),
        "nothing stored by a refusal: {out}"
    );

    // More shards than servers: the placement's error, the write fails (EIO).
    ok(&c, &["layout", "set", "/huge", "ec=10+2"]);
    let mut f = std::fs::File::create(root.join("huge/f")).unwrap();
    f.write_all(&noise(100_000, 1)).unwrap();
    assert!(f.sync_all().is_err(), "12 shards on 9 servers");
    drop(f);
    let log = c.mount(0).process().unwrap().log();
    // The leader's placement refusal names the cause (after the client's 30 s of retries,
    // since servers may come back).
    assert!(
        log.contains("a stripe needs 12, at least 11"),
        "mount log lacks the cause"
    );

    let mut files = vec![
        write(wide.join("f"), 3 << 20, 10, 6, 3),
        write(copies.join("f"), (1 << 20) + 300_000, 11, 1, 2),
        write(plain.join("f"), 1_500_000, 12, 2, 1),
        write(wide.join("sub/g"), 700_000, 13, 6, 3),
    ];
    // The other mount (--ec 4+2) writes the directory's code, not its own.
    files.push(write(
        c.mount(other).join("wide/from-other"),
        2 << 20,
        14,
        6,
        3,
    ));
    files.push(write(
        c.mount(other).join("plain/from-other"),
        500_000,
        15,
        4,
        2,
    ));
    let mut dead = BTreeSet::new();
    for f in &files {
        check_full(&c, f, &dead);
    }
    let (recorded, _) = stripes(&c, &files[0].path);
    assert_eq!(recorded.as_deref(), Some("ec=6+3 stripe=1M"));
    let (recorded, _) = stripes(&c, &files[2].path);
    assert_eq!(recorded, None);
    let text = ok(&c, &["info", files[1].path.to_str().unwrap()]);
    assert!(text.contains("created with ec=1+2 stripe=1M"), "{text}");
    assert!(text.contains("layout       1+2"), "{text}");
    // A file with data keeps its layout.
    let (code, out) = c.admin(&["layout", "set", files[0].path.to_str().unwrap(), "ec=2+2"]);
    assert_ne!(code, 0);
    assert!(out.contains("fixed once it has data"), "{out}");

    // For each code in turn: lose m servers holding its shards, read everything, repair.
    let meta = c.meta.addrs();
    for target in [1, 0, 2] {
        let (k, m) = (files[target].k, files[target].m);
        let gone = victims(&c, &files[target], &files);
        for addr in &gone {
            let i = c.chunks.iter().position(|s| &s.addr == addr).unwrap();
            c.chunks[i].kill9();
            dead.insert(addr.clone());
        }
        let killed = Instant::now();
        verify(&files);
        for _ in 0..gone.len() {
            c.add_chunkserver().await;
        }
        let secret = c.secret_file.clone();
        wait_for(
            &format!(
                "repair after losing {} servers of a {k}+{m} file",
                gone.len()
            ),
            Duration::from_secs(300),
            Duration::from_secs(1),
            || (fsck(&meta, &secret, &[]).0 == 0).then_some(()),
        )
        .await;
        eprintln!(
            "{k}+{m}: {} servers lost, full redundancy after {:.1} s",
            gone.len(),
            killed.elapsed().as_secs_f64()
        );
        for f in &files {
            check_full(&c, f, &dead);
        }
        verify(&files);
    }

    // Unset: new files get the writing mount's code again.
    ok(&c, &["layout", "unset", wide.to_str().unwrap()]);
    let after = write(wide.join("after-unset"), 300_000, 16, 2, 1);
    check_full(&c, &after, &dead);
    let out = ok(&c, &["layout", "get", "/wide/f"]);
    assert!(
        out.contains("ec=6+3 stripe=1M"),
        "a file keeps its layout: {out}"
    );
}
