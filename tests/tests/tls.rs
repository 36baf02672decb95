//! A cluster over TLS: Raft, heartbeats, shard traffic and mounts work with mutual TLS, and
//! a client without the cluster's CA (another CA, or no TLS at all) is refused with a
//! message that says so, in its own output and in the server's log.
//!
//! Every other mount and fault test runs over TLS too with `TESSERA_TLS=1` (tests/src/tls.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tessera_tests::fault::noise;
use tessera_tests::mount::DevCluster;
use tessera_tests::tessera_bin;
use tessera_tests::tls::{cert_file, force_on};

/// `tessera ARGS` against the cluster with only the flags given: the TLS variables the
/// runner may have set are removed, so what is tested is exactly what `args` say.
fn run(c: &DevCluster, args: &[&str]) -> Output {
    let mut cmd = Command::new(tessera_bin());
    cmd.args(args)
        .env("TESSERA_META", c.meta.addrs().join(","))
        .env("TESSERA_SECRET_FILE", &c.secret_file)
        .env("RUST_LOG", "warn");
    for v in ["TESSERA_TLS_CERT", "TESSERA_TLS_KEY", "TESSERA_TLS_CA"] {
        cmd.env_remove(v);
    }
    cmd.output().expect("run tessera")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(name: &str) -> String {
    cert_file(name).display().to_string()
}

/// The `--tls-*` flags of a node certified by the other, unrelated CA.
fn foreign_flags() -> Vec<String> {
    [
        "--tls-cert",
        "other.pem",
        "--tls-key",
        "other.key",
        "--tls-ca",
        "other-ca.pem",
    ]
    .chunks(2)
    .flat_map(|p| [p[0].to_string(), path(p[1])])
    .collect()
}

/// Waits until the log at `log` contains `what`.
fn wait_log(log: &Path, what: &str) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} never logged {what:?}; it holds:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cluster_serves_mounts_and_refuses_clients_without_its_ca() {
    force_on();
    let c = DevCluster::start("tls", 1).await;

    // Data goes through mutual TLS to all six chunkservers and back.
    let data = noise(9 << 20, 7);
    std::fs::write(c.mount(0).join("f"), &data).unwrap();
    tessera_tests::mount::drop_caches();
    assert_eq!(std::fs::read(c.mount(0).join("f")).unwrap(), data);

    // An admin command with the cluster's certificate works.
    let (code, out) = c.admin(&["status"]);
    assert_eq!(code, 0, "{out}");

    // Another CA: refused, saying the server's certificate is not from its CA.
    let mut args = vec!["status".to_string()];
    args.extend(foreign_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&c, &args);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("TLS handshake"), "{msg}");
    assert!(
        msg.contains("not signed by the CA given with --tls-ca"),
        "{msg}"
    );
    // ...and the metaserver logged why it refused.
    let log = wait_log(c.meta.members[&1].process.log_path(), "refused connection");
    assert!(log.contains("TLS handshake"), "{log}");

    // A mount with another CA does not mount, and says why.
    let mnt = c.dir.join("foreign");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut args = vec!["mount".to_string(), mnt.display().to_string()];
    args.extend(foreign_flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&c, &args);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains("not signed by the CA given with --tls-ca"),
        "{msg}"
    );
    assert!(!tessera_fuse_client::mount::is_mounted(&mnt));

    // No TLS at all: refused, told that the cluster requires TLS.
    let out = run(&c, &["status"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("requires TLS"), "{msg}");
    assert!(msg.contains("--tls-cert"), "{msg}");

    // The right CA but the client's own certificate is foreign: the server refuses it.
    let out = run(
        &c,
        &[
            "status",
            "--tls-cert",
            &path("other.pem"),
            "--tls-key",
            &path("other.key"),
            "--tls-ca",
            &path("ca.pem"),
        ],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("does not trust this node's certificate"),
        "{msg}"
    );

    // A half-given set of flags is refused by the flag parser.
    let out = run(&c, &["status", "--tls-cert", &path("node.pem")]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--tls-key"), "{}", text(&out));

    // The cluster still works after all that.
    assert_eq!(std::fs::read(c.mount(0).join("f")).unwrap(), data);
}
