//! Metadata group membership under load (issue #7, point 4): a 4th metaserver is added (as a
//! learner, caught up, promoted), an old one removed, and the leadership moved to the new
//! one, while a writer keeps writing, fsyncing and verifying files through the mount.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera_tests::fault::{noise, wait_for};
use tessera_tests::mount::{DevCluster, drop_caches};
use tessera_tests::ports::free_port;
use tessera_tests::process::TesseraProcess;
use tessera_tests::tessera_command;

fn admin(meta: &[String], secret: &std::path::Path, args: &[&str]) -> String {
    let (ok, text) = run(meta, secret, args);
    assert!(ok, "tessera {args:?} failed: {text}");
    text
}

/// Runs `tessera ARGS` against the cluster: (exit status 0, stdout + stderr).
fn run(meta: &[String], secret: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = tessera_command()
        .args(args)
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_remove_and_transfer_leadership_under_a_workload() {
    let mut c = DevCluster::start("meta-members", 1).await;
    let dir = c.mount(0).path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut done = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("m{i}");
                let data = noise(32 << 10, i);
                let mut f = std::fs::File::create(dir.join(&name))
                    .unwrap_or_else(|e| panic!("create {name}: {e}"));
                f.write_all(&data)
                    .unwrap_or_else(|e| panic!("write {name}: {e}"));
                f.sync_all().unwrap_or_else(|e| panic!("fsync {name}: {e}"));
                done.push((name, data));
                i += 1;
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A 4th member, started alone; the group adds it.
    let addr = format!("127.0.0.1:{}", free_port());
    let data = c.dir.join("meta-4");
    let secret = c.secret_file.clone();
    let mut m4 = TesseraProcess::spawn(
        "meta-4",
        c.dir.path(),
        [
            "meta".to_string(),
            "--id".into(),
            "4".into(),
            "--listen".into(),
            addr.clone(),
            "--data".into(),
            data.display().to_string(),
            "--peers".into(),
            format!("4={addr}"),
            "--secret-file".into(),
            secret.display().to_string(),
            "--election-ms".into(),
            "600".into(),
            "--heartbeat-ms".into(),
            "100".into(),
        ],
    );
    let meta = c.meta.addrs();
    let out = admin(&meta, &secret, &["meta", "add", &format!("4={addr}")]);
    eprintln!("add: {out}");
    assert!(out.contains(&format!("4={addr}")), "{out}");

    // Remove a follower among the old members.
    let all = [1u64, 2, 3];
    let leader = c
        .meta
        .wait_leader(&all, Duration::from_secs(10))
        .await
        .unwrap();
    let old = *all.iter().find(|id| **id != leader).unwrap();
    let out = admin(&meta, &secret, &["meta", "remove", &old.to_string()]);
    eprintln!("remove {old}: {out}");
    assert!(!out.contains(&format!("{old}=")), "{out}");
    c.meta.kill9(old);

    let meta_now: Vec<String> = meta.iter().cloned().chain([addr.clone()]).collect();
    let t = Instant::now();
    admin(&meta_now, &secret, &["meta", "transfer-leader", "4"]);
    eprintln!("transfer to 4 took {:.2} s", t.elapsed().as_secs_f64());
    // Exit 1 (degraded) is fine here: chunkservers are re-registering with the new leader.
    let (_, status) = run(&meta_now, &secret, &["status", "--json"]);
    let report: serde_json::Value =
        serde_json::from_str(&status[..status.rfind('}').map_or(status.len(), |i| i + 1)])
            .unwrap_or_else(|e| panic!("status JSON ({e}): {status}"));
    let roles: Vec<(u64, String)> = report["meta"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    eprintln!("members now: {roles:?}");
    assert!(roles.contains(&(4, "leader".to_string())), "{roles:?}");
    assert!(!roles.iter().any(|(id, _)| *id == old), "{roles:?}");

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let done = writer.join().expect("the writer saw an error");
    drop_caches();
    for (name, data) in &done {
        let got = std::fs::read(c.mount(0).join(name)).unwrap();
        assert!(got == *data, "{name} differs");
    }
    eprintln!("{} files written during the membership changes", done.len());
    // The new leader serves new work too.
    let f = c.mount(0).join("after");
    wait_for(
        "a write after the changes",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || std::fs::write(&f, b"ok").ok(),
    )
    .await;
    drop(c);
    m4.kill9();
}
