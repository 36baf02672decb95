//! The model's answers to queries, and the tree walk for the final comparison.

use super::*;
use std::collections::BTreeSet;
use tessera_namespace::{GcItem, Query, Response};
use tessera_proto::meta::StripeEntry;

impl Model {
    // ----- queries -----

    pub fn query(&self, q: &Query) -> Reply {
        match q {
            // "." and "..": how the kernel resolves a file handle (FUSE export support).
            Query::Lookup { parent, name } if name == b"." => {
                self.node(*parent)?;
                Ok(Response::Attr(self.attr(*parent)))
            }
            Query::Lookup { parent, name } if name == b".." => {
                let up = self.dir(*parent)?.parent;
                Ok(Response::Attr(self.attr(up)))
            }
            Query::Lookup { parent, name } => {
                name_ok(name)?;
                self.dir(*parent)?;
                let (c, _) = self.entry(*parent, name).ok_or(FsError::NotFound)?;
                Ok(Response::Attr(self.attr(c)))
            }
            Query::GetAttr { ino } => {
                self.node(*ino)?;
                Ok(Response::Attr(self.attr(*ino)))
            }
            Query::ReadDir {
                ino,
                after,
                limit,
                plus,
            } => {
                let d = self.live_dir(*ino)?;
                let mut all = vec![(b".".to_vec(), *ino, 1u64), (b"..".to_vec(), d.parent, 2)];
                let mut real: Vec<(Vec<u8>, Ino, u64)> = d
                    .entries
                    .iter()
                    .map(|(n, (i, c))| (n.clone(), *i, *c))
                    .collect();
                real.sort_by_key(|e| e.2);
                all.extend(real);
                let out = all
                    .into_iter()
                    .filter(|e| e.2 > *after)
                    .take(*limit as usize)
                    .map(|(name, i, cookie)| DirEntry {
                        name,
                        ino: i,
                        kind: self.nodes[&i].kind,
                        cookie,
                        attr: plus.then(|| self.attr(i)),
                    })
                    .collect();
                Ok(Response::Entries(out))
            }
            Query::ReadLink { ino } => {
                let n = self.node(*ino)?;
                if n.kind != FileKind::Symlink {
                    return Err(FsError::Invalid);
                }
                Ok(Response::Target(n.target.clone()))
            }
            Query::GetXattr { ino, name } => {
                xname_ok(name)?;
                let n = self.node(*ino)?;
                n.xattrs
                    .get(name)
                    .cloned()
                    .map(Response::Xattr)
                    .ok_or(FsError::NoData)
            }
            Query::ListXattr { ino } => {
                let n = self.node(*ino)?;
                Ok(Response::XattrNames(n.xattrs.keys().cloned().collect()))
            }
            Query::StatFs {
                total_bytes,
                total_files,
            } => {
                let stored: u64 = self
                    .stripes
                    .values()
                    .map(|s| s.layout.shard_len * (s.layout.k as u64 + s.layout.m as u64))
                    .sum();
                let blocks = total_bytes / 4096;
                let free = blocks.saturating_sub(stored.div_ceil(4096));
                Ok(Response::StatFs(StatFs {
                    blocks,
                    bfree: free,
                    bavail: free,
                    files: *total_files,
                    ffree: total_files.saturating_sub(self.nodes.len() as u64),
                    bsize: 4096,
                    namelen: 255,
                    frsize: 4096,
                    reserved_bytes: 0,
                }))
            }
            Query::Layout { ino, first, last } => {
                let n = self.node(*ino)?;
                match n.kind {
                    FileKind::Regular => {}
                    FileKind::Directory => return Err(FsError::IsDir),
                    _ => return Err(FsError::Invalid),
                }
                if first > last {
                    return Err(FsError::Invalid);
                }
                let chunks: Vec<ChunkLayout> = n
                    .chunks
                    .range(*first..=*last)
                    .map(|(i, s)| ChunkLayout {
                        index: *i,
                        slices: s.clone(),
                    })
                    .collect();
                let ids: BTreeSet<StripeId> = chunks
                    .iter()
                    .flat_map(|c| c.slices.iter().filter_map(|s| s.data.map(|r| r.stripe)))
                    .collect();
                let stripes = ids
                    .into_iter()
                    .map(|id| StripeInfo {
                        id,
                        layout: self.stripes[&id].layout.clone(),
                    })
                    .collect();
                Ok(Response::Layout(FileLayout {
                    size: n.size,
                    chunks,
                    stripes,
                }))
            }
            Query::GetLock {
                ino,
                session,
                owner,
                flavor,
                kind,
                start,
                end,
            } => {
                if *kind == LockKind::Unlock {
                    return Err(FsError::Invalid);
                }
                let (start, end) = match flavor {
                    LockFlavor::Flock => (0, u64::MAX),
                    LockFlavor::Posix => (*start, *end),
                };
                if start > end {
                    return Err(FsError::Invalid);
                }
                self.node(*ino)?;
                Ok(Response::Lock(self.conflict(
                    *ino, *flavor, *session, *owner, *kind, start, end,
                )))
            }
            Query::GcQueue { limit } => {
                let mut q: Vec<(i64, StripeId)> = self
                    .stripes
                    .iter()
                    .filter_map(|(id, s)| s.queued_at.map(|t| (t, *id)))
                    .collect();
                q.sort();
                Ok(Response::Gc(
                    q.into_iter()
                        .take(*limit as usize)
                        .map(|(t, id)| GcItem {
                            stripe: StripeInfo {
                                id,
                                layout: self.stripes[&id].layout.clone(),
                            },
                            queued_at: t,
                            claimed: self.stripes[&id].claimed,
                        })
                        .collect(),
                ))
            }
            Query::Stripes { after, limit } => Ok(Response::Stripes(
                self.stripes
                    .iter()
                    .filter(|(id, _)| after.is_none_or(|a| **id > a))
                    .take(*limit as usize)
                    .map(|(id, s)| StripeEntry {
                        stripe: StripeInfo {
                            id: *id,
                            layout: s.layout.clone(),
                        },
                        refcount: s.refs,
                        deleting: s.claimed,
                    })
                    .collect(),
            )),
            // The model keeps refcounts by construction; the core must agree: no mismatch.
            Query::RefcountCheck { .. } => Ok(Response::RefcountMismatches(Vec::new())),
            // Its xattr names are `user.*`: no ACL is ever stored.
            Query::AclsUsed => Ok(Response::Flag(false)),
            // Never generated (see the trash ops in `ops.rs`).
            Query::Trash { .. } | Query::CapHolders { .. } => Err(FsError::NotPermitted),
            // Never generated (see the quota ops in `ops.rs`).
            Query::Quotas | Query::StatFsAt { .. } | Query::Snapshots { .. } => {
                Err(FsError::NotPermitted)
            }
        }
    }

    /// Every path reachable from the root with its attributes, in name order.
    pub fn tree(&self) -> Vec<(Vec<u8>, Attr)> {
        let mut out = Vec::new();
        if !self.nodes.contains_key(&ROOT_INO) {
            return out;
        }
        let mut stack = vec![(b"/".to_vec(), ROOT_INO)];
        while let Some((path, ino)) = stack.pop() {
            out.push((path.clone(), self.attr(ino)));
            for (name, (c, _)) in &self.nodes[&ino].entries {
                let mut p = path.clone();
                if p.len() > 1 {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                if self.nodes[c].kind == FileKind::Directory {
                    stack.push((p, *c));
                } else {
                    out.push((p, self.attr(*c)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn max_ino(&self) -> u64 {
        self.next_ino
    }
}
