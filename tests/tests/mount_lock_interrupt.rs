//! A process blocked in `flock(LOCK_EX)` (or `F_SETLKW`) on a Tessera mount returns `EINTR`
//! when a signal arrives, so its handler runs, as on a local file system. fuser 0.18 does
//! not pass FUSE INTERRUPT on (see `fuse-client/src/fs/signals.rs`); the mount notices the
//! pending signal itself between lock attempts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use tessera_tests::mount::DevCluster;

/// Holds an exclusive lock, forks a child that blocks on the same file with an alarm set
/// for 1 s whose handler raises: the child reports whether the blocked call was cut short.
const SCRIPT: &str = r#"
import fcntl, os, signal, sys, time
path, kind = sys.argv[1], sys.argv[2]
def lock(f):
    if kind == "flock":
        fcntl.flock(f, fcntl.LOCK_EX)
    else:
        fcntl.lockf(f, fcntl.LOCK_EX)
holder = open(path, "w")
lock(holder)
pid = os.fork()
if pid == 0:
    class Alarm(Exception):
        pass
    def on_alarm(signum, frame):
        raise Alarm()
    signal.signal(signal.SIGALRM, on_alarm)
    f = open(path, "r+")
    signal.alarm(1)
    started = time.time()
    try:
        lock(f)
        print("granted while held", flush=True)
        os._exit(2)
    except Alarm:
        print("interrupted after %.2f s" % (time.time() - started), flush=True)
        os._exit(0)
deadline = time.time() + 15
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.05)
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
print("still blocked 15 s after the signal", flush=True)
sys.exit(3)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_lock_wait_returns_eintr_on_a_signal() {
    let c = DevCluster::start_with("lock-intr", 1, 3, "2+1", 1).await;
    for kind in ["flock", "fcntl"] {
        let path = c.mount(0).join(format!("locked-{kind}"));
        let out = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&path)
            .arg(kind)
            .output()
            .expect("run python3");
        let said = String::from_utf8_lossy(&out.stdout);
        eprintln!("{kind}: {said}{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{kind}: {said}");
        assert!(said.contains("interrupted"), "{kind}: {said}");
    }
}
