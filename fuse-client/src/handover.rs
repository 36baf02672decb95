//! What one serving process of a supervised mount (`supervise.rs`) leaves for the next:
//! a small state directory per mount point, and the environment a supervisor starts each
//! serving process with.
//!
//! The state directory holds `supervisor.pid` (for `tessera mount --restart`), `init`
//! (the INIT request the first serving process answered, replayed by each successor),
//! `session` (the metadata session every serving process adopts) and `serving` (the
//! generation serving now, written once it reads requests).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_client::meta::{MetaClient, MetaClientError};

use crate::mount::MountError;

/// Environment variables a supervisor gives each serving process.
pub const ENV_FD: &str = "TESSERA_SUPERVISED_FD";
pub const ENV_GENERATION: &str = "TESSERA_SUPERVISED_GENERATION";
pub const ENV_STATE: &str = "TESSERA_SUPERVISED_STATE";
pub const ENV_SUPERVISOR: &str = "TESSERA_SUPERVISOR_PID";

/// Exit status of a serving process that stopped for a planned handover.
pub const HANDED_OVER: i32 = 75;

/// Where the state of the mount at `mountpoint` (canonical) lives: under
/// `$TESSERA_RUN_DIR` (default `/run/tessera`), one directory per mount point.
pub fn state_dir(mountpoint: &Path) -> PathBuf {
    let base = std::env::var_os("TESSERA_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/tessera"));
    let name: String = mountpoint
        .to_string_lossy()
        .chars()
        .map(|c| if c == '/' { '%' } else { c })
        .collect();
    base.join("mounts").join(name)
}

/// A serving process's view of its supervisor (from the environment).
#[derive(Debug, Clone)]
pub struct Supervised {
    pub fd: i32,
    /// 1 for the first serving process, then one more per restart.
    pub generation: u64,
    pub state: PathBuf,
    pub supervisor: i32,
}

impl Supervised {
    /// `Some` when this process was started by a supervisor.
    pub fn from_env() -> Option<Supervised> {
        let var = |k| std::env::var(k).ok();
        Some(Supervised {
            fd: var(ENV_FD)?.parse().ok()?,
            generation: var(ENV_GENERATION)?.parse().ok()?,
            state: PathBuf::from(var(ENV_STATE)?),
            supervisor: var(ENV_SUPERVISOR)?.parse().ok()?,
        })
    }

    /// The saved INIT request, if an earlier serving process answered it.
    pub fn init_request(&self) -> Option<Vec<u8>> {
        std::fs::read(self.state.join("init")).ok()
    }

    pub fn save_init_request(&self, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(&self.state.join("init"), bytes)
    }

    /// The metadata session an earlier serving process opened.
    pub fn session(&self) -> Option<u64> {
        read_u64(&self.state.join("session"))
    }

    pub fn save_session(&self, id: u64) -> std::io::Result<()> {
        write_atomic(&self.state.join("session"), id.to_string().as_bytes())
    }

    /// Says that this generation reads requests now.
    pub fn save_serving(&self) -> std::io::Result<()> {
        write_atomic(
            &self.state.join("serving"),
            format!("{} {}", self.generation, std::process::id()).as_bytes(),
        )
    }
}

impl Supervised {
    /// Asks for SIGKILL when the supervisor dies (the mount then goes away as an
    /// unsupervised one's does), and exits at once if it is gone already.
    pub fn die_with_supervisor(&self) {
        use nix::sys::signal::Signal;
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            tracing::warn!("cannot ask to die with the supervisor: {e}");
        }
        if nix::unistd::getppid().as_raw() != self.supervisor {
            tracing::error!("the supervisor (pid {}) is gone", self.supervisor);
            std::process::exit(1);
        }
    }

    /// The metadata session to serve with: the one an earlier serving process opened, if it
    /// is still alive (its opens and locks then carry on), else a new one (saved for the
    /// next serving process).
    pub async fn session_for(
        &self,
        meta: &MetaClient,
        client_name: &str,
        lease: Duration,
    ) -> Result<u64, MetaClientError> {
        if let Some(id) = self.session() {
            // Numbers above any the earlier processes used: a reply they left behind is
            // never taken for one of this process's requests.
            let first_seq = self.generation << SEQ_GENERATION_SHIFT;
            if meta.adopt_session(id, first_seq, lease).await? {
                tracing::info!(
                    session = id,
                    generation = self.generation,
                    "adopted the metadata session"
                );
                return Ok(id);
            }
            tracing::warn!(
                session = id,
                "the previous serving process's session expired (its opens and locks are gone); opening a new one"
            );
        }
        let id = meta.open_session(client_name, lease).await?;
        if let Err(e) = self.save_session(id) {
            tracing::warn!("cannot save the session for the next serving process: {e}");
        }
        Ok(id)
    }

    /// A FUSE session on the supervisor's connection: the first serving process answers
    /// INIT and saves it; later ones replay it and ask the kernel to send again what the
    /// process before read and never answered (nothing, after a planned handover).
    pub fn take_over<FS: fuser::Filesystem>(
        &self,
        fs: FS,
        options: &fuser::Config,
    ) -> Result<fuser::Session<FS>, MountError> {
        let fd = fuser::inherited_fuse_fd(self.fd).map_err(MountError::Takeover)?;
        let Some(init) = self.init_request() else {
            let session = fuser::Session::from_fd(fs, fd, options.acl, options.clone())
                .map_err(MountError::Takeover)?;
            if let Some(bytes) = session.init_request() {
                self.save_init_request(bytes)
                    .map_err(MountError::Takeover)?;
            }
            return Ok(session);
        };
        let session = fuser::Session::resume_from_fd(fs, fd, options.acl, options.clone(), &init)
            .map_err(MountError::Takeover)?;
        match session.notifier().resend() {
            Ok(()) => tracing::info!("asked the kernel to resend unanswered requests"),
            Err(e) => tracing::warn!(
                "the kernel refused FUSE_NOTIFY_RESEND ({e}; Linux 6.9 or later has it): requests the previous process read and did not answer wait until aborted"
            ),
        }
        Ok(session)
    }
}

/// Bits of a metadata request number below the serving process's generation.
const SEQ_GENERATION_SHIFT: u32 = 40;

/// The generation serving the mount whose state is in `state`, and its pid.
pub fn serving(state: &Path) -> Option<(u64, u32)> {
    let s = std::fs::read_to_string(state.join("serving")).ok()?;
    let (g, p) = s.trim().split_once(' ')?;
    Some((g.parse().ok()?, p.parse().ok()?))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Written whole or not at all: a crash midway leaves the old file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Waits until `quiet()` holds (every request read was answered, every release sent), at
/// most `limit`. False if it never did.
pub fn wait_quiet(quiet: &dyn Fn() -> bool, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while !quiet() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// `tessera mount --restart MOUNTPOINT`: asks the mount's supervisor for a planned handover
/// and waits until the next serving process reads requests. Returns its generation, pid
/// and how long the handover took.
pub fn request_restart(mountpoint: &Path, limit: Duration) -> Result<(u64, u32, Duration), String> {
    let abs = std::fs::canonicalize(mountpoint)
        .map_err(|e| format!("cannot resolve {}: {e}", mountpoint.display()))?;
    let state = state_dir(&abs);
    let pid = read_u64(&state.join("supervisor.pid")).ok_or_else(|| {
        format!(
            "{} is not a supervised mount (no {}); mount it with `tessera mount --supervise`",
            abs.display(),
            state.join("supervisor.pid").display()
        )
    })?;
    let before = serving(&state).map_or(0, |(g, _)| g);
    let started = Instant::now();
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2).map_err(|e| {
        format!("cannot signal the supervisor (pid {pid}): {e}; is the mount still running?")
    })?;
    while started.elapsed() < limit {
        if let Some((g, p)) = serving(&state)
            && g > before
        {
            return Ok((g, p, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "no new serving process within {} s; check the mount's log",
        limit.as_secs()
    ))
}
