//! `tessera mount --supervise`: a small process that mounts, keeps the FUSE connection's
//! descriptor and runs the process that serves it as a child, starting a new one when it
//! exits (crash, SIGKILL, or a planned handover asked for with SIGUSR2 or
//! `tessera mount --restart`). The kernel mount lives as long as the supervisor does.
//!
//! Each serving process is this binary again with the mount's own flags (so an upgraded
//! binary takes over at the next handover), a copy of the descriptor and the variables in
//! `handover.rs`. It dies with the supervisor (parent-death signal), and ends by itself
//! when the file system is unmounted; the supervisor then ends too.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

use crate::handover::{self, HANDED_OVER};
use crate::mount::{MountConfig, MountError, check, fuse_options};

/// Longest pause between restarts of a serving process that keeps crashing at once.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A serving process that lived this long is not crash-looping.
const HEALTHY_AFTER: Duration = Duration::from_secs(2);

/// Mounts, then runs `exe child_args` as the serving process until the file system is
/// unmounted (`fusermount3 -u`, `umount`) or the supervisor gets SIGINT/SIGTERM.
pub fn run(
    config: &MountConfig,
    exe: PathBuf,
    child_args: Vec<OsString>,
) -> Result<(), MountError> {
    let mountpoint = check(&config.mountpoint)?;
    let state = handover::state_dir(&mountpoint);
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).map_err(|source| MountError::State {
        path: state.display().to_string(),
        source,
    })?;
    handover::write_atomic(
        &state.join("supervisor.pid"),
        std::process::id().to_string().as_bytes(),
    )
    .map_err(|source| MountError::State {
        path: state.display().to_string(),
        source,
    })?;
    let held = fuser::HeldMount::new(&mountpoint, &fuse_options(config)).map_err(|source| {
        MountError::Mount {
            path: mountpoint.display().to_string(),
            source,
        }
    })?;
    // A descriptor without close-on-exec, so every serving process inherits it.
    let shared: OwnedFd = nix::unistd::dup(held.fd()).map_err(|e| MountError::Mount {
        path: mountpoint.display().to_string(),
        source: e.into(),
    })?;
    tracing::info!("mounted at {} (supervised)", mountpoint.display());
    // One thread: the parent-death signal a child asks for fires when the thread that
    // forked it ends, so that must be the thread that lives as long as the supervisor.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(MountError::Runtime)?;
    let result = rt.block_on(serve(
        &held,
        &shared,
        &state,
        &exe,
        &child_args,
        &mountpoint,
    ));
    drop(shared);
    if held.is_mounted() {
        unmount(held, &mountpoint);
    }
    let _ = std::fs::remove_dir_all(&state);
    tracing::info!("unmounted {}", mountpoint.display());
    result
}

/// Unmounts; a busy mount (files still open) is detached lazily so the supervisor can end.
fn unmount(held: fuser::HeldMount, mountpoint: &Path) {
    if let Err(e) = held.unmount() {
        tracing::warn!("unmount failed ({e}); detaching lazily");
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(mountpoint)
            .status();
    }
}

async fn serve(
    held: &fuser::HeldMount,
    shared: &OwnedFd,
    state: &Path,
    exe: &Path,
    args: &[OsString],
    mountpoint: &Path,
) -> Result<(), MountError> {
    let sig = |k| signal(k).map_err(MountError::Runtime);
    let (mut usr2, mut term, mut int) = (
        sig(SignalKind::user_defined2())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    let mut generation = 0u64;
    let mut backoff = Duration::ZERO;
    let mut stopping = false;
    loop {
        generation += 1;
        let mut child = Command::new(exe)
            .args(args)
            .env(handover::ENV_FD, shared.as_raw_fd().to_string())
            .env(handover::ENV_GENERATION, generation.to_string())
            .env(handover::ENV_STATE, state)
            .env(handover::ENV_SUPERVISOR, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| MountError::Child(e.to_string()))?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(generation, pid, "serving process started");
        let started = Instant::now();
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = usr2.recv() => {
                    tracing::info!(generation, pid, "planned handover: stopping the serving process");
                    signal_child(pid, nix::sys::signal::Signal::SIGUSR2);
                }
                _ = term.recv() => stopping = true,
                _ = int.recv() => stopping = true,
            }
            if stopping {
                // The serving process sees the connection end (ENODEV) and exits.
                tracing::info!("signal received: unmounting {}", mountpoint.display());
                let mp = mountpoint.to_path_buf();
                let _ = tokio::task::spawn_blocking(move || {
                    let ok = std::process::Command::new("fusermount3")
                        .arg("-u")
                        .arg(&mp)
                        .status()
                        .is_ok_and(|s| s.success());
                    if !ok {
                        let _ = std::process::Command::new("fusermount3")
                            .arg("-uz")
                            .arg(&mp)
                            .status();
                    }
                })
                .await;
                let s = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
                if s.is_err() {
                    signal_child(pid, nix::sys::signal::Signal::SIGKILL);
                }
                return Ok(());
            }
        };
        if !held.is_mounted() {
            tracing::info!("{} was unmounted", mountpoint.display());
            return Ok(());
        }
        if handover::serving(state).is_none() {
            // It never served (no cluster, a bad flag): starting it again would only leave
            // every access to the mount waiting; unmounting says so at once.
            return Err(MountError::Child(format!(
                "the serving process exited ({status:?}) before serving; see its log"
            )));
        }
        match status {
            Ok(s) if s.code() == Some(HANDED_OVER) => {
                tracing::info!(generation, "serving process handed over");
                backoff = Duration::ZERO;
            }
            other => {
                tracing::error!(
                    generation,
                    pid,
                    "serving process ended ({other:?}); starting another"
                );
                backoff = if started.elapsed() > HEALTHY_AFTER {
                    Duration::ZERO
                } else {
                    (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
                };
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

fn signal_child(pid: u32, s: nix::sys::signal::Signal) {
    if pid != 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s);
    }
}
