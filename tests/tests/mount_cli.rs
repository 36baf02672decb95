//! `tessera mount` as a command: clear errors for a bad mountpoint, unmount on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tessera_fuse_client::mount::is_mounted;
use tessera_tests::mount::DevCluster;
use tessera_tests::tessera_command;

fn mount_error(c: &DevCluster, mountpoint: &std::path::Path) -> String {
    let out = tessera_command()
        .arg("mount")
        .arg(mountpoint)
        .arg("--meta")
        .arg(c.meta.addrs().join(","))
        .arg("--secret-file")
        .arg(&c.secret_file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_mountpoints_and_sigterm() {
    let mut c = DevCluster::start("mount-cli", 1).await;

    let missing = c.dir.join("nope");
    let err = mount_error(&c, &missing);
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let busy = c.mount(0).path().to_path_buf();
    let err = mount_error(&c, &busy);
    assert!(err.contains("busy"), "{err}");

    // SIGTERM unmounts and the process exits cleanly.
    std::fs::write(c.mount(0).join("f"), b"x").unwrap();
    let m = c.mounts.pop().unwrap();
    let mut process = TakeProcess(m);
    let status = process.terminate();
    assert!(status.success(), "mount exited with {status}");
    assert!(!is_mounted(&busy));
}

/// Keeps the `Mount` (so its Drop still cleans up on failure) while signalling its process.
struct TakeProcess(tessera_tests::mount::Mount);

impl TakeProcess {
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self
            .0
            .process()
            .and_then(|p| p.pid())
            .expect("mount is running");
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let started = std::time::Instant::now();
        while is_mounted(self.0.path()) {
            assert!(started.elapsed() < Duration::from_secs(10), "still mounted");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0.wait_exit(Duration::from_secs(10))
    }
}
