//! A supervised mount (`tessera mount --supervise`) survives its serving process: a planned
//! handover (`tessera mount --restart`) under fio loses nothing and fio sees no error; a
//! process holding descriptors across it keeps reading, writing, `fstat`ing and locking
//! through them; after a SIGKILL of the serving process the supervisor starts another,
//! what fio had fsynced is intact, nothing hangs and new I/O works without a remount. The
//! test prints the handover times and the crash gap (kill until a write, fsync and read of
//! a new file succeed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tessera_fuse_client::handover::{serving, state_dir};
use tessera_tests::bin::tessera_bin;
use tessera_tests::mount::DevCluster;

/// Which generation serves `mountpoint` now, and its pid (waits for the first one).
fn serving_now(mountpoint: &Path) -> (u64, u32) {
    let state = state_dir(&std::fs::canonicalize(mountpoint).unwrap());
    let started = Instant::now();
    loop {
        if let Some(s) = serving(&state) {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing serves {}",
            mountpoint.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tessera mount --restart`: planned handover; returns how long it took.
fn restart(mountpoint: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(tessera_bin())
        .args(["mount", "--restart"])
        .arg(mountpoint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restart failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    started.elapsed()
}

/// fio with `args` in `dir`, started in the background.
fn fio(dir: &Path, args: &[&str]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("fio")
        .arg(format!("--directory={}", dir.display()))
        // No verify state files in the working directory.
        .args([
            "--ioengine=psync",
            "--group_reporting",
            "--verify_state_save=0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fio (apt-get install fio)")
}

/// Waits for fio at most `limit` (nothing may hang); its status and output.
fn finish(mut child: Child, limit: Duration) -> (bool, String) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "fio still running after {} s (a request hangs?):\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes and reads with verification (crc32c of every block, read back after writing)
/// while mixed random I/O runs beside it.
const FIO_MIXED: &[&str] = &[
    "--name=verified",
    "--rw=write",
    "--bs=128k",
    "--size=48m",
    "--verify=crc32c",
    "--do_verify=1",
    "--fsync=16",
    "--name=mixed",
    "--rw=randrw",
    "--bs=64k",
    "--size=16m",
    "--time_based",
    "--runtime=10",
];

/// Holds descriptors (a file with a POSIX lock, a directory) across the handover, then
/// uses them: read, write, fstat, lock (held throughout: another process cannot take it),
/// unlock, relock, fsync, listing, close (which frees the lock).
const HOLDER: &str = r#"
import fcntl, os, sys
d = sys.argv[1]
path = os.path.join(d, "held")
f = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"A" * 4096)
os.fsync(f)
fcntl.lockf(f, fcntl.LOCK_EX, 100, 0)
dfd = os.open(d, os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
def other_can_lock():
    pid = os.fork()
    if pid == 0:
        g = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0)
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
assert not other_can_lock(), "the lock was lost in the handover"
os.pwrite(f, b"B" * 4096, 4096)
assert os.pread(f, 8192, 0) == b"A" * 4096 + b"B" * 4096, "read back differs"
assert os.fstat(f).st_size == 8192, "fstat size"
fcntl.lockf(f, fcntl.LOCK_UN, 100, 0)
assert other_can_lock(), "unlock did not free the lock"
fcntl.lockf(f, fcntl.LOCK_EX, 100, 0)
assert not other_can_lock(), "relock"
os.fsync(f)
assert "held" in os.listdir(dfd), "listing through the held directory descriptor"
os.close(f)
assert other_can_lock(), "close did not free the lock"
os.close(dfd)
print("ok", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_planned_handover_under_fio_loses_nothing_and_keeps_open_descriptors() {
    let mut c = DevCluster::start("handover-planned", 0).await;
    let i = c.add_mount(&["--supervise"]);
    let mp = c.mount(i).path().to_path_buf();
    let (g1, _) = serving_now(&mp);
    assert_eq!(g1, 1);

    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(HOLDER)
        .arg(&mp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    let job = fio(&mp.join("fio"), FIO_MIXED);
    let mut took = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        took.push(restart(&mp));
    }
    let (ok, out) = finish(job, Duration::from_secs(300));
    assert!(ok, "fio failed across planned handovers:\n{out}");
    assert!(out.contains("err= 0"), "fio reported errors:\n{out}");
    println!("planned handovers under fio took {took:?}");

    holder.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    let status = holder.wait().unwrap();
    assert!(
        status.success() && line.trim() == "ok",
        "descriptor holder failed ({status}): {line}"
    );
    let (g, _) = serving_now(&mp);
    assert_eq!(g, 4, "three handovers, four generations");
}

/// Writes a new file, fsyncs and reads it back; true if all worked.
fn probe(mp: &Path, n: u32) -> bool {
    let path = mp.join(format!("probe-{n}"));
    let r = (|| -> std::io::Result<bool> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(b"after the crash")?;
        f.sync_all()?;
        Ok(std::fs::read(&path)? == b"after the crash")
    })();
    r.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_serving_process_is_replaced_and_fsynced_data_survives() {
    let mut c = DevCluster::start("handover-crash", 0).await;
    let i = c.add_mount(&["--supervise"]);
    let mp = c.mount(i).path().to_path_buf();
    let supervisor = c.mount(i).process().and_then(|p| p.pid()).unwrap();

    // Files fio writes and fsyncs (end_fsync) before the crash.
    let durable = mp.join("durable");
    let before = &[
        "--name=durable",
        "--rw=write",
        "--bs=128k",
        "--size=16m",
        "--nrfiles=4",
        "--end_fsync=1",
        "--verify=crc32c",
        "--do_verify=0",
    ];
    let (ok, out) = finish(fio(&durable, before), Duration::from_secs(300));
    assert!(ok, "fio before the crash:\n{out}");

    // fio writing while the serving process is killed: it may see errors, never hang.
    let busy = fio(
        &mp.join("busy"),
        &[
            "--name=busy",
            "--rw=randrw",
            "--bs=64k",
            "--size=32m",
            "--time_based",
            "--runtime=8",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    let (g, pid) = serving_now(&mp);
    let killed = Instant::now();
    let st = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let mut n = 0;
    let gap = loop {
        n += 1;
        if probe(&mp, n) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no I/O 60 s after the crash"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let (g2, pid2) = serving_now(&mp);
    assert!(g2 > g && pid2 != pid, "a new serving process took over");
    println!(
        "crash gap: {} ms until a new file was written, fsynced and read ({n} tries)",
        gap.as_millis()
    );
    let (ok, out) = finish(busy, Duration::from_secs(120));
    println!(
        "fio during the crash {}:\n{}",
        if ok { "succeeded" } else { "failed" },
        out.lines()
            .filter(|l| l.contains("err="))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // What fio had fsynced is intact; the mount takes new verified I/O, same supervisor.
    let after = &[
        "--name=durable",
        "--rw=write",
        "--bs=128k",
        "--size=16m",
        "--nrfiles=4",
        "--verify=crc32c",
        "--verify_only",
    ];
    let (ok, out) = finish(fio(&durable, after), Duration::from_secs(300));
    assert!(
        ok && out.contains("err= 0"),
        "fsynced files damaged:\n{out}"
    );
    let again = &[
        "--name=again",
        "--rw=write",
        "--bs=128k",
        "--size=16m",
        "--verify=crc32c",
        "--do_verify=1",
    ];
    let (ok, out) = finish(fio(&mp.join("again"), again), Duration::from_secs(300));
    assert!(
        ok && out.contains("err= 0"),
        "new I/O after the crash:\n{out}"
    );
    assert_eq!(c.mount(i).process().and_then(|p| p.pid()), Some(supervisor));
    assert!(tessera_fuse_client::mount::is_mounted(
        &std::fs::canonicalize(&mp).unwrap()
    ));
    // The supervisor's death takes the serving process with it (no orphan on a connection
    // nobody restarts); the dead mount is detached when the cluster is dropped.
    let (_, pid) = serving_now(&mp);
    c.mounts[i].process_mut().unwrap().kill9();
    let started = Instant::now();
    // Gone, or a zombie nobody reaped yet.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
            st.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
    };
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serving process outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One process holds a lock; another waits for it (its F_SETLKW is in the serving process,
/// read and not answered) while the serving process is killed. The kernel resends the wait
/// to the new process (FUSE_NOTIFY_RESEND), so once the holder unlocks the waiter gets the
/// lock: a request in flight at the crash is answered, not left hanging.
const WAITER: &str = r#"
import fcntl, os, sys, time
path = sys.argv[1]
holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(holder, fcntl.LOCK_EX)
pid = os.fork()
if pid == 0:
    f = os.open(path, os.O_RDWR)
    fcntl.lockf(f, fcntl.LOCK_EX)
    os._exit(0)
print("waiting", flush=True)
sys.stdin.readline()
fcntl.lockf(holder, fcntl.LOCK_UN)
deadline = time.time() + 20
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("granted" if os.waitstatus_to_exitcode(status) == 0 else "failed", flush=True)
        sys.exit(0)
    time.sleep(0.05)
os.kill(pid, 9)
print("still waiting 20 s after the unlock", flush=True)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_at_the_crash_is_answered_by_the_new_process() {
    let mut c = DevCluster::start("handover-resend", 0).await;
    let i = c.add_mount(&["--supervise"]);
    let mp = c.mount(i).path().to_path_buf();
    let mut script = Command::new("python3")
        .arg("-c")
        .arg(WAITER)
        .arg(mp.join("contended"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(script.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "waiting");
    // Let the waiter's request reach the serving process.
    std::thread::sleep(Duration::from_secs(1));
    let (g, pid) = serving_now(&mp);
    let st = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let started = Instant::now();
    while serving_now(&mp).0 == g {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no new serving process"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    script.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    script.wait().unwrap();
    assert_eq!(
        line.trim(),
        "granted",
        "the waiter's lock request after the crash"
    );
}
