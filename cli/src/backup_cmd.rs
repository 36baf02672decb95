//! `tessera dump FILE` and `tessera load FILE`: a metadata backup that a NEW cluster can be
//! restored from (see docs/operations.md, "Backup and restore").
//!
//! The image is made and read by the metadata leader (`tessera_namespace::dump`); this
//! side moves the bytes, writes the file atomically and explains refusals.

use crate::cluster::{ClusterArgs, runtime};
use anyhow::{Context, bail};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
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
    let (summary, image) = runtime()?.block_on(cluster.call_with::<MetaDump, _, _>(
        &(),
        bytes::Bytes::new(),
        &retry,
    ))?;
    write_atomically(&args.file, &image)?;
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
    let (reply, _) = runtime()?.block_on(cluster.call_with::<MetaLoad, _, _>(
        &(),
        bytes::Bytes::from(image),
        &retry,
    ))?;
    match reply {
        Ok(summary) => {
            println!("loaded {} from {}", describe(&summary), args.file.display());
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}
