//! `scripts/rolling-restart.sh` (issue 15, point 3): every metaserver and chunkserver of a
//! dev cluster restarted one at a time, then the mount handed to a new serving process,
//! while three writers keep working through the mount:
//! fio jobs that write a file with checksummed blocks (fsync every 4 MiB) and verify it,
//! one after another; a process writing and re-reading a large file in 1 MiB blocks with
//! fsync; one making, checking and removing small files. None may see an error, and
//! everything written reads back after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tessera_tests::bin::workspace_root;
use tessera_tests::fault::noise;
use tessera_tests::{TempDir, tessera_bin};

fn script(name: &str, args: &[&str]) -> std::process::Output {
    Command::new(workspace_root().join("scripts").join(name))
        .args(args)
        .env("TESSERA_BIN", tessera_bin())
        .output()
        .unwrap()
}

/// Runs `down` even if the test fails half-way.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = script("dev-cluster.sh", &["down", &self.0.display().to_string()]);
    }
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Blocks of the large file: writing goes round it, so the run's disk use stays bounded.
const BLOCKS: u64 = 128;

/// Writes block after block of a large file (fsync after each), re-reading each, round
/// and round, until `stop`. Returns the blocks written; an error ends the run with it.
fn large_writer(path: PathBuf, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open: {e}"))?;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let block = noise(1 << 20, 7_000 + n);
        f.seek(SeekFrom::Start((n % BLOCKS) << 20))
            .map_err(|e| format!("seek: {e}"))?;
        f.write_all(&block)
            .map_err(|e| format!("write block {n}: {e}"))?;
        f.sync_all().map_err(|e| format!("fsync block {n}: {e}"))?;
        let mut back = vec![0u8; block.len()];
        f.seek(SeekFrom::Start((n % BLOCKS) << 20))
            .map_err(|e| format!("seek: {e}"))?;
        f.read_exact(&mut back)
            .map_err(|e| format!("read block {n}: {e}"))?;
        if back != block {
            return Err(format!("block {n} read back changed"));
        }
        n += 1;
    }
    Ok(n)
}

/// One fio job on `file` in `dir`: 16 MiB in 256 KiB blocks that carry a CRC32C header,
/// fsynced every 4 MiB, then read back and verified (fio fails on the first bad block); with
/// `verify_only`, only the reading and verifying.
fn fio_job(dir: &Path, file: &str, verify_only: bool) -> Result<(), String> {
    let out = Command::new("fio")
        .args([
            "--name=rolling",
            &format!("--directory={}", dir.display()),
            &format!("--filename={file}"),
            "--rw=write",
            "--bs=256k",
            "--size=16M",
            "--fsync=16",
            "--ioengine=psync",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            &format!("--verify_only={}", u8::from(verify_only)),
        ])
        .output()
        .map_err(|e| format!("run fio (apt-get install fio): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Runs fio jobs one after another until `stop`, on four files in turn. Returns the jobs
/// run; an error ends the run with it.
fn fio_rounds(dir: PathBuf, stop: Arc<AtomicBool>) -> Result<u64, String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
    let mut jobs = 0u64;
    while !stop.load(Ordering::SeqCst) {
        fio_job(&dir, &fio_file(jobs), false).map_err(|e| format!("fio job {jobs}: {e}"))?;
        jobs += 1;
    }
    Ok(jobs)
}

fn fio_file(job: u64) -> String {
    format!("job{}.dat", job % 4)
}

/// Makes small files (create, write, close, read back), removing every other one, until
/// `stop`. Returns the names kept.
fn small_files(dir: PathBuf, stop: Arc<AtomicBool>) -> Result<Vec<(PathBuf, u64)>, String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir: {e}"))?;
    let mut kept = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let path = dir.join(format!("f{n}"));
        let data = noise(1_000 + (n as usize % 7) * 3_000, n);
        std::fs::write(&path, &data).map_err(|e| format!("write {}: {e}", path.display()))?;
        let back = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        if back != data {
            return Err(format!("{} read back changed", path.display()));
        }
        if n % 2 == 1 {
            std::fs::remove_file(&path).map_err(|e| format!("unlink {}: {e}", path.display()))?;
        } else {
            kept.push((path, n));
        }
        n += 1;
    }
    Ok(kept)
}

#[test]
fn every_server_restarts_in_turn_under_running_writers() {
    let dir = TempDir::new("rolling");
    let d = dir.path().display().to_string();
    let _down = Down(dir.path());
    let out = script("dev-cluster.sh", &["up", &d]);
    assert!(out.status.success(), "up failed: {}", text(&out));
    let mnt = dir.join("mnt");

    let stop = Arc::new(AtomicBool::new(false));
    let large = {
        let (p, s) = (mnt.join("large"), stop.clone());
        std::thread::spawn(move || large_writer(p, s))
    };
    let small = {
        let (p, s) = (mnt.join("small"), stop.clone());
        std::thread::spawn(move || small_files(p, s))
    };
    let fio = {
        let (p, s) = (mnt.join("fio"), stop.clone());
        std::thread::spawn(move || fio_rounds(p, s))
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = script("rolling-restart.sh", &[&d]);
    let said = text(&out);
    eprintln!("{said}");
    // Keep writing a little after the last restart, then stop.
    std::thread::sleep(std::time::Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let blocks = large.join().unwrap();
    let kept = small.join().unwrap();
    let fio_jobs = fio.join().unwrap();
    assert!(out.status.success(), "rolling restart failed: {said}");
    assert!(
        said.contains("metaservers, 6 chunkservers and the mount's serving process restarted"),
        "{said}"
    );
    let blocks = blocks.unwrap_or_else(|e| panic!("the large-file writer saw an error: {e}"));
    let kept = kept.unwrap_or_else(|e| panic!("the small-file writer saw an error: {e}"));
    let fio_jobs = fio_jobs.unwrap_or_else(|e| panic!("fio saw an error: {e}"));
    eprintln!(
        "{blocks} blocks of 1 MiB, {} small files and {fio_jobs} verified fio jobs of 16 MiB written meanwhile",
        kept.len()
    );
    assert!(blocks > 0 && !kept.is_empty() && fio_jobs > 0);

    // Everything reads back, from a fresh page cache.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let mut f = std::fs::File::open(mnt.join("large")).unwrap();
    for at in 0..BLOCKS.min(blocks) {
        // The last write that went there.
        let n = (blocks - 1 - at) / BLOCKS * BLOCKS + at;
        let mut back = vec![0u8; 1 << 20];
        f.read_exact(&mut back).unwrap();
        assert!(
            back == noise(1 << 20, 7_000 + n),
            "block {at} (write {n}) changed"
        );
    }
    // The files of the last four fio jobs verify again.
    for job in fio_jobs.saturating_sub(4)..fio_jobs {
        fio_job(&mnt.join("fio"), &fio_file(job), true)
            .unwrap_or_else(|e| panic!("fio job {job}'s file no longer verifies: {e}"));
    }
    for (path, n) in kept {
        let data = noise(1_000 + (n as usize % 7) * 3_000, n);
        assert!(
            std::fs::read(&path).unwrap() == data,
            "{} changed",
            path.display()
        );
    }
}
