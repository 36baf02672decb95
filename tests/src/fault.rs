//! Helpers of the fault suite: deterministic file contents, shard-byte accounting on the
//! chunkservers' disks, running `tessera fsck`, and polling with a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::tessera_bin;

/// `len` pseudo-random bytes from `seed` (xorshift): incompressible and distinct per seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every shard file under a chunkserver data directory (`DIR/shards/xx/<id>`).
pub fn shard_files(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(data.join("shards")) else {
        return out;
    };
    for d in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(d.path()) {
            out.extend(files.flatten().map(|f| f.path()));
        }
    }
    out
}

/// Total bytes of shard files in these data directories.
pub fn shard_bytes<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> u64 {
    dirs.into_iter()
        .flat_map(shard_files)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Runs the admin command `tessera ARGS` against the cluster at `meta`; returns its exit
/// code and its output (stdout then stderr).
pub fn admin(meta: &[String], secret_file: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(tessera_bin())
        .args(args)
        .envs(crate::tls::env())
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret_file)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tessera");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `tessera fsck ARGS` against the cluster; returns its exit code and output.
pub fn fsck(meta: &[String], secret_file: &Path, args: &[&str]) -> (i32, String) {
    let all: Vec<&str> = std::iter::once("fsck")
        .chain(args.iter().copied())
        .collect();
    admin(meta, secret_file, &all)
}

/// Runs `tessera info [--json] PATH` against the cluster; returns its output.
pub fn info(meta: &[String], secret_file: &Path, path: &Path, json: bool) -> std::process::Output {
    let mut cmd = Command::new(tessera_bin());
    cmd.arg("info");
    if json {
        cmd.arg("--json");
    }
    cmd.arg(path)
        .envs(crate::tls::env())
        .env("TESSERA_META", meta.join(","))
        .env("TESSERA_SECRET_FILE", secret_file)
        .output()
        .expect("run tessera info")
}

/// Calls `check` every `every` until it returns `Some`, or panics with `what` at `timeout`.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}
