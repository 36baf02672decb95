//! Mounting again on a mountpoint whose mount process was SIGKILLed (the kernel answers
//! "transport endpoint is not connected" there) names that cause and the fix, instead of
//! saying the directory does not exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use tessera_tests::mount::DevCluster;
use tessera_tests::tessera_command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_mountpoint_is_named_as_such() {
    let mut c = DevCluster::start_with("dead-mount", 1, 3, "2+1", 1).await;
    let path = c.mount(0).path().to_path_buf();
    let pid = c.mounts[0].process().unwrap().pid().unwrap();
    // SIGKILL the process only: the kernel keeps the dead mount in place.
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = tessera_command()
        .arg("mount")
        .arg(&path)
        .env("TESSERA_META", c.meta.addrs().join(","))
        .env("TESSERA_SECRET_FILE", &c.secret_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Detach the dead mount whatever happened, then reap the killed process.
    let _ = Command::new("fusermount3").arg("-uz").arg(&path).status();
    c.mounts[0].kill9();
    assert!(
        !out.status.success(),
        "mounting on a dead mountpoint succeeded"
    );
    assert!(
        err.contains("process is gone") && err.contains("fusermount3 -uz"),
        "stderr: {err}"
    );
}
