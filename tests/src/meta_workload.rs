//! A namespace workload whose every step must succeed exactly once, so a change applied
//! twice (or lost) shows up as a wrong reply or a wrong final tree.
//!
//! Worker `w` works in its own directory `w{w}`. Group `k` is five operations:
//! create `f{k}`, chmod it 0600, hard-link it as `l{k}`, rename `f{k}` to `g{k}`, unlink
//! `l{k}`. Applied twice, create and link would answer EEXIST and rename and unlink ENOENT;
//! so every reply must be a success, and afterwards the directory must hold exactly
//! `g{0..groups}`, each with one link and mode 0600.

use std::collections::BTreeSet;
use std::sync::Arc;
use tessera_client::{MetaClient, MetaClientError};
use tessera_proto::fs::{Attr, FileKind, FsError, Ino, ROOT_INO, RenameMode, SetAttr};
use tessera_proto::meta::{Op, Query, Response};

/// What one worker saw go wrong (empty when everything held).
pub type Problems = Vec<String>;

fn attr(r: Result<Result<Response, FsError>, MetaClientError>, what: &str) -> Result<Attr, String> {
    match r {
        Ok(Ok(Response::Attr(a))) => Ok(a),
        other => Err(format!("{what}: {other:?}")),
    }
}

fn done(r: Result<Result<Response, FsError>, MetaClientError>, what: &str) -> Result<(), String> {
    match r {
        Ok(Ok(_)) => Ok(()),
        other => Err(format!("{what}: {other:?}")),
    }
}

/// Creates the worker's directory; returns its inode.
pub async fn worker_dir(client: &MetaClient, w: usize) -> Result<Ino, String> {
    let r = client
        .write(Op::Mkdir {
            parent: ROOT_INO,
            name: format!("w{w}").into_bytes(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        })
        .await;
    Ok(attr(r, "mkdir")?.ino)
}

/// Runs one group of five operations in `dir`.
pub async fn group(client: &MetaClient, dir: Ino, k: usize) -> Result<(), String> {
    let name = |p: &str| format!("{p}{k}").into_bytes();
    let f = attr(
        client
            .write(Op::Mknod {
                parent: dir,
                name: name("f"),
                kind: FileKind::Regular,
                perm: 0o644,
                uid: 0,
                gid: 0,
                rdev: 0,
                open: false,
            })
            .await,
        "create",
    )?;
    done(
        client
            .write(Op::SetAttr {
                ino: f.ino,
                set: SetAttr {
                    perm: Some(0o600),
                    ..SetAttr::default()
                },
            })
            .await,
        "chmod",
    )?;
    let linked = attr(
        client
            .write(Op::Link {
                ino: f.ino,
                new_parent: dir,
                new_name: name("l"),
            })
            .await,
        "link",
    )?;
    if linked.nlink != 2 {
        return Err(format!("link: nlink {} after one link", linked.nlink));
    }
    done(
        client
            .write(Op::Rename {
                parent: dir,
                name: name("f"),
                new_parent: dir,
                new_name: name("g"),
                mode: RenameMode::Replace,
            })
            .await,
        "rename",
    )?;
    done(
        client
            .write(Op::Unlink {
                parent: dir,
                name: name("l"),
            })
            .await,
        "unlink",
    )
}

/// Runs `groups` groups for worker `w`; returns how many completed and what went wrong.
pub async fn run_worker(client: Arc<MetaClient>, w: usize, groups: usize) -> (usize, Problems) {
    let dir = match worker_dir(&client, w).await {
        Ok(d) => d,
        Err(e) => return (0, vec![format!("worker {w}: {e}")]),
    };
    for k in 0..groups {
        if let Err(e) = group(&client, dir, k).await {
            return (k, vec![format!("worker {w} group {k}: {e}")]);
        }
    }
    (groups, Vec::new())
}

/// Checks worker `w`'s directory after `groups` completed groups.
pub async fn verify_worker(client: &MetaClient, w: usize, groups: usize) -> Problems {
    let mut problems = Vec::new();
    let dir = match client
        .read(Query::Lookup {
            parent: ROOT_INO,
            name: format!("w{w}").into_bytes(),
        })
        .await
    {
        Ok(Ok(Response::Attr(a))) => a.ino,
        other => return vec![format!("worker {w}: lookup of its directory: {other:?}")],
    };
    let mut names = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = client
            .read(Query::ReadDir {
                ino: dir,
                after,
                limit: 1000,
                plus: true,
            })
            .await;
        let entries = match page {
            Ok(Ok(Response::Entries(e))) => e,
            other => return vec![format!("worker {w}: readdir: {other:?}")],
        };
        let Some(last) = entries.last() else { break };
        after = last.cookie;
        for e in entries {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let n = String::from_utf8_lossy(&e.name).into_owned();
            if let Some(a) = &e.attr
                && (a.nlink != 1 || a.perm != 0o600)
            {
                problems.push(format!(
                    "worker {w}: {n} has nlink {} mode {:o}",
                    a.nlink, a.perm
                ));
            }
            if !names.insert(n.clone()) {
                problems.push(format!("worker {w}: {n} listed twice"));
            }
        }
    }
    let expected: BTreeSet<String> = (0..groups).map(|k| format!("g{k}")).collect();
    if names != expected {
        let extra: Vec<_> = names.difference(&expected).take(5).collect();
        let missing: Vec<_> = expected.difference(&names).take(5).collect();
        problems.push(format!("worker {w}: extra {extra:?}, missing {missing:?}"));
    }
    problems
}
