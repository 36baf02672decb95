//! A deliberately simple reference model of the namespace, written independently of the core.
//!
//! It keeps a tree of nodes in plain maps and recomputes what the core stores as bookkeeping:
//! link counts and directory sizes are counted from the tree, ancestry is a depth-first
//! search, rollback of a failed command is a clone of the whole model, and POSIX lock ranges
//! are kept per byte (the generator only locks bytes 0..16). It shares only the public types
//! (`Command`, `Query`, replies) with the code under test, never its logic.

mod locks;
mod ops;
mod queries;

use std::collections::BTreeMap;
use tessera_namespace::{Command, Reply};
use tessera_proto::fs::*;

/// Bytes 0..LOCK_BYTES are the only ones the generator locks with fcntl.
pub const LOCK_BYTES: usize = 16;

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: FileKind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    /// Directories: name -> (child, cookie).
    pub entries: BTreeMap<Vec<u8>, (Ino, u64)>,
    pub next_cookie: u64,
    pub parent: Ino,
    pub target: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Regular files: byte size and slices per chunk.
    pub size: u64,
    pub chunks: BTreeMap<u64, Vec<Slice>>,
}

#[derive(Debug, Clone)]
struct Sess {
    lease_until: i64,
    opens: BTreeMap<Ino, u32>,
    replies: BTreeMap<u64, Reply>,
    /// Delegated inode numbers: first -> (lowest still usable, end).
    ranges: BTreeMap<Ino, (Ino, Ino)>,
}

#[derive(Debug, Clone)]
struct StripeM {
    layout: StripeLayout,
    refs: u64,
    claimed: bool,
    queued_at: Option<i64>,
}

/// Lock owner key: (ino, flavor, session, owner) in the core's key order.
type Owner = (Ino, LockFlavor, u64, u64);

#[derive(Debug, Clone)]
enum Held {
    Flock(LockKind),
    Posix([Option<LockKind>; LOCK_BYTES]),
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub nodes: BTreeMap<Ino, Node>,
    next_ino: u64,
    next_session: u64,
    sessions: BTreeMap<u64, Sess>,
    stripes: BTreeMap<StripeId, StripeM>,
    locks: BTreeMap<Owner, Held>,
    /// The number the create being run makes its inode as (`MakeNodeAs`).
    make_as: Option<Ino>,
}

type R<T> = Result<T, FsError>;

fn name_ok(n: &[u8]) -> R<()> {
    if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
        return Err(FsError::Invalid);
    }
    if n.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

fn xname_ok(n: &[u8]) -> R<()> {
    if n.is_empty() || n.len() > 255 || n.contains(&0) {
        return Err(FsError::OutOfRange);
    }
    Ok(())
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    // ----- derived facts -----

    /// How many directory entries name `ino`.
    fn names_of(&self, ino: Ino) -> usize {
        self.nodes
            .values()
            .flat_map(|n| n.entries.values())
            .filter(|(i, _)| *i == ino)
            .count()
    }

    pub fn nlink(&self, ino: Ino) -> u32 {
        let node = &self.nodes[&ino];
        let names = if ino == ROOT_INO {
            1
        } else {
            self.names_of(ino)
        };
        if node.kind == FileKind::Directory {
            if names == 0 {
                return 0;
            }
            let subdirs = node
                .entries
                .values()
                .filter(|(c, _)| self.nodes[c].kind == FileKind::Directory)
                .count();
            2 + subdirs as u32
        } else {
            names as u32
        }
    }

    fn opens(&self, ino: Ino) -> u32 {
        self.sessions
            .values()
            .filter_map(|s| s.opens.get(&ino))
            .sum()
    }

    pub fn attr(&self, ino: Ino) -> Attr {
        let n = &self.nodes[&ino];
        let size = match n.kind {
            FileKind::Directory => n.entries.len() as u64,
            FileKind::Symlink => n.target.len() as u64,
            FileKind::Regular => n.size,
            _ => 0,
        };
        // st_blocks: every 4 KiB block of the file some slice with data touches, in 512-byte
        // units; a directory is one block.
        let blocks = match n.kind {
            FileKind::Regular => {
                let mut touched = std::collections::BTreeSet::new();
                for (idx, slices) in &n.chunks {
                    for sl in slices.iter().filter(|sl| sl.data.is_some() && sl.len > 0) {
                        let start = idx * tessera_proto::fs::CHUNK_SIZE + sl.offset;
                        touched.extend(start / 4096..(start + sl.len).div_ceil(4096));
                    }
                }
                touched.len() as u64 * 8
            }
            FileKind::Directory => 8,
            _ => 0,
        };
        Attr {
            ino,
            generation: 1,
            kind: n.kind,
            perm: n.perm,
            nlink: self.nlink(ino),
            uid: n.uid,
            gid: n.gid,
            rdev: n.rdev,
            size,
            blocks,
            // The model sends no `SetFlags`: every inode keeps none.
            flags: 0,
            atime_ns: n.atime,
            mtime_ns: n.mtime,
            ctime_ns: n.ctime,
        }
    }

    /// Whether `target` is `top` or anywhere below it (search down from `top`).
    fn within(&self, top: Ino, target: Ino) -> bool {
        if top == target {
            return true;
        }
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            for (c, _) in self.nodes[&d].entries.values() {
                if *c == target {
                    return true;
                }
                if self.nodes[c].kind == FileKind::Directory {
                    stack.push(*c);
                }
            }
        }
        false
    }

    fn node(&self, ino: Ino) -> R<&Node> {
        self.nodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn dir(&self, ino: Ino) -> R<&Node> {
        let n = self.node(ino)?;
        if n.kind != FileKind::Directory {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    fn live_dir(&self, ino: Ino) -> R<&Node> {
        self.dir(ino)?;
        if self.nlink(ino) == 0 {
            return Err(FsError::NotFound);
        }
        self.dir(ino)
    }

    fn entry(&self, dir: Ino, name: &[u8]) -> Option<(Ino, u64)> {
        self.nodes[&dir].entries.get(name).copied()
    }

    // ----- mutations -----

    pub fn apply(&mut self, cmd: &Command) -> Reply {
        if cmd.session != 0 {
            let Some(sess) = self.sessions.get(&cmd.session) else {
                return Err(FsError::Stale);
            };
            if cmd.seq != 0
                && let Some(r) = sess.replies.get(&cmd.seq)
            {
                return r.clone();
            }
        }
        let before = self.clone();
        let reply = self.exec(cmd);
        if reply.is_err() {
            *self = before;
        }
        if cmd.session != 0
            && cmd.seq != 0
            && let Some(sess) = self.sessions.get_mut(&cmd.session)
        {
            sess.replies.insert(cmd.seq, reply.clone());
        }
        reply
    }

    fn new_node(&mut self, kind: FileKind, perm: u16, uid: u32, gid: u32, now: i64) -> (Ino, Node) {
        let ino = match self.make_as.take() {
            Some(ino) => ino,
            None => {
                self.next_ino += 1;
                self.next_ino - 1
            }
        };
        let node = Node {
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            entries: BTreeMap::new(),
            next_cookie: 3,
            parent: 0,
            target: Vec::new(),
            xattrs: BTreeMap::new(),
            size: 0,
            chunks: BTreeMap::new(),
        };
        (ino, node)
    }

    fn link_in(&mut self, dir: Ino, name: &[u8], ino: Ino, now: i64) {
        let d = self.nodes.get_mut(&dir).expect("dir");
        d.entries.insert(name.to_vec(), (ino, d.next_cookie));
        d.next_cookie += 1;
        d.mtime = now;
        d.ctime = now;
    }

    fn unlink_from(&mut self, dir: Ino, name: &[u8], now: i64) {
        let d = self.nodes.get_mut(&dir).expect("dir");
        d.entries.remove(name);
        d.mtime = now;
        d.ctime = now;
    }

    /// After a name of `ino` went away: ctime, and free it if nothing holds it any more.
    fn lost_name(&mut self, ino: Ino, now: i64) {
        self.nodes.get_mut(&ino).expect("node").ctime = now;
        self.maybe_free(ino, now);
    }

    fn maybe_free(&mut self, ino: Ino, now: i64) {
        if self.nlink(ino) == 0 && self.opens(ino) == 0 {
            let node = self.nodes.remove(&ino).expect("node");
            for slices in node.chunks.values() {
                for s in slices {
                    self.unref(s, now);
                }
            }
        }
    }

    fn unref(&mut self, s: &Slice, now: i64) {
        if let Some(r) = s.data {
            let st = self.stripes.get_mut(&r.stripe).expect("stripe");
            st.refs -= 1;
            if st.refs == 0 {
                st.queued_at = Some(now);
            }
        }
    }

    fn session_of(cmd: &Command) -> R<u64> {
        if cmd.session == 0 {
            Err(FsError::Stale)
        } else {
            Ok(cmd.session)
        }
    }
}
