//! `tessera dump FILE` and `tessera load FILE`: a metadata backup that a NEW cluster can be
//! restored from (see docs/operations.md, "Backup and restore").
//!
//! The image is made and read by the metadata leader (`tessera_namespace::dump`); this
//! side moves the bytes, writes the file atomically and explains refusals. The image is one
//! call (at most a Raft entry for `load`), so the progress a terminal sees is which step runs
//! and for how long, not a fraction.

use crate::cluster::{ClusterArgs, runtime};
use crate::progress::Progress;
use anyhow::{Context, bail};
use clap::Args;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tessera_client::cluster::{ClusterClient, Retry};
use tessera_proto::backup::{DumpSummary, MAX_LOAD_IMAGE, MetaDump, MetaLoad};

/// Flags of `tessera dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// File to write the image to (written to FILE.tmp, fsynced, then renamed).
    file: PathBuf,

    #[command(flatten)]
    cluster: ClusterArgs,

    /// Replace FILE if it exists [default: refuse].
    #[arg(long)]
    force: bool,
}

/// Flags of `tessera load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Image written by `tessera dump`.
    file: PathBuf,

    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Dumping and loading take longer than a status call: at least this long per call.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster, and the policy of one backup call: every address once, with time to move
/// the whole image.
fn backup_client(args: &ClusterArgs) -> anyhow::Result<(ClusterClient, Retry)> {
    let retry = Retry::once(args.timeout(5_000).max(BACKUP_TIMEOUT));
    Ok((args.cluster()?, retry))
}

fn describe(s: &DumpSummary) -> String {
    format!(
        "{} inodes, {} stripes, {} bytes, log index {}",
        s.inodes, s.stripes, s.bytes, s.applied_index
    )
}

/// Runs `call`, showing `step` and the seconds it has taken on a terminal meanwhile.
async fn timed_step<T>(progress: &mut Progress, step: &str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            done = &mut call => return done,
            _ = tick.tick() => {
                progress.show(&format!("{step} ({} s)", started.elapsed().as_secs()), None);
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

pub fn dump(args: DumpArgs) -> anyhow::Result<()> {
    if args.file.exists() && !args.force {
        bail!(
            "{} exists; give another file or --force to replace it",
            args.file.display()
        );
    }
    let (cluster, retry) = backup_client(&args.cluster)?;
    let mut progress = Progress::terminal_only();
    let call = cluster.call_with::<MetaDump, _, _>(&(), bytes::Bytes::new(), &retry);
    let (summary, image) = runtime()?.block_on(timed_step(
        &mut progress,
        "dump: the metadata leader is making the image",
        call,
    ))?;
    progress.show(&format!("dump: writing {} bytes", image.len()), None);
    write_atomically(&args.file, &image)?;
    progress.finish();
    println!("dumped {} to {}", describe(&summary), args.file.display());
    if summary.bytes > MAX_LOAD_IMAGE {
        eprintln!(
            "tessera: warning: this image is larger than the {MAX_LOAD_IMAGE} bytes `tessera load` accepts; it cannot be restored online yet"
        );
    }
    Ok(())
}

pub fn load(args: LoadArgs) -> anyhow::Result<()> {
    let image = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if image.len() as u64 > MAX_LOAD_IMAGE {
        bail!(
            "{} is {} bytes; online load accepts at most {MAX_LOAD_IMAGE} bytes (one Raft entry)",
            args.file.display(),
            image.len()
        );
    }
    let (cluster, retry) = backup_client(&args.cluster)?;
    let mut progress = Progress::terminal_only();
    let step = format!(
        "load: sending {} bytes to the metadata leader, which checks and commits them",
        image.len()
    );
    let call = cluster.call_with::<MetaLoad, _, _>(&(), bytes::Bytes::from(image), &retry);
    let (reply, _) = runtime()?.block_on(timed_step(&mut progress, &step, call))?;
    progress.finish();
    match reply {
        Ok(summary) => {
            println!("loaded {} from {}", describe(&summary), args.file.display());
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}
