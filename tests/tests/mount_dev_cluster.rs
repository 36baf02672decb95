//! `scripts/dev-cluster.sh up|down`: the README's run command, on a small cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use tessera_fuse_client::mount::is_mounted;
use tessera_tests::bin::workspace_root;
use tessera_tests::{TempDir, tessera_bin};

fn script(cmd: &str, dir: &Path) -> std::process::Output {
    Command::new(workspace_root().join("scripts/dev-cluster.sh"))
        .arg(cmd)
        .arg(dir)
        .env("META", "1")
        .env("CHUNKS", "3")
        .env("EC", "2+1")
        .env("TESSERA_BIN", tessera_bin())
        .output()
        .unwrap()
}

/// Runs `down` even if the test fails half-way.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = script("down", self.0);
    }
}

#[test]
fn up_mounts_and_down_stops_exactly_its_processes() {
    let dir = TempDir::new("dev-cluster");
    let _down = Down(dir.path());
    let out = script("up", dir.path());
    assert!(
        out.status.success(),
        "up failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let env = std::fs::read_to_string(dir.join("cluster.env")).unwrap();
    for var in ["TESSERA_META=", "TESSERA_SECRET_FILE=", "TESSERA_MOUNT="] {
        assert!(env.contains(var), "{var} missing from cluster.env:\n{env}");
    }
    let mnt = dir.join("mnt");
    assert!(is_mounted(&mnt));
    std::fs::write(mnt.join("hello"), b"world").unwrap();
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"world");

    let mut pids = Vec::new();
    for name in ["meta-1", "chunk-1", "chunk-2", "chunk-3", "mount"] {
        let f = dir.join(format!("pids/{name}.pid"));
        let pid: i32 = std::fs::read_to_string(&f).unwrap().trim().parse().unwrap();
        pids.push(pid);
    }
    let out = script("down", dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(&mnt));
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} still running after down"
        );
    }
}
