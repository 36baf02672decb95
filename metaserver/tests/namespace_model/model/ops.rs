//! The model's mutations: one match arm per command, plus the longer operations.

use super::*;
use std::collections::btree_map::Entry;
use tessera_namespace::{Op, Response};

impl Model {
    /// An access of `ino` at `now`: `relatime`, or always if `strict`.
    fn access(&mut self, ino: Ino, strict: bool, now: i64) {
        const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;
        let Some(n) = self.nodes.get_mut(&ino) else {
            return;
        };
        let relatime =
            n.atime <= n.mtime || n.atime <= n.ctime || now.saturating_sub(n.atime) >= DAY_NS;
        if strict || relatime {
            n.atime = now;
        }
    }

    /// Drops one open of `ino` by session `s`.
    fn release(&mut self, s: u64, ino: Ino, now: i64) -> Result<(), FsError> {
        let sess = self.sessions.get_mut(&s).expect("session");
        let count = sess.opens.get_mut(&ino).ok_or(FsError::BadHandle)?;
        *count -= 1;
        if *count == 0 {
            sess.opens.remove(&ino);
            self.locks
                .retain(|(i, _, ls, _), _| !(*i == ino && *ls == s));
        }
        self.maybe_free(ino, now);
        Ok(())
    }

    pub(super) fn exec(&mut self, cmd: &Command) -> Reply {
        let now = cmd.now_ns;
        match &cmd.op {
            Op::Format { uid, gid, perm } => {
                if self.nodes.contains_key(&ROOT_INO) {
                    return Err(FsError::Exists);
                }
                self.next_ino = ROOT_INO;
                self.next_session = 1;
                let (ino, mut n) = self.new_node(FileKind::Directory, *perm, *uid, *gid, now);
                n.parent = ino;
                self.nodes.insert(ino, n);
                Ok(Response::Attr(self.attr(ino)))
            }
            Op::Mknod {
                parent,
                name,
                kind,
                perm,
                uid,
                gid,
                rdev,
                open,
            } => {
                if matches!(kind, FileKind::Directory | FileKind::Symlink) {
                    return Err(FsError::Invalid);
                }
                let session = if *open {
                    Some(Self::session_of(cmd)?)
                } else {
                    None
                };
                name_ok(name)?;
                self.live_dir(*parent)?;
                if self.entry(*parent, name).is_some() {
                    return Err(FsError::Exists);
                }
                let (ino, mut n) = self.new_node(*kind, *perm, *uid, *gid, now);
                if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                    n.rdev = *rdev;
                }
                self.nodes.insert(ino, n);
                self.link_in(*parent, name, ino, now);
                if let Some(s) = session {
                    *self
                        .sessions
                        .get_mut(&s)
                        .expect("session")
                        .opens
                        .entry(ino)
                        .or_default() += 1;
                }
                Ok(Response::Attr(self.attr(ino)))
            }
            // The model knows no ACLs (its xattr names are `user.*`): the umask always
            // applies, and the rest is mknod or mkdir.
            Op::MakeNode {
                parent,
                name,
                kind,
                perm,
                umask,
                uid,
                gid,
                rdev,
                open,
            } => {
                let (perm, name, parent) = (perm & !umask, name.clone(), *parent);
                let op = match (kind, open) {
                    (FileKind::Directory, true) => return Err(FsError::Invalid),
                    (FileKind::Directory, false) => Op::Mkdir {
                        parent,
                        name,
                        perm,
                        uid: *uid,
                        gid: *gid,
                    },
                    _ => Op::Mknod {
                        parent,
                        name,
                        kind: *kind,
                        perm,
                        uid: *uid,
                        gid: *gid,
                        rdev: *rdev,
                        open: *open,
                    },
                };
                self.exec(&Command { op, ..cmd.clone() })
            }
            Op::Mkdir {
                parent,
                name,
                perm,
                uid,
                gid,
            } => {
                name_ok(name)?;
                self.live_dir(*parent)?;
                if self.entry(*parent, name).is_some() {
                    return Err(FsError::Exists);
                }
                let (ino, mut n) = self.new_node(FileKind::Directory, *perm, *uid, *gid, now);
                n.parent = *parent;
                self.nodes.insert(ino, n);
                self.link_in(*parent, name, ino, now);
                Ok(Response::Attr(self.attr(ino)))
            }
            Op::Symlink {
                parent,
                name,
                target,
                uid,
                gid,
            } => {
                name_ok(name)?;
                if target.is_empty() {
                    return Err(FsError::NotFound);
                }
                if target.contains(&0) {
                    return Err(FsError::Invalid);
                }
                if target.len() > 4095 {
                    return Err(FsError::NameTooLong);
                }
                self.live_dir(*parent)?;
                if self.entry(*parent, name).is_some() {
                    return Err(FsError::Exists);
                }
                let (ino, mut n) = self.new_node(FileKind::Symlink, 0o777, *uid, *gid, now);
                n.target = target.clone();
                self.nodes.insert(ino, n);
                self.link_in(*parent, name, ino, now);
                Ok(Response::Attr(self.attr(ino)))
            }
            Op::Link {
                ino,
                new_parent,
                new_name,
            } => {
                name_ok(new_name)?;
                self.node(*ino)?;
                if self.nlink(*ino) == 0 {
                    return Err(FsError::NotFound);
                }
                if self.nodes[ino].kind == FileKind::Directory {
                    return Err(FsError::NotPermitted);
                }
                self.live_dir(*new_parent)?;
                if self.entry(*new_parent, new_name).is_some() {
                    return Err(FsError::Exists);
                }
                self.link_in(*new_parent, new_name, *ino, now);
                self.nodes.get_mut(ino).expect("node").ctime = now;
                Ok(Response::Attr(self.attr(*ino)))
            }
            Op::Unlink { parent, name } => {
                name_ok(name)?;
                self.dir(*parent)?;
                let (child, _) = self.entry(*parent, name).ok_or(FsError::NotFound)?;
                if self.nodes[&child].kind == FileKind::Directory {
                    return Err(FsError::IsDir);
                }
                self.unlink_from(*parent, name, now);
                self.lost_name(child, now);
                Ok(Response::Done)
            }
            Op::Rmdir { parent, name } => {
                name_ok(name)?;
                self.dir(*parent)?;
                let (child, _) = self.entry(*parent, name).ok_or(FsError::NotFound)?;
                if self.nodes[&child].kind != FileKind::Directory {
                    return Err(FsError::NotDir);
                }
                if !self.nodes[&child].entries.is_empty() {
                    return Err(FsError::NotEmpty);
                }
                self.unlink_from(*parent, name, now);
                self.lost_name(child, now);
                Ok(Response::Done)
            }
            Op::Rename {
                parent,
                name,
                new_parent,
                new_name,
                mode,
            } => self.rename(*parent, name, *new_parent, new_name, *mode, now),
            Op::SetAttr { ino, set } => self.setattr(*ino, set, now),
            Op::SetXattr {
                ino,
                name,
                value,
                mode,
            } => {
                xname_ok(name)?;
                if value.len() > 65536 {
                    return Err(FsError::TooBig);
                }
                self.node(*ino)?;
                let n = self.nodes.get_mut(ino).expect("node");
                let exists = n.xattrs.contains_key(name);
                match mode {
                    XattrMode::Create if exists => return Err(FsError::Exists),
                    XattrMode::Replace if !exists => return Err(FsError::NoData),
                    _ => {}
                }
                n.xattrs.insert(name.clone(), value.clone());
                n.ctime = now;
                Ok(Response::Done)
            }
            Op::RemoveXattr { ino, name } => {
                xname_ok(name)?;
                self.node(*ino)?;
                let n = self.nodes.get_mut(ino).expect("node");
                if n.xattrs.remove(name).is_none() {
                    return Err(FsError::NoData);
                }
                n.ctime = now;
                Ok(Response::Done)
            }
            Op::Open { ino } => {
                let s = Self::session_of(cmd)?;
                self.node(*ino)?;
                if self.nlink(*ino) == 0 {
                    return Err(FsError::NotFound);
                }
                *self
                    .sessions
                    .get_mut(&s)
                    .expect("session")
                    .opens
                    .entry(*ino)
                    .or_default() += 1;
                Ok(Response::Attr(self.attr(*ino)))
            }
            Op::Release { ino } => {
                let s = Self::session_of(cmd)?;
                self.release(s, *ino, now)?;
                Ok(Response::Done)
            }
            Op::Accessed { inos, strict } => {
                for ino in inos {
                    self.access(*ino, *strict, now);
                }
                Ok(Response::Done)
            }
            Op::DelegateInos { count } => {
                let s = Self::session_of(cmd)?;
                if *count == 0 || *count > 65_536 {
                    return Err(FsError::Invalid);
                }
                let first = self.next_ino;
                self.next_ino += u64::from(*count);
                let end = self.next_ino;
                let sess = self.sessions.get_mut(&s).expect("session");
                sess.ranges.insert(first, (first, end));
                Ok(Response::Inos {
                    first,
                    count: *count,
                })
            }
            Op::MakeNodeAs { ino, node } => {
                if !matches!(**node, Op::MakeNode { .. } | Op::Symlink { .. }) {
                    return Err(FsError::Invalid);
                }
                let s = Self::session_of(cmd)?;
                let sess = self.sessions.get_mut(&s).expect("session");
                let range = sess
                    .ranges
                    .iter_mut()
                    .find(|(first, (_, end))| (**first..*end).contains(ino));
                match range {
                    Some((_, (next, _))) if *ino >= *next => *next = *ino + 1,
                    _ => return Err(FsError::Invalid),
                }
                sess.ranges.retain(|_, (next, end)| next < end);
                self.make_as = Some(*ino);
                let made = self.exec(&Command {
                    op: (**node).clone(),
                    ..cmd.clone()
                });
                self.make_as = None;
                made
            }
            Op::Batch { ops } => {
                let replies = ops
                    .iter()
                    .map(|op| match op {
                        Op::Batch { .. } => Err(FsError::Invalid),
                        _ => self.apply(&Command {
                            seq: 0,
                            seq_floor: 0,
                            op: op.clone(),
                            ..cmd.clone()
                        }),
                    })
                    .collect();
                Ok(Response::Batch(replies))
            }
            Op::AccessedAt { at, strict } => {
                for &(ino, time) in at {
                    if self.nodes.get(&ino).is_some_and(|n| n.atime < time) {
                        self.access(ino, *strict, time);
                    }
                }
                Ok(Response::Done)
            }
            Op::OpenToRead { ino, strict } => {
                let open = Command {
                    op: Op::Open { ino: *ino },
                    ..cmd.clone()
                };
                self.exec(&open)?;
                self.access(*ino, *strict, now);
                Ok(Response::Attr(self.attr(*ino)))
            }
            Op::ReleaseMany { inos } => {
                let s = Self::session_of(cmd)?;
                for ino in inos {
                    // Not held: skipped, the batch goes on.
                    let _ = self.release(s, *ino, now);
                }
                Ok(Response::Done)
            }
            Op::CommitSlice {
                ino,
                slices,
                stripes,
            } => self.commit(*ino, slices, stripes, now),
            Op::SetLock {
                ino,
                owner,
                flavor,
                kind,
                start,
                end,
                pid: _,
            } => {
                let s = Self::session_of(cmd)?;
                self.set_lock(s, *ino, *owner, *flavor, *kind, *start, *end)
            }
            Op::OpenSession {
                client: _,
                lease_ns,
            } => {
                let id = self.next_session.max(1);
                self.next_session = id + 1;
                let lease_until = now.saturating_add(*lease_ns);
                self.sessions.insert(
                    id,
                    Sess {
                        lease_until,
                        opens: BTreeMap::new(),
                        replies: BTreeMap::new(),
                        ranges: BTreeMap::new(),
                    },
                );
                Ok(Response::Session { id, lease_until })
            }
            Op::RenewSession { lease_ns } => {
                let s = Self::session_of(cmd)?;
                let sess = self.sessions.get_mut(&s).expect("session");
                sess.lease_until = sess.lease_until.max(now.saturating_add(*lease_ns));
                Ok(Response::Session {
                    id: s,
                    lease_until: sess.lease_until,
                })
            }
            Op::CloseSession => {
                let s = Self::session_of(cmd)?;
                self.end_session(s, now);
                Ok(Response::Done)
            }
            Op::ExpireSession { session } => {
                let sess = self.sessions.get(session).ok_or(FsError::NotFound)?;
                if sess.lease_until > now {
                    return Err(FsError::Busy);
                }
                self.end_session(*session, now);
                Ok(Response::Done)
            }
            Op::GcClaim { stripe } => {
                let st = self.stripes.get_mut(stripe).ok_or(FsError::NotFound)?;
                if st.refs > 0 {
                    return Err(FsError::Busy);
                }
                st.claimed = true;
                Ok(Response::Done)
            }
            Op::GcDone { stripe } => {
                let st = self.stripes.get(stripe).ok_or(FsError::NotFound)?;
                if !st.claimed {
                    return Err(FsError::Invalid);
                }
                self.stripes.remove(stripe);
                Ok(Response::Done)
            }
            Op::MoveShard {
                stripe,
                index,
                from,
                to,
            } => {
                let st = self.stripes.get_mut(stripe).ok_or(FsError::NotFound)?;
                if st.claimed {
                    return Err(FsError::Stale);
                }
                let i = *index as usize;
                let Some(place) = st.layout.shards.get(i) else {
                    return Err(FsError::Invalid);
                };
                if place.server != *from {
                    return Err(FsError::Stale);
                }
                let taken = st
                    .layout
                    .shards
                    .iter()
                    .enumerate()
                    .any(|(j, p)| j != i && p.server == *to);
                if taken {
                    return Err(FsError::Invalid);
                }
                st.layout.shards[i].server = *to;
                Ok(Response::Done)
            }
            // Backups are tested in tessera_namespace::dump, not by the model.
            Op::LoadImage { .. } => Err(FsError::NotPermitted),
            // Never generated: the model's namespace keeps retention 0 (no trash), which is
            // what a namespace no one set a retention on does; the trash has its own tests
            // in the namespace crate (`trash.rs`).
            Op::SetTrashRetention { .. } | Op::RestoreTrash { .. } | Op::PurgeTrash { .. } => {
                Err(FsError::NotPermitted)
            }
            // Not generated: caps change what mounts may cache, never the file system, and
            // their conflicts are tested in the namespace crate (`caps.rs`).
            Op::GrantCaps { .. } | Op::ReleaseCaps { .. } => Err(FsError::NotPermitted),
            // Never generated: quotas have their own recounting tests in the namespace crate
            // (`quota_tests.rs`); without one set, accounting changes nothing visible.
            Op::SetQuota { .. } | Op::UnsetQuota { .. } => Err(FsError::NotPermitted),
            // Never generated: snapshots have their own tests (`snapshot_tests.rs`).
            Op::SnapshotCreate { .. }
            | Op::SnapshotStep { .. }
            | Op::SnapshotDelete { .. }
            | Op::SnapshotRestore { .. } => Err(FsError::NotPermitted),
            // Not generated (the model keeps no inode flags; see `flags.rs`'s unit tests).
            Op::SetFlags { .. } | Op::MakeTmpfile { .. } | Op::Reserve { .. } => {
                Err(FsError::NotSupported)
            }
        }
    }

    fn end_session(&mut self, s: u64, now: i64) {
        let sess = self.sessions.remove(&s).expect("session");
        self.locks.retain(|(_, _, ls, _), _| *ls != s);
        for ino in sess.opens.keys() {
            self.maybe_free(*ino, now);
        }
    }

    fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        mode: RenameMode,
        now: i64,
    ) -> Reply {
        name_ok(name)?;
        name_ok(new_name)?;
        self.dir(parent)?;
        self.live_dir(new_parent)?;
        let (src, src_cookie) = self.entry(parent, name).ok_or(FsError::NotFound)?;
        let dst = self.entry(new_parent, new_name);
        match (mode, dst) {
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            _ => {}
        }
        let is_dir = |m: &Model, i: Ino| m.nodes[&i].kind == FileKind::Directory;
        if is_dir(self, src) && self.within(src, new_parent) {
            return Err(FsError::Invalid);
        }
        if let Some((d, _)) = dst
            && is_dir(self, d)
            && self.within(d, parent)
        {
            return Err(if mode == RenameMode::Exchange {
                FsError::Invalid
            } else {
                FsError::NotEmpty
            });
        }
        if dst.is_some_and(|(d, _)| d == src) {
            return Ok(Response::Done);
        }
        if mode == RenameMode::Exchange {
            let (d, dst_cookie) = dst.expect("checked");
            self.nodes
                .get_mut(&parent)
                .expect("dir")
                .entries
                .insert(name.to_vec(), (d, src_cookie));
            self.nodes
                .get_mut(&new_parent)
                .expect("dir")
                .entries
                .insert(new_name.to_vec(), (src, dst_cookie));
            for dir in [parent, new_parent] {
                let n = self.nodes.get_mut(&dir).expect("dir");
                n.mtime = now;
                n.ctime = now;
            }
            for (i, p) in [(src, new_parent), (d, parent)] {
                let n = self.nodes.get_mut(&i).expect("node");
                if n.kind == FileKind::Directory {
                    n.parent = p;
                }
                n.ctime = now;
            }
            return Ok(Response::Done);
        }
        if let Some((d, _)) = dst {
            match (is_dir(self, src), is_dir(self, d)) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                _ => {}
            }
            if !self.nodes[&d].entries.is_empty() {
                return Err(FsError::NotEmpty);
            }
        }
        self.unlink_from(parent, name, now);
        if let Some((d, _)) = dst {
            self.unlink_from(new_parent, new_name, now);
            self.lost_name(d, now);
        }
        self.link_in(new_parent, new_name, src, now);
        let n = self.nodes.get_mut(&src).expect("node");
        if n.kind == FileKind::Directory {
            n.parent = new_parent;
        }
        n.ctime = now;
        Ok(Response::Done)
    }

    fn setattr(&mut self, ino: Ino, set: &SetAttr, now: i64) -> Reply {
        let kind = self.node(ino)?.kind;
        if let Some(size) = set.size {
            match kind {
                FileKind::Regular => {}
                FileKind::Directory => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid),
            }
            if size > FILE_SIZE_MAX {
                return Err(FsError::FileTooLarge);
            }
            self.truncate(ino, size, now);
        }
        let n = self.nodes.get_mut(&ino).expect("node");
        let mut changed = false;
        if let Some(p) = set.perm {
            n.perm = p & 0o7777;
            changed = true;
        }
        if let Some(u) = set.uid {
            n.uid = u;
            changed = true;
        }
        if let Some(g) = set.gid {
            n.gid = g;
            changed = true;
        }
        if set.size.is_some() {
            n.mtime = now;
            changed = true;
        }
        for (field, how) in [(&mut n.atime, set.atime), (&mut n.mtime, set.mtime)] {
            match how {
                SetTime::Omit => {}
                SetTime::Now => {
                    *field = now;
                    changed = true;
                }
                SetTime::At(t) => {
                    *field = t;
                    changed = true;
                }
            }
        }
        if changed {
            n.ctime = now;
        }
        Ok(Response::Attr(self.attr(ino)))
    }

    /// Keeps only bytes below `size`, slice by slice.
    fn truncate(&mut self, ino: Ino, size: u64, now: i64) {
        let old = std::mem::take(&mut self.nodes.get_mut(&ino).expect("node").chunks);
        let mut kept = BTreeMap::new();
        let mut dropped = Vec::new();
        for (idx, slices) in old {
            let base = idx * CHUNK_SIZE;
            let mut keep = Vec::new();
            for mut s in slices {
                if base + s.offset >= size {
                    dropped.push(s);
                    continue;
                }
                if base + s.offset + s.len > size {
                    s.len = size - base - s.offset;
                }
                keep.push(s);
            }
            if !keep.is_empty() {
                kept.insert(idx, keep);
            }
        }
        for s in &dropped {
            self.unref(s, now);
        }
        let n = self.nodes.get_mut(&ino).expect("node");
        n.chunks = kept;
        n.size = size;
    }

    /// Lays `new` over a chunk: older slices lose the bytes it covers (one cut in two
    /// becomes two slices, each holding a stripe reference), so the chunk's slices stay
    /// disjoint, in offset order.
    fn lay(&mut self, ino: Ino, chunk: u64, new: Slice, now: i64) {
        let piece = |s: &Slice, from: u64, to: u64| Slice {
            offset: from,
            len: to - from,
            data: s.data.map(|r| StripeRef {
                stripe: r.stripe,
                offset: r.offset + from - s.offset,
            }),
        };
        let (a, b) = (new.offset, new.offset + new.len);
        let n = self.nodes.get_mut(&ino).expect("node");
        let old = n.chunks.remove(&chunk).unwrap_or_default();
        let mut out = Vec::new();
        let (mut split, mut dropped) = (Vec::new(), Vec::new());
        for s in old {
            let end = s.offset + s.len;
            if end <= a || s.offset >= b {
                out.push(s);
                continue;
            }
            let head = (s.offset < a).then(|| piece(&s, s.offset, a));
            let tail = (end > b).then(|| piece(&s, b, end));
            match (head, tail) {
                (None, None) => dropped.push(s),
                (Some(h), Some(t)) => {
                    out.extend([h, t]);
                    split.push(s);
                }
                (Some(p), None) | (None, Some(p)) => out.push(p),
            }
        }
        out.push(new);
        out.sort_by_key(|s| s.offset);
        n.chunks.insert(chunk, out);
        for s in split {
            if let Some(r) = s.data {
                let st = self.stripes.get_mut(&r.stripe).expect("stripe");
                st.refs += 1;
                st.queued_at = None;
            }
        }
        for s in &dropped {
            self.unref(s, now);
        }
    }

    fn commit(&mut self, ino: Ino, slices: &[ChunkSlice], known: &[StripeInfo], now: i64) -> Reply {
        match self.node(ino)?.kind {
            FileKind::Regular => {}
            FileKind::Directory => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid),
        }
        let mut size = self.nodes[&ino].size;
        for cs in slices {
            let s = cs.slice;
            if s.len == 0 || s.offset + s.len > CHUNK_SIZE {
                return Err(FsError::Invalid);
            }
            let end = (cs.chunk as u128) * (CHUNK_SIZE as u128) + (s.offset + s.len) as u128;
            if end > FILE_SIZE_MAX as u128 {
                return Err(FsError::FileTooLarge);
            }
            if let Some(r) = s.data {
                if let Entry::Vacant(slot) = self.stripes.entry(r.stripe) {
                    let info = known
                        .iter()
                        .find(|i| i.id == r.stripe)
                        .ok_or(FsError::Invalid)?;
                    let l = &info.layout;
                    if l.k == 0
                        || l.shards.len() != l.k as usize + l.m as usize
                        || l.data_len > l.shard_len * l.k as u64
                    {
                        return Err(FsError::Invalid);
                    }
                    slot.insert(StripeM {
                        layout: l.clone(),
                        refs: 0,
                        claimed: false,
                        queued_at: None,
                    });
                }
                let st = self.stripes.get_mut(&r.stripe).expect("stripe");
                if st.claimed {
                    return Err(FsError::WouldBlock);
                }
                st.refs += 1;
                st.queued_at = None;
                if r.offset + s.len > st.layout.data_len {
                    return Err(FsError::Invalid);
                }
            }
            self.lay(ino, cs.chunk, s, now);
            size = size.max(end as u64);
        }
        let n = self.nodes.get_mut(&ino).expect("node");
        n.size = size;
        n.mtime = now;
        n.ctime = now;
        Ok(Response::Attr(self.attr(ino)))
    }
}
