//! The `tessera` binary: parses flags and hands a config to the component crates.
//!
//! Each process role and admin command is a subcommand; every one of them arrives together
//! with the component that implements it.

mod backup_cmd;
mod chunk_cmd;
mod cluster;
mod fsck_cmd;
mod info_cmd;
mod layout_cmd;
mod log_rate;
mod membership_cmd;
mod meta_cmd;
mod mount_cmd;
mod mount_helper;
mod pipe;
mod progress;
mod quota_cmd;
mod rebalance_cmd;
mod secret_cmd;
mod snapshot_cmd;
mod status_cmd;
mod tls_args;
mod trash_cmd;
mod units;
mod upkeep_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Tessera: a distributed POSIX file system with erasure-coded, content-addressed storage.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    propagate_version = true,
    after_help = "Admin commands read --meta from TESSERA_META and --secret-file from \
                  TESSERA_SECRET_FILE when the flag is not given; every command that \
                  connects reads --tls-cert, --tls-key, --tls-ca from TESSERA_TLS_CERT, \
                  TESSERA_TLS_KEY, TESSERA_TLS_CA.\n\
                  Every flag and its default: tessera <COMMAND> --help. \
                  Operations guide: docs/operations.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new cluster secret file (mode 0600) for --secret-file / TESSERA_SECRET_FILE.
    GenSecret(secret_cmd::GenSecretArgs),
    /// Run a chunkserver: store, verify, serve and scrub shards; heartbeat to the metadata leader.
    Chunk(chunk_cmd::ChunkArgs),
    /// Run a metadata server: one member of the Raft group that holds the namespace.
    // Boxed: its flags make it several times larger than the other variants.
    Meta(Box<meta_cmd::MetaArgs>),
    /// Show the health of the whole cluster: metaservers, chunkservers, stripes. Exits 1
    /// when anything is degraded, 2 when the cluster cannot be reached.
    Status(status_cmd::StatusArgs),
    /// Mount the file system with FUSE (foreground; --detach to run in the background).
    Mount(mount_cmd::MountArgs),
    /// Check that every shard is where the metadata says, refcounts match and no shard is
    /// orphaned; --deep re-reads shards, --repair fixes what it finds. Exits 1 on problems,
    /// 2 when the cluster cannot be reached.
    Fsck(fsck_cmd::FsckArgs),
    /// Show repair progress (stripes healthy, degraded, lost) and wait until every stripe
    /// has all its shards; exits 1 if it did not happen within --wait-ms.
    Repair(upkeep_cmd::RepairArgs),
    /// Show the garbage-collection queue (stripes no file references, waiting to be
    /// deleted); with --wait-ms, wait until it is empty.
    Gc(upkeep_cmd::GcArgs),
    /// Move every shard off a chunkserver before it is decommissioned, with progress; no new
    /// shards go to it meanwhile. --cancel stops a drain.
    Drain(upkeep_cmd::DrainArgs),
    /// Move shards from the fullest chunkservers to the emptiest until every server's used
    /// fraction is within the band of the mean (the leader also does it by itself unless
    /// started with --rebalance manual); --wait follows the moves. Exits 1 if --wait gave up.
    Rebalance(rebalance_cmd::RebalanceArgs),
    /// Deleted files kept for the retention time: show and set it (--retention SECONDS),
    /// `list` them, `restore INO [--to PATH]` one, `purge INO...|--all`.
    Trash(trash_cmd::TrashArgs),
    /// Directory quotas on bytes and inodes: `set DIR --bytes SIZE --inodes N`, `get DIR`,
    /// `list`, `unset DIR`. Past a limit, writes and creates fail with EDQUOT.
    Quota(quota_cmd::QuotaArgs),
    /// Read-only snapshots of a directory, sharing its data: `create DIR NAME` (then read
    /// it at DIR/.snapshots/NAME on any mount), `list [DIR]`, `delete DIR NAME`,
    /// `restore DIR NAME [PATH] [--to PATH]`.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Show where a file's bytes live: its chunks, slices, stripes, and every shard with the
    /// chunkserver that holds it.
    Info(info_cmd::InfoArgs),
    /// Per-directory layouts: `set DIR ec=K+M [stripe=BYTES]` gives files created under DIR
    /// that erasure code (ec=1+M: plain copies) and stripe size, `get PATH` shows it,
    /// `unset DIR` removes it (new files then get the writing mount's --ec).
    Layout(layout_cmd::LayoutArgs),
    /// Write a metadata backup of the whole namespace to FILE (deterministic: the same files
    /// give the same bytes). Restore it into a new cluster with `tessera load`.
    Dump(backup_cmd::DumpArgs),
    /// Restore a `tessera dump` image into a new cluster whose namespace holds only the root
    /// directory (online, through Raft; images up to 3 MiB). Refused if the namespace is not
    /// empty.
    Load(backup_cmd::LoadArgs),
}

fn init_logging() {
    // Without RUST_LOG: info, with the Raft library's chatter (elections, retries) from warn.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(tessera_metaserver::raft::LOG_FILTER)
    });
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let limit = log_rate::RateLimit::default();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs redirected to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter)
        // Asked per event, never cached per callsite: the answer changes with time.
        .with_filter(
            tracing_subscriber::filter::DynFilterFn::new(move |meta, _| limit.allow(meta))
                .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes()),
        );
    tracing_subscriber::registry().with(layer).init();
}

fn main() -> ExitCode {
    pipe::exit_quietly_on_closed_stdout();
    let mut argv = std::env::args_os();
    if argv
        .next()
        .is_some_and(|a| mount_helper::called_as_helper(&a))
    {
        return mount_helper::run(argv.collect());
    }
    // `tessera mount --restart MOUNTPOINT` talks to the mount's supervisor only: none of
    // the cluster flags a mount requires apply.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let [cmd, flag, mountpoint] = args.as_slice()
        && cmd == "mount"
        && flag == "--restart"
    {
        init_logging();
        return finish(mount_cmd::restart(std::path::Path::new(mountpoint)));
    }
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Status(args) => status_cmd::run(args).unwrap_or_else(|e| {
            eprintln!("tessera: {e:#}");
            ExitCode::from(2)
        }),
        Command::Fsck(args) => fsck_cmd::run(args).unwrap_or_else(|e| {
            eprintln!("tessera: {e:#}");
            ExitCode::from(2)
        }),
        Command::Repair(args) => checked(upkeep_cmd::repair(args)),
        Command::Gc(args) => checked(upkeep_cmd::gc(args)),
        Command::Drain(args) => checked(upkeep_cmd::drain(args)),
        Command::Rebalance(args) => checked(rebalance_cmd::run(args)),
        Command::GenSecret(args) => finish(secret_cmd::run(args)),
        Command::Chunk(args) => finish(chunk_cmd::run(args)),
        Command::Meta(args) => finish(meta_cmd::run(*args)),
        Command::Mount(args) => finish(mount_cmd::run(args)),
        Command::Info(args) => finish(info_cmd::run(args)),
        Command::Layout(args) => finish(layout_cmd::run(args)),
        Command::Trash(args) => finish(trash_cmd::run(args)),
        Command::Quota(args) => finish(quota_cmd::run(args)),
        Command::Snapshot(args) => finish(snapshot_cmd::run(args)),
        Command::Dump(args) => finish(backup_cmd::dump(args)),
        Command::Load(args) => finish(backup_cmd::load(args)),
    }
}

/// Exit status of a check: 0 done, 1 not (yet), 2 failed with an error (printed).
fn checked(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tessera: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Exit status of a command that either works or fails with one error.
fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain, never a backtrace.
            eprintln!("tessera: {e:#}");
            ExitCode::FAILURE
        }
    }
}
