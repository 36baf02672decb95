//! A `tessera` child process owned by a test.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tessera_proto::system::Ping;
use tessera_rpc::{Client, Secret};

use crate::bin::tessera_bin;

/// Lines of the log printed when a test fails.
const TAIL_LINES: usize = 60;

/// A running `tessera ...` whose stdout and stderr go to `<dir>/<name>.log`.
///
/// On drop it is SIGKILLed and reaped, and if the thread is panicking (the test failed) the
/// tail of its log is printed first, so the failure shows what the process was doing.
#[derive(Debug)]
pub struct TesseraProcess {
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    log: PathBuf,
    child: Option<Child>,
}

impl TesseraProcess {
    /// Starts `tessera <args>`. Appends to the log, so restarts under one name keep history.
    pub fn spawn<I, S>(name: &str, log_dir: &Path, args: I) -> TesseraProcess
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::spawn_env(name, log_dir, args, &[])
    }

    /// As [`Self::spawn`], with extra environment variables (e.g. `TESSERA_*` fallbacks).
    pub fn spawn_env<I, S>(
        name: &str,
        log_dir: &Path,
        args: I,
        env: &[(&str, &str)],
    ) -> TesseraProcess
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut p = TesseraProcess {
            name: name.to_string(),
            args: args.into_iter().map(Into::into).collect(),
            env: env
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let _ = writeln!(log, "=== tessera {}", show(&self.args));
        let err = log.try_clone().unwrap_or_else(|e| panic!("dup log: {e}"));
        let mut cmd = Command::new(tessera_bin());
        // TLS first, so a test's own environment can override it.
        cmd.args(&self.args)
            .envs(crate::tls::env())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        // Unless the runner set RUST_LOG, every process logs with the binary's own default
        // filter (info, with the Raft library's chatter from warn up), whatever the test
        // asked for: the logs of one run read alike.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env_remove("RUST_LOG");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", tessera_bin().display()));
        self.child = Some(child);
    }

    /// Starts the process again with the same arguments (after [`Self::kill9`] or an exit).
    pub fn restart(&mut self) {
        self.start();
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until the process answers a ping on `addr` (so it is listening and knows the
    /// cluster secret). Panics with the log tail if it exits first or `timeout` passes.
    pub async fn wait_ready(&mut self, addr: &str, secret: &Secret, timeout: Duration) {
        let client = Client::new(addr, secret.clone(), crate::tls::rpc_config());
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "{} exited with {status} before answering on {addr}; log:\n{}",
                    self.name,
                    self.log_tail(TAIL_LINES)
                );
            }
            let last = match client
                .call_with::<Ping>(&(), bytes::Bytes::new(), Duration::from_millis(500))
                .await
            {
                Ok(_) => return,
                Err(e) => e,
            };
            if started.elapsed() > timeout {
                panic!(
                    "{} did not answer on {addr} within {timeout:?} (last error: {last}); log:\n{}",
                    self.name,
                    self.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the process and reaps it. A no-op if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.note("killed with SIGKILL");
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit; returns its status. Panics (after
    /// a SIGKILL) if the process does not stop in time.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().expect("terminate: process is not running");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a child pid is positive");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its status. Panics
    /// (after a SIGKILL) if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status() {
                self.child = None;
                return status;
            }
            if started.elapsed() > timeout {
                self.kill9();
                panic!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_tail(TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status if the process has exited by itself (it is then reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.try_exit_status()?;
        self.child = None;
        Some(status)
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    fn note(&self, what: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(f, "=== harness: {what}");
        }
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for TesseraProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- last lines of {} ({}) -----\n{}\n-----",
                self.name,
                self.log.display(),
                self.log_tail(TAIL_LINES)
            );
        }
        self.kill9();
    }
}

fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a fresh cluster secret to `dir/secret` and returns its path and the secret.
pub fn write_secret(dir: &Path) -> (PathBuf, Secret) {
    let path = dir.join("secret");
    let secret = Secret::generate_file(&path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    (path, secret)
}
