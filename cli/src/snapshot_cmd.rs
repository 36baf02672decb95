//! `tessera snapshot`: take, list, delete and restore directory snapshots. The snapshots
//! themselves are the namespace's (`snapshot.rs` there); this side resolves paths and
//! prints. A snapshot is read on any mount at `DIR/.snapshots/NAME`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tessera_client::meta::MetaClient;
use tessera_proto::meta::{Op, Query, Response, SnapshotEntry};

use crate::cluster::{ClusterArgs, runtime};
use crate::trash_cmd::{age, query, resolve_dir, write};
use crate::units;

/// Flags of `tessera snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    action: SnapshotAction,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum SnapshotAction {
    /// Take a read-only snapshot of DIR's subtree as it is now, reached on every mount as
    /// DIR/.snapshots/NAME (hidden from DIR's listing). No data is copied: the snapshot
    /// shares every stripe with the live files. Its metadata is copied in steps of about
    /// 1,000 entries (12 ms each, between which other metadata commands run); what changes
    /// meanwhile is copied first, so the snapshot is the tree at the moment of this
    /// command. Waits until the copy is complete.
    Create {
        /// Directory, as a path from the file system's root (e.g. /projects/a).
        dir: String,
        /// Name of the snapshot (a file name: no "/").
        name: String,
        /// Entries the command copies itself before the leader's steps take over.
        #[arg(long, value_name = "ENTRIES", default_value_t = 1000)]
        step: u32,
    },
    /// List the snapshots of DIR, or of every directory.
    List {
        /// Directory, as a path from the file system's root [default: every directory].
        dir: Option<String>,
        /// One JSON object per snapshot instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshot NAME of DIR: it disappears at once; its inodes are freed in steps
    /// by the leader and the space of stripes only it still named returns (through garbage
    /// collection). Files of it still open on a mount stay readable until closed.
    Delete {
        /// Directory, as a path from the file system's root.
        dir: String,
        /// Name of the snapshot (see `tessera snapshot list DIR`).
        name: String,
    },
    /// Bring PATH of snapshot NAME of DIR back as live, writable files (a copy of the
    /// metadata; the data is shared, not copied). Quotas count the copy.
    Restore {
        /// Directory, as a path from the file system's root.
        dir: String,
        /// Name of the snapshot (see `tessera snapshot list DIR`).
        name: String,
        /// What to restore, as a path inside the snapshot [default: the whole snapshot].
        path: Option<String>,
        /// Where to put it, a path from the root that must not exist yet [default: where
        /// PATH is in DIR; required when restoring the whole snapshot].
        #[arg(long, value_name = "NEWPATH")]
        to: Option<String>,
    },
}

pub fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let meta = args.cluster.admin_client()?;
    runtime()?.block_on(async {
        match args.action {
            SnapshotAction::Create { dir, name, step } => {
                let ino = resolve_dir(&meta, &dir).await?;
                let op = Op::SnapshotCreate {
                    dir: ino,
                    name: name.as_bytes().to_vec(),
                    budget: step,
                };
                let Response::Snapshots(made) = write(&meta, op)
                    .await
                    .with_context(|| format!("cannot snapshot {dir} as {name:?}"))?
                else {
                    bail!("the metadata leader answered the snapshot with something else");
                };
                let Some(made) = made.into_iter().next() else {
                    bail!("the metadata leader answered the snapshot with nothing");
                };
                let done = wait_copied(&meta, made).await?;
                println!("{}", describe(&done));
                Ok(())
            }
            SnapshotAction::List { dir, json } => {
                let ino = match &dir {
                    Some(d) => Some(resolve_dir(&meta, d).await?),
                    None => None,
                };
                list(&meta, ino, json).await
            }
            SnapshotAction::Delete { dir, name } => {
                let ino = resolve_dir(&meta, &dir).await?;
                let op = Op::SnapshotDelete {
                    dir: ino,
                    name: name.as_bytes().to_vec(),
                };
                write(&meta, op).await.with_context(|| {
                    format!("cannot delete snapshot {name:?} of {dir} (see `tessera snapshot list {dir}`)")
                })?;
                println!("{dir}: snapshot {name} deleted");
                Ok(())
            }
            SnapshotAction::Restore {
                dir,
                name,
                path,
                to,
            } => restore(&meta, &dir, &name, path.as_deref(), to.as_deref()).await,
        }
    })
}

/// Waits until the leader has copied the whole snapshot (at once for small trees).
async fn wait_copied(meta: &MetaClient, made: SnapshotEntry) -> anyhow::Result<SnapshotEntry> {
    let started = std::time::Instant::now();
    let mut told = started;
    let mut now = made;
    while !now.ready {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let Response::Snapshots(all) = query(meta, Query::Snapshots { dir: Some(now.dir) }).await?
        else {
            bail!("the metadata leader answered the snapshot listing with something else");
        };
        now = all
            .into_iter()
            .find(|s| s.name == now.name)
            .context("the snapshot went away while it was being copied")?;
        if told.elapsed().as_secs() >= 5 {
            eprintln!(
                "copying: {} directories, {} files so far",
                now.dirs, now.files
            );
            told = std::time::Instant::now();
        }
    }
    Ok(now)
}

async fn restore(
    meta: &MetaClient,
    dir: &str,
    name: &str,
    path: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<()> {
    let inside = path.unwrap_or("").trim_matches('/');
    let source = format!("{}/.snapshots/{name}/{inside}", dir.trim_end_matches('/'));
    let from = resolve_dir(meta, &source).await?;
    let target = match (to, inside) {
        (Some(t), _) => t.to_string(),
        (None, "") => bail!("give --to PATH: the whole snapshot cannot go back over {dir}"),
        (None, p) => format!("{}/{p}", dir.trim_end_matches('/')),
    };
    let (parent, new_name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
    if new_name.is_empty() {
        bail!("{target:?} ends in \"/\"; give the new path itself, e.g. {target}name");
    }
    let to_parent = resolve_dir(meta, parent).await?;
    let op = Op::SnapshotRestore {
        from,
        to_parent,
        to_name: new_name.as_bytes().to_vec(),
    };
    write(meta, op)
        .await
        .with_context(|| format!("cannot restore {source} as {target}"))?;
    println!("restored {source} as {target}");
    Ok(())
}

fn path_of(s: &SnapshotEntry) -> String {
    match &s.dir_path {
        Some(p) => String::from_utf8_lossy(p).into_owned(),
        None => format!("(directory {}, no longer reachable)", s.dir),
    }
}

fn describe(s: &SnapshotEntry) -> String {
    format!(
        "{}/.snapshots/{}: {} directories, {} files, {}",
        path_of(s).trim_end_matches('/'),
        String::from_utf8_lossy(&s.name),
        s.dirs,
        s.files,
        units::bytes(s.bytes)
    )
}

fn to_json(s: &SnapshotEntry) -> serde_json::Value {
    serde_json::json!({
        "dir": path_of(s),
        "dir_ino": s.dir,
        "name": String::from_utf8_lossy(&s.name),
        "root_ino": s.root,
        "created_ns": s.created_ns,
        "dirs": s.dirs,
        "files": s.files,
        "bytes": s.bytes,
        "ready": s.ready,
    })
}

async fn list(meta: &MetaClient, dir: Option<u64>, json: bool) -> anyhow::Result<()> {
    let Response::Snapshots(all) = query(meta, Query::Snapshots { dir }).await? else {
        bail!("the metadata leader answered the snapshot listing with something else");
    };
    if json {
        for s in &all {
            println!("{}", to_json(s));
        }
        return Ok(());
    }
    if all.is_empty() {
        println!("no snapshots (take one with `tessera snapshot create DIR NAME`)");
        return Ok(());
    }
    println!(
        "{:<16} {:>8} {:>8} {:>10}  snapshot",
        "taken", "dirs", "files", "bytes"
    );
    for s in &all {
        let taken = if s.ready {
            age(s.created_ns)
        } else {
            "(copying)".to_string()
        };
        println!(
            "{:<16} {:>8} {:>8} {:>10}  {}/.snapshots/{}",
            taken,
            s.dirs,
            s.files,
            units::bytes(s.bytes),
            path_of(s).trim_end_matches('/'),
            String::from_utf8_lossy(&s.name)
        );
    }
    Ok(())
}
