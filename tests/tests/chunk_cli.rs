//! The `tessera chunk` command line: every flag documented with its default, and the
//! `TESSERA_META` / `TESSERA_SECRET_FILE` environment fallbacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tessera_tests::process::write_secret;
use tessera_tests::{FakeMeta, START_TIMEOUT, TempDir, TesseraProcess, free_port, tessera_command};

#[test]
fn help_documents_every_flag_and_its_default() {
    let out = tessera_command()
        .args(["chunk", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--advertise",
        "--data",
        "--meta",
        "--secret-file",
        "--capacity",
        "--scrub-rate",
        "--scrub-interval-ms",
        "--heartbeat-ms",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for text in [
        "env: TESSERA_META",
        "env: TESSERA_SECRET_FILE",
        "[default: 32M]",
        "[default: 86400000]",
        "[default: 1000]",
        "[default: no limit",
        "[default: the --listen address",
    ] {
        assert!(help.contains(text), "{text:?} missing from:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_and_secret_come_from_the_environment() {
    let dir = TempDir::new("chunk-env");
    let (path, secret) = write_secret(dir.path());
    let meta = FakeMeta::start(&secret).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data");
    let mut p = TesseraProcess::spawn_env(
        "chunk",
        dir.path(),
        ["chunk", "--listen", &addr, "--data", data.to_str().unwrap()],
        &[
            ("TESSERA_META", &meta.addr()),
            ("TESSERA_SECRET_FILE", path.to_str().unwrap()),
        ],
    );
    p.wait_ready(&addr, &secret, START_TIMEOUT).await;
    let reg = meta.wait_registrations(Duration::from_secs(15), 1).await;
    assert_eq!(reg[0].addr, addr);
}
