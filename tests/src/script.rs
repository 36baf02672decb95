//! Scripts that exercise a mount (Python for system calls the standard library lacks,
//! bash for command-line tools), run with a time limit: a script blocked in the file system
//! is killed and the test fails instead of hanging (its process may stay blocked until the
//! mount is gone: the cluster's drop ends that).

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::tempdir::TempDir;

/// How long a script may run unless the caller says otherwise.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Runs a Python script with arguments (`sys.argv[1:]`); panics with its output unless it
/// exits 0 within [`LIMIT`]. Returns what it printed (stdout and stderr).
pub fn python(script: &str, args: &[&Path]) -> String {
    python_within(script, args, LIMIT)
}

/// [`python`] with another time limit.
pub fn python_within(script: &str, args: &[&Path], limit: Duration) -> String {
    run(
        Command::new("python3").arg("-c").arg(script).args(args),
        limit,
    )
}

/// Runs a bash script with arguments (`$1`...), as [`python`] does.
pub fn bash(script: &str, args: &[&Path]) -> String {
    run(
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("script")
            .args(args),
        LIMIT,
    )
}

fn run(cmd: &mut Command, limit: Duration) -> String {
    let out_dir = TempDir::new("script-out");
    let out_path = out_dir.join("output");
    let out = File::create(&out_path).expect("create output file");
    let mut child = cmd
        .stdout(out.try_clone().expect("clone output file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => assert!(s.success(), "{said}"),
        None => panic!("still running after {limit:?}: {said}"),
    }
    said
}
