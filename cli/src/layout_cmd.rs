//! `tessera layout set|get|unset DIR`: the erasure code and stripe size of files created
//! under a directory. The layout is the directory's `tessera.layout` attribute, which the
//! namespace validates and copies onto each new file and subdirectory
//! (`namespace/src/layout.rs`); this side resolves the path, checks the value first (so a
//! bad one gets a message, not just EINVAL) and prints.

use std::os::unix::fs::MetadataExt;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tessera_client::meta::MetaClient;
use tessera_proto::fs::{FsError, Ino, XattrMode};
use tessera_proto::layout::{Layout, LayoutError, XATTR_LAYOUT};
use tessera_proto::meta::{Op, Query, Response};

use crate::cluster::{ClusterArgs, runtime};

/// Flags of `tessera layout`.
#[derive(Debug, Args)]
pub struct LayoutArgs {
    #[command(subcommand)]
    action: LayoutAction,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum LayoutAction {
    /// Give files created under DIR from now on this layout. New subdirectories copy it
    /// when they are made; existing files and subdirectories keep theirs.
    Set {
        /// A directory: a path on a Tessera mount, or a path from the file system's root
        /// (e.g. /projects/archive).
        dir: String,
        /// `ec=K+M` (K data shards >= 1, M parity shards >= 0, K+M <= 255; ec=1+M keeps
        /// 1+M plain copies) and optionally `stripe=BYTES` (suffix K or M, 1 byte to 64M)
        /// [default stripe: the writing mount's --stripe-size, 4M unless set].
        #[arg(required = true, num_args = 1..)]
        layout: Vec<String>,
    },
    /// Show the layout of DIR (what its new files get), or of a file (what it was created
    /// with).
    Get {
        /// A path on a Tessera mount, or from the file system's root.
        path: String,
    },
    /// Remove DIR's layout: files created under it get the writing mount's --ec and
    /// --stripe-size again.
    Unset {
        /// A directory: a path on a Tessera mount, or from the file system's root.
        dir: String,
    },
}

pub fn run(args: LayoutArgs) -> anyhow::Result<()> {
    let meta = args.cluster.admin_client()?;
    runtime()?.block_on(async {
        match args.action {
            LayoutAction::Set { dir, layout } => {
                let value = layout.join(" ");
                let layout = Layout::parse(&value)?;
                let ino = resolve(&meta, &dir).await?;
                let op = Op::SetXattr {
                    ino,
                    name: XATTR_LAYOUT.to_vec(),
                    value: layout.to_string().into_bytes(),
                    mode: XattrMode::Upsert,
                };
                match write(&meta, op).await? {
                    Err(FsError::Invalid) => bail!(
                        "{dir} is not a directory (a file's layout is fixed once it has data)"
                    ),
                    Err(e) => bail!("cannot set the layout of {dir}: {e}"),
                    // A directory: for what is created in it from now on; an empty file: its own.
                    Ok(_) => println!("{dir}: layout set to {}", describe(&layout)),
                }
            }
            LayoutAction::Get { path } => {
                let ino = resolve(&meta, &path).await?;
                println!("{path}: {}", get(&meta, ino).await?);
            }
            LayoutAction::Unset { dir } => {
                let ino = resolve(&meta, &dir).await?;
                let op = Op::RemoveXattr {
                    ino,
                    name: XATTR_LAYOUT.to_vec(),
                };
                match write(&meta, op).await? {
                    Ok(_) | Err(FsError::NoData) => println!(
                        "{dir}: no layout (new files get the writing mount's --ec and --stripe-size)"
                    ),
                    Err(FsError::Invalid) => {
                        bail!("{dir} is a file with data: its layout is fixed")
                    }
                    Err(e) => bail!("cannot unset the layout of {dir}: {e}"),
                }
            }
        }
        Ok(())
    })
}

/// "ec=6+3 stripe=8M (6 data + 3 parity shards, stripes of up to 8388608 bytes)".
pub(crate) fn describe(l: &Layout) -> String {
    let shards = if l.k == 1 {
        format!("{} copies", 1 + u16::from(l.m))
    } else {
        format!("{} data + {} parity shards", l.k, l.m)
    };
    let stripe = match l.stripe_size {
        Some(s) => format!("stripes of up to {s} bytes"),
        None => "stripes of the writing mount's --stripe-size".into(),
    };
    format!("{l} ({shards}, {stripe})")
}

/// What `ino`'s layout attribute says, in words.
pub(crate) async fn get(meta: &MetaClient, ino: Ino) -> anyhow::Result<String> {
    Ok(match read(meta, ino).await? {
        Some(Ok(l)) => describe(&l),
        Some(Err(e)) => format!("unreadable ({e}); the writing mount's --ec applies"),
        None => "no layout (the writing mount's --ec and --stripe-size)".into(),
    })
}

/// `ino`'s layout attribute: `None` if it has none.
pub(crate) async fn read(
    meta: &MetaClient,
    ino: Ino,
) -> anyhow::Result<Option<Result<Layout, LayoutError>>> {
    let q = Query::GetXattr {
        ino,
        name: XATTR_LAYOUT.to_vec(),
    };
    match meta.read(q).await {
        Ok(Ok(Response::Xattr(v))) => Ok(Some(Layout::from_bytes(&v))),
        Ok(Err(FsError::NoData)) => Ok(None),
        Ok(Ok(other)) => bail!("unexpected reply from the metadata leader: {other:?}"),
        Ok(Err(e)) => bail!("cannot read the layout of inode {ino}: {e}"),
        Err(e) => bail!("cannot reach the metadata leader: {e}"),
    }
}

async fn write(meta: &MetaClient, op: Op) -> anyhow::Result<Result<Response, FsError>> {
    meta.write(op)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the metadata leader: {e}"))
}

/// The inode `path` names: through the mount when it is a path on a Tessera mount (the
/// mount reports the metaserver's inode number as `st_ino`), else looked up name by name
/// from the file system's root.
async fn resolve(meta: &MetaClient, path: &str) -> anyhow::Result<Ino> {
    if let Ok(local) = std::fs::canonicalize(path)
        && crate::info_cmd::check_mount(&local).is_ok()
    {
        let md = std::fs::metadata(&local)
            .with_context(|| format!("cannot stat {}", local.display()))?;
        return Ok(md.ino());
    }
    crate::trash_cmd::resolve_dir(meta, path).await
}
