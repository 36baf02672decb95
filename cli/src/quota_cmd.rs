//! `tessera quota`: set, show, list and remove directory quotas. The accounting and the
//! enforcement are the namespace's (`quota.rs` there); this side resolves paths, parses
//! sizes and prints.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tessera_client::meta::MetaClient;
use tessera_proto::fs::Ino;
use tessera_proto::meta::{Op, Query, QuotaEntry, Response};

use crate::cluster::{ClusterArgs, runtime};
use crate::trash_cmd::{resolve_dir, write};
use crate::units;

/// Flags of `tessera quota`.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    #[command(subcommand)]
    action: QuotaAction,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum QuotaAction {
    /// Limit the bytes (logical file sizes) and inodes below DIR. A new quota counts what DIR
    /// already holds (one walk of its subtree, in one metadata command); changing an existing
    /// one keeps its counts. A limit left out is not limited. Writes, creates, links and
    /// renames that would pass a limit fail with EDQUOT ("Disk quota exceeded").
    Set {
        /// Directory, as a path from the file system's root (e.g. /projects/a).
        dir: String,
        /// Most bytes of file data below DIR: a number with an optional K, M, G, T (powers
        /// of 1024) suffix [default: no byte limit].
        #[arg(long, value_name = "SIZE", value_parser = crate::units::parse_bytes)]
        bytes: Option<u64>,
        /// Most inodes (files, directories, symlinks) below DIR, DIR itself not counted
        /// [default: no inode limit].
        #[arg(long, value_name = "N")]
        inodes: Option<u64>,
    },
    /// Show the quota of DIR: its limits and what it holds now.
    Get {
        /// Directory, as a path from the file system's root.
        dir: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List every quota: directory, limits, usage.
    List {
        /// One JSON object per quota instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove the quota of DIR (its files stay).
    Unset {
        /// Directory, as a path from the file system's root.
        dir: String,
    },
}

pub fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let meta = args.cluster.admin_client()?;
    runtime()?.block_on(async {
        match args.action {
            QuotaAction::Set { dir, bytes, inodes } => {
                let ino = resolve_dir(&meta, &dir).await?;
                write(&meta, Op::SetQuota { ino, bytes, inodes })
                    .await
                    .with_context(|| format!("cannot set the quota of {dir}"))?;
                let q = find(&meta, ino, &dir).await?;
                println!("{}", describe(&q, &dir));
                Ok(())
            }
            QuotaAction::Get { dir, json } => {
                let ino = resolve_dir(&meta, &dir).await?;
                let q = find(&meta, ino, &dir).await?;
                if json {
                    println!("{}", to_json(&q));
                } else {
                    println!("{}", describe(&q, &dir));
                }
                Ok(())
            }
            QuotaAction::List { json } => list(&meta, json).await,
            QuotaAction::Unset { dir } => {
                let ino = resolve_dir(&meta, &dir).await?;
                write(&meta, Op::UnsetQuota { ino })
                    .await
                    .with_context(|| format!("cannot remove the quota of {dir} (has it one?)"))?;
                println!("{dir}: quota removed");
                Ok(())
            }
        }
    })
}

async fn all(meta: &MetaClient) -> anyhow::Result<Vec<QuotaEntry>> {
    match meta.read(Query::Quotas).await {
        Ok(Ok(Response::Quotas(q))) => Ok(q),
        Ok(Ok(_)) => bail!("the metadata leader answered the quota listing with something else"),
        Ok(Err(e)) => bail!("{e}"),
        Err(e) => bail!("cannot reach the metadata leader: {e}"),
    }
}

async fn find(meta: &MetaClient, ino: Ino, dir: &str) -> anyhow::Result<QuotaEntry> {
    match all(meta).await?.into_iter().find(|q| q.ino == ino) {
        Some(q) => Ok(q),
        None => bail!("{dir} has no quota (set one with `tessera quota set {dir} --bytes SIZE`)"),
    }
}

fn path_of(q: &QuotaEntry) -> String {
    match &q.path {
        Some(p) => String::from_utf8_lossy(p).into_owned(),
        None => format!("(inode {}, not linked)", q.ino),
    }
}

fn limit(max: Option<u64>, show: impl Fn(u64) -> String) -> String {
    max.map_or_else(|| "no limit".to_string(), show)
}

fn describe(q: &QuotaEntry, dir: &str) -> String {
    format!(
        "{dir}: bytes {} of {}, inodes {} of {}",
        units::bytes(q.used_bytes),
        limit(q.max_bytes, units::bytes),
        q.used_inodes,
        limit(q.max_inodes, |n| n.to_string()),
    )
}

fn to_json(q: &QuotaEntry) -> serde_json::Value {
    serde_json::json!({
        "ino": q.ino,
        "path": q.path.as_ref().map(|_| path_of(q)),
        "max_bytes": q.max_bytes,
        "max_inodes": q.max_inodes,
        "used_bytes": q.used_bytes,
        "used_inodes": q.used_inodes,
    })
}

async fn list(meta: &MetaClient, json: bool) -> anyhow::Result<()> {
    let quotas = all(meta).await?;
    if json {
        for q in &quotas {
            println!("{}", to_json(q));
        }
        return Ok(());
    }
    if quotas.is_empty() {
        println!("no quotas (set one with `tessera quota set DIR --bytes SIZE --inodes N`)");
        return Ok(());
    }
    println!(
        "{:>10} {:>10} {:>10} {:>10}  directory",
        "bytes", "max bytes", "inodes", "max inodes"
    );
    for q in &quotas {
        println!(
            "{:>10} {:>10} {:>10} {:>10}  {}",
            units::bytes(q.used_bytes),
            limit(q.max_bytes, units::bytes),
            q.used_inodes,
            limit(q.max_inodes, |n| n.to_string()),
            path_of(q)
        );
    }
    Ok(())
}
