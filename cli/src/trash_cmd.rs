//! `tessera trash`: show and set how long deleted files are kept, list them, restore one to
//! its old path (or another), purge them. The files are the namespace's (`trash.rs` there);
//! this side only resolves paths and prints.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::time::{SystemTime, UNIX_EPOCH};
use tessera_client::meta::MetaClient;
use tessera_proto::fs::{Ino, ROOT_INO};
use tessera_proto::meta::{Op, Query, Response, TrashEntry};

use crate::cluster::{ClusterArgs, runtime};
use crate::units;

/// Flags of `tessera trash`.
#[derive(Debug, Args)]
pub struct TrashArgs {
    #[command(subcommand)]
    action: Option<TrashAction>,
    /// Keep deleted files this many seconds from now on (0: free them at once; files
    /// already in the trash then go at the next expiry check).
    #[arg(long, value_name = "SECONDS")]
    retention: Option<u64>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum TrashAction {
    /// List the files in the trash: inode number, size, when deleted, where from.
    List {
        /// One JSON object per file instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give a file in the trash a name again: where it was deleted from, or --to.
    Restore {
        /// Its inode number (from `tessera trash list`).
        ino: Ino,
        /// Path in the file system (from its root, e.g. /projects/report.txt) to restore it
        /// under; its directory must exist.
        #[arg(long, value_name = "PATH")]
        to: Option<String>,
    },
    /// Free files in the trash now (their space returns once GC deletes the stripes).
    Purge {
        /// Inode numbers (from `tessera trash list`).
        inos: Vec<Ino>,
        /// Every file in the trash.
        #[arg(long, conflicts_with = "inos")]
        all: bool,
    },
}

pub fn run(args: TrashArgs) -> anyhow::Result<()> {
    let meta = args.cluster.admin_client()?;
    runtime()?.block_on(async {
        if let Some(seconds) = args.retention {
            write(&meta, Op::SetTrashRetention { seconds }).await?;
            println!("deleted files are kept {}", describe_retention(seconds));
        }
        match args.action {
            None if args.retention.is_some() => Ok(()),
            None => summary(&meta).await,
            Some(TrashAction::List { json }) => list(&meta, json).await,
            Some(TrashAction::Restore { ino, to }) => restore(&meta, ino, to).await,
            Some(TrashAction::Purge { inos, all }) => purge(&meta, inos, all).await,
        }
    })
}

pub(crate) async fn write(meta: &MetaClient, op: Op) -> anyhow::Result<Response> {
    match meta.write(op).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => bail!("{e}"),
        Err(e) => bail!("cannot reach the metadata leader: {e}"),
    }
}

pub(crate) async fn query(meta: &MetaClient, q: Query) -> anyhow::Result<Response> {
    match meta.read(q).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => bail!("{e}"),
        Err(e) => bail!("cannot reach the metadata leader: {e}"),
    }
}

/// The retention and every file in the trash, page by page.
async fn everything(meta: &MetaClient) -> anyhow::Result<(u64, Vec<TrashEntry>)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (retention_s, entries, _) = page(meta, after, 1000, false).await?;
        let Some(last) = entries.last() else {
            return Ok((retention_s, all));
        };
        after = last.attr.ino;
        all.extend(entries);
    }
}

type Page = (u64, Vec<TrashEntry>, Option<(u64, u64)>);

async fn page(meta: &MetaClient, after: Ino, limit: u32, totals: bool) -> anyhow::Result<Page> {
    let q = Query::Trash {
        after,
        limit,
        totals,
    };
    match query(meta, q).await? {
        Response::Trash {
            retention_s,
            entries,
            totals,
        } => Ok((retention_s, entries, totals)),
        _ => bail!("the metadata leader answered the trash listing with something else"),
    }
}

/// "1 file", "3 files".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn describe_retention(seconds: u64) -> String {
    match seconds {
        0 => "not at all (the trash is off)".into(),
        s if s % 86_400 == 0 => format!("{} ({s} s)", count(s / 86_400, "day")),
        s if s % 3_600 == 0 => format!("{} ({s} s)", count(s / 3_600, "hour")),
        s => format!("{s} s"),
    }
}

/// One line for this command and `tessera status`.
fn describe(retention_s: u64, files: u64, bytes: u64) -> String {
    format!(
        "{}, {} in the trash; deleted files are kept {}",
        count(files, "file"),
        units::bytes(bytes),
        describe_retention(retention_s)
    )
}

/// The retention and what the trash holds, for `tessera status`.
pub async fn status_line(meta: &MetaClient) -> anyhow::Result<String> {
    let (retention, _, totals) = page(meta, 0, 0, true).await?;
    let (files, bytes) = totals.unwrap_or_default();
    Ok(describe(retention, files, bytes))
}

async fn summary(meta: &MetaClient) -> anyhow::Result<()> {
    println!("trash: {}", status_line(meta).await?);
    Ok(())
}

/// Where a file was deleted from, as a path when its directory still has one.
fn origin(e: &TrashEntry) -> String {
    let name = String::from_utf8_lossy(&e.name);
    match &e.parent_path {
        Some(p) if p.as_slice() == b"/" => format!("/{name}"),
        Some(p) => format!("{}/{name}", String::from_utf8_lossy(p)),
        None => format!("(directory {} is gone)/{name}", e.parent),
    }
}

pub(crate) fn age(deleted_ns: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let s = (now.saturating_sub(deleted_ns) / 1_000_000_000).max(0);
    match s {
        s if s < 120 => format!("{s} s ago"),
        s if s < 7_200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}

async fn list(meta: &MetaClient, json: bool) -> anyhow::Result<()> {
    let (retention, entries) = everything(meta).await?;
    if json {
        for e in &entries {
            let line = serde_json::json!({
                "ino": e.attr.ino,
                "size": e.attr.size,
                "mode": e.attr.mode(),
                "uid": e.attr.uid,
                "gid": e.attr.gid,
                "deleted_ns": e.deleted_ns,
                "parent": e.parent,
                "name": String::from_utf8_lossy(&e.name),
                "path": e.parent_path.as_ref().map(|_| origin(e)),
            });
            println!("{line}");
        }
        return Ok(());
    }
    let bytes = entries.iter().map(|e| e.attr.size).sum();
    println!(
        "trash: {}",
        describe(retention, entries.len() as u64, bytes)
    );
    if !entries.is_empty() {
        println!(
            "{:>12} {:>10} {:>14}  deleted from",
            "inode", "size", "deleted"
        );
    }
    for e in &entries {
        println!(
            "{:>12} {:>10} {:>14}  {}",
            e.attr.ino,
            units::bytes(e.attr.size),
            age(e.deleted_ns),
            origin(e)
        );
    }
    Ok(())
}

/// The inode `path` names (from the file system's root); used for directories here and by
/// `tessera quota` and `tessera layout`.
pub async fn resolve_dir(meta: &MetaClient, path: &str) -> anyhow::Result<Ino> {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let found = query(
            meta,
            Query::Lookup {
                parent: ino,
                name: part.as_bytes().to_vec(),
            },
        )
        .await
        .with_context(|| format!("cannot find {part:?} on the way to {path}"))?;
        let Response::Attr(a) = found else {
            bail!("the metadata leader answered a lookup with something else");
        };
        ino = a.ino;
    }
    Ok(ino)
}

async fn restore(meta: &MetaClient, ino: Ino, to: Option<String>) -> anyhow::Result<()> {
    let target = match &to {
        None => None,
        Some(path) => {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
            if name.is_empty() {
                bail!("{path:?} names a directory; give the file's new path, e.g. {path}name");
            }
            Some((resolve_dir(meta, dir).await?, name.as_bytes().to_vec()))
        }
    };
    let r = write(meta, Op::RestoreTrash { ino, to: target }).await;
    match (r, &to) {
        (Ok(_), Some(path)) => println!("restored inode {ino} as {path}"),
        (Ok(_), None) => println!("restored inode {ino} where it was deleted from"),
        (Err(e), None) => bail!(
            "cannot restore inode {ino}: {e} (not in the trash, its directory is gone, or its name is taken: see `tessera trash list`, or give --to PATH)"
        ),
        (Err(e), Some(path)) => bail!("cannot restore inode {ino} as {path}: {e}"),
    }
    Ok(())
}

async fn purge(meta: &MetaClient, inos: Vec<Ino>, all: bool) -> anyhow::Result<()> {
    let inos = if all {
        everything(meta)
            .await?
            .1
            .iter()
            .map(|e| e.attr.ino)
            .collect()
    } else if inos.is_empty() {
        bail!("name the inode numbers to purge (see `tessera trash list`), or --all");
    } else {
        inos
    };
    for batch in inos.chunks(1000) {
        write(
            meta,
            Op::PurgeTrash {
                inos: batch.to_vec(),
                expired_only: false,
            },
        )
        .await?;
    }
    println!("purged {} from the trash", count(inos.len() as u64, "file"));
    Ok(())
}
