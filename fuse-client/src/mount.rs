//! `run(config)`: mounts a Tessera file system and serves it until unmounted or signalled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use tessera_proto::meta::Op;
use tessera_rpc::{RpcConfig, Secret};
use tessera_stripe::chunk_client::ReadAudit;
use tessera_stripe::{ChunkClient, ChunkClientConfig};

use crate::fs::{AtimeMode, FsOptions, TesseraFs};
use crate::handover::{Supervised, wait_quiet};
use tessera_client::data::{DataConfig, DataPath};
use tessera_client::meta::{MetaClient, MetaClientOptions};
use tessera_client::ops::Namespace;

/// Default session lease: a crashed mount's opens and locks are released this long after
/// it dies.
pub const DEFAULT_SESSION_LEASE: Duration = Duration::from_secs(30);

/// Everything `tessera mount` needs.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub mountpoint: PathBuf,
    /// Metadata servers (any subset of the group). Joined with commas, they are also the
    /// mount's source in `mount`, `df` and `findmnt`, so two clusters' mounts can be told
    /// apart.
    pub meta: Vec<String>,
    pub secret_file: PathBuf,
    /// Transport settings of every connection (TLS among them).
    pub rpc: RpcConfig,
    pub data: DataConfig,
    pub fs: FsOptions,
    /// How long a file system call keeps trying to reach a metadata leader before it fails
    /// with `EIO`.
    pub meta_timeout: Duration,
    /// Session lease (see [`DEFAULT_SESSION_LEASE`]).
    pub session_lease: Duration,
    /// Serve Prometheus metrics on this address ("HOST:PORT"); `None`: no endpoint.
    pub metrics_addr: Option<String>,
    /// Mount with `dev` (device files act as devices) instead of `nodev`.
    pub devices: bool,
    /// Mount with `suid` (set-ID programs take effect) instead of `nosuid`.
    pub set_id_programs: bool,
    /// Cache directory listings and attributes under capabilities (`--caps`).
    pub caps: bool,
}

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mountpoint {0} does not exist or is not a directory; create it with `mkdir -p {0}`")]
    NoMountpoint(String),
    #[error(
        "mountpoint {0} is a FUSE mount whose process is gone (transport endpoint is not connected); detach it with `fusermount3 -uz {0}`, then mount again"
    )]
    DeadMount(String),
    #[error(
        "mountpoint {0} is busy: something is already mounted there; unmount it with `fusermount3 -u {0}`"
    )]
    Busy(String),
    #[error(
        "FUSE is not available: /dev/fuse is missing; load the module (`modprobe fuse`) or give the container the device"
    )]
    NoFuse,
    #[error("cannot load the cluster secret: {0}")]
    Secret(#[from] tessera_rpc::SecretError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot serve metrics on {addr} (is another process using the port?)")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open a session with the metadata service: {0}")]
    Session(#[from] tessera_client::meta::MetaClientError),
    #[error(
        "cannot mount at {path}: {source}; check that you are root or that fusermount3 is installed, and that the mountpoint is not busy"
    )]
    Mount {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot keep the supervised mount's state in {path}: {source}; set TESSERA_RUN_DIR to a writable directory"
    )]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the serving process: {0}")]
    Child(String),
    #[error(
        "cannot take over the supervised mount's connection: {0}; unmount with `fusermount3 -u` and mount again"
    )]
    Takeover(std::io::Error),
}

/// How serving a mount ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The file system was unmounted (or the process signalled to unmount it).
    Unmounted,
    /// A supervised serving process stopped for a planned handover: every request it read
    /// was answered and everything buffered written; its session lives on for the next.
    HandedOver,
}

/// Whether `path` is a mount point now (a line of /proc/self/mountinfo names it).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p.replace("\\040", " ") == want)
}

/// Linux's errno for "transport endpoint is not connected": what a FUSE mountpoint whose
/// daemon died answers to everything.
const ENOTCONN: i32 = 107;

/// Why a mountpoint cannot be resolved: a dead FUSE mount left there, or nothing at all.
pub fn dead_or_missing(e: &std::io::Error, shown: &str) -> MountError {
    if e.raw_os_error() == Some(ENOTCONN) {
        MountError::DeadMount(shown.to_string())
    } else {
        MountError::NoMountpoint(shown.to_string())
    }
}

pub(crate) fn check(path: &Path) -> Result<PathBuf, MountError> {
    let shown = path.display().to_string();
    let abs = std::fs::canonicalize(path).map_err(|e| dead_or_missing(&e, &shown))?;
    if !abs.is_dir() {
        return Err(MountError::NoMountpoint(shown));
    }
    if is_mounted(&abs) {
        // A mount whose daemon died still answers a cached stat, but not a listing.
        let dead = matches!(std::fs::read_dir(&abs), Err(e) if e.raw_os_error() == Some(ENOTCONN));
        return Err(if dead {
            MountError::DeadMount(shown)
        } else {
            MountError::Busy(shown)
        });
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse);
    }
    Ok(abs)
}

/// Larger kernel read-ahead for the mount (the FUSE default is 128 KiB): 1 MiB read
/// requests fetch whole stripe pieces. Best effort.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(md) = std::fs::metadata(mountpoint) {
        let minor = (md.dev() & 0xff) | ((md.dev() >> 12) & 0xfff00);
        let path = format!("/sys/class/bdi/0:{minor}/read_ahead_kb");
        if let Err(e) = std::fs::write(&path, "1024") {
            tracing::debug!("could not raise read-ahead ({path}): {e}");
        }
    }
}

/// The mount options and serving settings, the same for a plain and a supervised mount.
pub(crate) fn fuse_options(config: &MountConfig) -> fuser::Config {
    let mut options = fuser::Config::default();
    options.mount_options = vec![
        MountOption::FSName(config.meta.join(",")),
        // As a kernel option, so that a mount by root (mount(2) directly, no fusermount3)
        // is also of type `fuse.tessera`, as `mount -t fuse.tessera` and fstab lines name
        // it; fuser's own `Subtype` reaches only fusermount3.
        MountOption::CUSTOM("subtype=tessera".into()),
        MountOption::DefaultPermissions,
        // The daemon keeps access times itself (`fs/atimes.rs`); the kernel's flag only
        // says so to `mount` and `findmnt`. Without `noatime` the kernel's default applies,
        // shown as `relatime` (also for `--atime strictatime`: fuser has no flag for it).
        if config.fs.atime == AtimeMode::Off {
            MountOption::NoAtime
        } else {
            MountOption::Atime
        },
        if config.devices {
            MountOption::Dev
        } else {
            MountOption::NoDev
        },
        if config.set_id_programs {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
    ];
    options.acl = SessionACL::All;
    options.n_threads = Some(2);
    options
}

/// The mount's `/metrics`: FUSE operations, the RPCs they cause and what shard reads verified.
async fn start_metrics(
    addr: &str,
    reads: Arc<ReadAudit>,
) -> Result<tessera_metrics::MetricsServer, MountError> {
    let registry = tessera_metrics::Registry::new("mount");
    registry.register(|e| tessera_rpc::client_metrics().render(e, "client"));
    registry.register(|e| crate::fs::metrics::fs_metrics().render(e));
    registry.register(move |e| reads.render(e));
    let server = tessera_metrics::serve(addr, registry)
        .await
        .map_err(|source| MountError::Metrics {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(addr = %server.local_addr(), "serving metrics");
    Ok(server)
}

/// Mounts and serves until the file system is unmounted (`fusermount3 -u`, `umount`) or the
/// process gets SIGINT/SIGTERM, which unmount it. Blocks the calling thread.
///
/// Started by a supervisor (`supervise.rs`; see `handover.rs`), it serves the supervisor's
/// connection instead of mounting, adopts the metadata session of the process before it,
/// and stops for a planned handover on SIGUSR2 or SIGTERM.
pub fn run(config: MountConfig) -> Result<Served, MountError> {
    let supervised = Supervised::from_env();
    let mountpoint = match &supervised {
        None => check(&config.mountpoint)?,
        Some(s) => {
            s.die_with_supervisor();
            // Not resolved: a lookup on the mount could wait for this very process's INIT
            // answer. The supervisor checked and mounted it.
            config.mountpoint.clone()
        }
    };
    let secret = Secret::load(&config.secret_file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tessera-mount")
        .build()
        .map_err(MountError::Runtime)?;
    let chunks = Arc::new(ChunkClient::new(
        secret.clone(),
        ChunkClientConfig {
            rpc: config.rpc.clone(),
            ..ChunkClientConfig::default()
        },
    ));
    let _metrics = match &config.metrics_addr {
        Some(addr) => Some(rt.block_on(start_metrics(addr, chunks.audit().clone()))?),
        None => None,
    };
    let meta = MetaClient::new(
        &config.meta,
        secret.clone(),
        config.rpc.clone(),
        MetaClientOptions {
            deadline: config.meta_timeout,
            ..MetaClientOptions::default()
        },
    );
    let meta = Arc::new(match config.caps {
        true => meta.with_caps(config.session_lease),
        false => meta,
    });
    let client_name = format!("mount:{}", mountpoint.display());
    let session = match &supervised {
        None => rt.block_on(meta.open_session(&client_name, config.session_lease))?,
        Some(s) => rt.block_on(s.session_for(&meta, &client_name, config.session_lease))?,
    };
    // Background tasks below are spawned on this runtime.
    let _in_rt = rt.enter();
    let _keeper = meta.keep_session_alive(config.session_lease);
    let _recalls = meta.answer_recalls();
    tracing::info!(session, "metadata session opened");
    let data = DataPath::new(meta.clone(), chunks, config.data.clone());
    let timer = data.start_timer();
    // Shards whose servers sent bytes that failed verification go to the leader for repair.
    let reports = data.start_reporter();
    let reachability = data.start_reachability();
    let fs = TesseraFs::new(
        Namespace::new(meta.clone()),
        data.clone(),
        FsOptions {
            generation: supervised.as_ref().map_or(0, |s| s.generation),
            ..config.fs.clone()
        },
        rt.handle().clone(),
    );
    let slot = fs.notifier_slot();
    let quiet = fs.quiet_probe();
    let options = fuse_options(&config);
    let handed_over = Arc::new(AtomicBool::new(false));
    let fuse = match &supervised {
        None => {
            let mut fuse = fuser::Session::new(fs, &mountpoint, &options).map_err(|source| {
                MountError::Mount {
                    path: mountpoint.display().to_string(),
                    source,
                }
            })?;
            slot.set(fuse.notifier());
            unmount_on_signal(&rt, fuse.unmount_callable(), mountpoint.clone());
            fuse
        }
        Some(s) => {
            let mut fuse = s.take_over(fs, &options)?;
            slot.set(fuse.notifier());
            let stopper = fuse.stopper().map_err(MountError::Takeover)?;
            stop_on_signal(&rt, stopper, handed_over.clone());
            fuse
        }
    };
    let mp = mountpoint.clone();
    rt.spawn_blocking(move || raise_read_ahead(&mp));
    if let Some(s) = &supervised
        && let Err(e) = s.save_serving()
    {
        tracing::warn!("cannot record the serving generation: {e}");
    }
    tracing::info!("mounted at {}", mountpoint.display());
    let served = fuse.run();
    timer.abort();
    reports.abort();
    reachability.abort();
    if handed_over.load(Ordering::SeqCst) {
        // Nothing more is read; answer what was, write what is buffered, send the queued
        // releases. The session stays open: the next serving process adopts it.
        let limit = Duration::from_secs(60);
        if !wait_quiet(&quiet, limit) {
            tracing::warn!("requests still unanswered after {} s", limit.as_secs());
        }
        if let Err(e) = rt.block_on(data.flush_all()) {
            tracing::error!("unflushed data at handover: {e}");
        }
        wait_quiet(&quiet, limit);
        // Opens answered under caps live in this process only: the leader must know them
        // before the next one adopts the session (its releases are sent, not counted here).
        rt.block_on(meta.report_all_opens());
        tracing::info!(session, "handed over {}", mountpoint.display());
        return Ok(Served::HandedOver);
    }
    rt.block_on(async {
        if let Err(e) = data.flush_all().await {
            tracing::error!("unflushed data at unmount: {e}");
        }
        let bye = tokio::time::timeout(Duration::from_secs(5), meta.write(Op::CloseSession));
        if !matches!(bye.await, Ok(Ok(Ok(_)))) {
            tracing::warn!("could not close the metadata session; it expires with its lease");
        }
    });
    tracing::info!("unmounted {}", mountpoint.display());
    served
        .map(|()| Served::Unmounted)
        .map_err(|source| MountError::Mount {
            path: mountpoint.display().to_string(),
            source,
        })
}

/// SIGINT or SIGTERM unmounts (a plain mount).
fn unmount_on_signal(
    rt: &tokio::runtime::Runtime,
    mut unmounter: fuser::SessionUnmounter,
    mp: PathBuf,
) {
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot listen for signals; unmount with fusermount3 -u");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received: unmounting {}", mp.display());
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = unmounter.unmount() {
                // Busy (files still open): detach it lazily so the process can end.
                tracing::warn!("unmount failed ({e}); detaching lazily");
                let _ = std::process::Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&mp)
                    .status();
            }
        })
        .await;
    });
}

/// SIGUSR2 or SIGTERM stops a supervised serving process for a planned handover; SIGINT
/// (a terminal's Ctrl-C reaches the supervisor too, which unmounts) is ignored.
fn stop_on_signal(
    rt: &tokio::runtime::Runtime,
    stopper: fuser::SessionStopper,
    handed_over: Arc<AtomicBool>,
) {
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut usr2), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::user_defined2()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for signals; no planned handover possible");
            return;
        };
        loop {
            tokio::select! {
                _ = usr2.recv() => break,
                _ = term.recv() => break,
                _ = int.recv() => continue,
            }
        }
        tracing::info!("planned handover: no more requests are read");
        handed_over.store(true, Ordering::SeqCst);
        stopper.stop();
    });
}
