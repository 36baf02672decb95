//! `tessera mount`: mounts the file system with FUSE.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tessera_client::DataConfig;
use tessera_fuse_client::fs::{AtimeMode, FsOptions};
use tessera_fuse_client::mount::{MountConfig, Served, is_mounted};

use crate::cluster::{ClusterArgs, runtime};

/// Flags of `tessera mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Directory to mount on (must exist and not be mounted already).
    mountpoint: PathBuf,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// Erasure code of new data in files without a layout (`tessera layout`): K data
    /// shards plus M parity shards per stripe (needs at least K+M chunkservers; any M may
    /// be lost).
    #[arg(long, value_name = "K+M", default_value = "4+2", value_parser = parse_ec)]
    ec: (u8, u8),

    /// Most bytes of file data per stripe, e.g. 4M (suffixes K, M: powers of 1024), for
    /// files whose layout sets none.
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_size)]
    stripe_size: u64,

    /// Stay in the foreground (the default); logs go to stderr.
    #[arg(long, conflicts_with = "detach")]
    foreground: bool,

    /// Run in the background: returns once the file system is mounted.
    #[arg(long)]
    detach: bool,

    /// With --detach: append the mount's logs to this file [default: discarded].
    #[arg(long, value_name = "F")]
    log_file: Option<PathBuf>,

    /// How long the kernel may cache attributes and names, in milliseconds (opens always
    /// revalidate: close-to-open consistency does not depend on it).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    attr_ttl_ms: u64,

    /// How long a file system call waits for a metadata leader (across failovers) before it
    /// fails with EIO, in milliseconds. The same mount works again once the cluster is back.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    meta_timeout_ms: u64,

    /// Session lease in milliseconds: if this mount dies, its locks and open-file holds are
    /// released this long after its last renewal.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    session_lease_ms: u64,

    /// Cache directory listings and attributes under capabilities granted by the metadata
    /// leader: lookups, stats and listings of a directory listed before are answered by the
    /// mount until another mount changes it (the leader recalls the caps first) [default:
    /// off]. Give --meta-timeout-ms more than --session-lease-ms: a change on another mount
    /// waits up to the lease for a mount that stopped answering.
    #[arg(long)]
    caps: bool,

    /// Allow character and block device files on the mount to be opened as devices
    /// [default: off, the mount is nodev]. Only a mount by root gets it: for other users
    /// fusermount3 keeps nodev.
    #[arg(long)]
    dev: bool,

    /// Let set-user-ID and set-group-ID bits of programs on the mount take effect when they
    /// run [default: off, the mount is nosuid]. Only a mount by root gets it.
    #[arg(long)]
    suid: bool,

    /// When reading moves access times: relatime (after the file changed, or once a day, as
    /// ext4 by default), strictatime (every read and listing) or noatime (never). Recorded
    /// in the background, in batches: a read never waits for it.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = Atime::Relatime)]
    atime: Atime,

    /// Turn POSIX ACLs off, as ext4's `noacl`: their attributes are refused and the kernel
    /// checks permissions by the mode alone [default: ACLs on: stored, inherited from
    /// default ACLs, kept in step with chmod, enforced by the kernel].
    #[arg(long)]
    no_acl: bool,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,

    /// Keep the mount alive across restarts of the process serving it: a small supervisor
    /// holds the FUSE connection and starts a new serving process when one dies (crash,
    /// kill) or on a planned handover (`--restart`, or SIGUSR2 to the supervisor). Open
    /// files and locks carry over; see docs/operations.md.
    #[arg(long)]
    supervise: bool,

    /// `tessera mount --restart MOUNTPOINT` (no other flags): planned handover of a
    /// `--supervise` mount to a new serving process (started from the binary on disk now,
    /// so also an upgrade); waits until it serves.
    #[arg(long)]
    restart: bool,
}

/// `--atime` values, named as the Linux mount options are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Atime {
    #[value(name = "relatime")]
    Relatime,
    #[value(name = "strictatime")]
    Strict,
    #[value(name = "noatime")]
    Off,
}

impl From<Atime> for AtimeMode {
    fn from(a: Atime) -> Self {
        match a {
            Atime::Relatime => AtimeMode::Relatime,
            Atime::Strict => AtimeMode::Strict,
            Atime::Off => AtimeMode::Off,
        }
    }
}

pub fn run(args: MountArgs) -> anyhow::Result<()> {
    // Fail in seconds with one clear line when no metaserver is there at all, instead of
    // after the metadata client's 30 s of retries.
    let cluster = args.cluster.cluster()?;
    runtime()?.block_on(cluster.probe(args.cluster.timeout(5_000)))?;
    if args.detach {
        return detach(&args);
    }
    let (k, m) = args.ec;
    let supervise = args.supervise;
    let rpc = args.cluster.rpc()?;
    let config = MountConfig {
        mountpoint: args.mountpoint,
        meta: args.cluster.meta,
        secret_file: args.cluster.secret_file,
        rpc,
        data: DataConfig {
            k,
            m,
            stripe_size: args.stripe_size,
            ..DataConfig::default()
        },
        fs: FsOptions {
            ttl: Duration::from_millis(args.attr_ttl_ms),
            atime: args.atime.into(),
            acl: !args.no_acl,
            // Set by a supervisor's serving processes (`tessera_fuse_client::handover`).
            generation: 0,
        },
        meta_timeout: Duration::from_millis(args.meta_timeout_ms),
        session_lease: Duration::from_millis(args.session_lease_ms),
        metrics_addr: args.metrics_addr,
        devices: args.dev,
        set_id_programs: args.suid,
        caps: args.caps,
    };
    if supervise {
        let exe = std::env::current_exe().context("cannot find the tessera binary to re-run")?;
        // The serving processes: this command again, without the supervisor's flags.
        let child_args = std::env::args_os()
            .skip(1)
            .filter(|a| a != "--supervise" && a != "--detach")
            .collect();
        tessera_fuse_client::supervise::run(&config, exe, child_args)?;
        return Ok(());
    }
    match tessera_fuse_client::mount::run(config)? {
        Served::Unmounted => Ok(()),
        // The supervisor starts the next serving process on this status.
        Served::HandedOver => std::process::exit(tessera_fuse_client::handover::HANDED_OVER),
    }
}

/// `tessera mount --restart MOUNTPOINT`: a planned handover of a supervised mount.
pub fn restart(mountpoint: &std::path::Path) -> anyhow::Result<()> {
    let (generation, pid, took) =
        tessera_fuse_client::handover::request_restart(mountpoint, Duration::from_secs(120))
            .map_err(anyhow::Error::msg)?;
    println!(
        "{} is served by a new process (generation {generation}, pid {pid}) after {} ms",
        mountpoint.display(),
        took.as_millis()
    );
    Ok(())
}

/// Starts this command again in the foreground, in its own process group (so a terminal's
/// Ctrl-C does not reach it), and waits until the mount appears.
fn detach(args: &MountArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the tessera binary to re-run")?;
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let stderr = match &args.log_file {
        Some(f) => std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .with_context(|| format!("cannot open log file {}", f.display()))?,
        ),
        None => std::process::Stdio::null(),
    };
    let mut child = std::process::Command::new(exe)
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context("cannot start the background mount process")?;
    let abs = std::fs::canonicalize(&args.mountpoint).map_err(|e| {
        tessera_fuse_client::mount::dead_or_missing(&e, &args.mountpoint.display().to_string())
    })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if is_mounted(&abs) {
            println!("mounted {} (pid {})", abs.display(), child.id());
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the mount process exited ({status}) before mounting; run without --detach to see why"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "{} was not mounted within 60 s (pid {} still running); check its log",
        abs.display(),
        child.id()
    )
}

fn parse_ec(s: &str) -> Result<(u8, u8), String> {
    let (k, m) = s
        .split_once('+')
        .ok_or_else(|| format!("{s:?} is not K+M (e.g. 4+2)"))?;
    let k: u8 = k.trim().parse().map_err(|_| format!("bad K in {s:?}"))?;
    let m: u8 = m.trim().parse().map_err(|_| format!("bad M in {s:?}"))?;
    if k == 0 || usize::from(k) + usize::from(m) > 255 {
        return Err(format!("{s:?}: K must be at least 1 and K+M at most 255"));
    }
    Ok((k, m))
}

/// Digits with an optional K or M suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (digits, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1u64 << 20),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 4M, 1048576)"))?;
    let v = n
        .checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 || v > 64 << 20 {
        return Err(format!("{s:?}: the stripe size must be 1 byte to 64M"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        assert_eq!(parse_ec("4+2"), Ok((4, 2)));
        assert_eq!(parse_ec("1+0"), Ok((1, 0)));
        assert!(parse_ec("0+2").is_err());
        assert!(parse_ec("42").is_err());
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("128M").is_err());
        assert!(parse_size("0").is_err());
    }
}
