//! What a client caches under capabilities (`--caps`): directory listings and attributes,
//! answering `Lookup` (including "no such name"), `GetAttr` and `ReadDir` without a round
//! trip while the session holds caps on them (see `namespace/src/caps.rs` for what the
//! leader guarantees a holder).
//!
//! - Caps are taken when a listing starts (`ReadDir` at cookie 0): the directory and its
//!   entries (`GrantCaps` with `children`), then the whole listing is read and kept. Any
//!   later change by another session is recalled first, so what is kept stays true until
//!   this client gives the caps back.
//! - This client's own changes are not recalled: every write drops what it may change,
//!   before it is sent and again after its reply (attributes of the inodes it names, the
//!   names of directories whose entries it changes). A read that began before such a drop
//!   stores nothing (the `epoch`). Attributes of an inode still held are learnt again from
//!   the next read that has to ask the leader.
//! - Nothing is answered once the session's lease may have run out on the leader (the
//!   leader then stops protecting the caps): the cache trusts a renewal for 3/4 of the
//!   lease from when it was sent.
//! - Opens of held files are answered here too, and counted as *unreported*: the leader
//!   needs to know a file is open only when another session would unlink it (an orphan
//!   must outlive its opens), or when this one locks it. The unlink changes the file's
//!   link count, which recalls the cap first; so the opens are reported while a recall is
//!   answered, before the caps go back (and before a lock, and at a handover). A release
//!   drops an unreported open here, or else sends the release.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tessera_proto::fs::{Attr, DirEntry, FileKind, FsError, Ino, relatime_due};
use tessera_proto::meta::{Op, Query, Reply, Response, SNAPSHOTS_NAME};

/// Entries the first read of a listing asks for; a directory with more is not cached.
pub const FILL_LIMIT: u32 = 4096;

/// Drops remembered one by one before they are forgotten together (see `State::floor`).
const MAX_DROPS: usize = 100_000;

/// Lookups in one directory that ask the leader before the directory is filled.
const MISSES_BEFORE_FILL: u32 = 3;

/// One directory's complete listing ("." and ".." first), without attributes (those are in
/// `State::attrs`) but for "..", whose attributes are the parent's: kept only so a
/// `readdirplus` can carry the entry (the kernel takes nothing from it).
#[derive(Debug)]
struct Listing {
    entries: Vec<DirEntry>,
    /// Name -> position in `entries`.
    names: HashMap<Vec<u8>, usize>,
}

impl Listing {
    fn parent(&self) -> Option<Ino> {
        self.entries.iter().find(|e| e.name == b"..").map(|e| e.ino)
    }
}

#[derive(Debug, Default)]
struct State {
    /// The session the caps belong to; a different one finds nothing.
    session: u64,
    /// Bumped by every drop; a read notes it when it starts, and stores nothing about an
    /// inode dropped since (`drops`), or about anything if all was dropped (`floor`).
    epoch: u64,
    /// The epoch of each inode's last drop (cleared, with `floor` raised, when large).
    drops: HashMap<Ino, u64>,
    floor: u64,
    /// Lookups in a directory that had to ask the leader since it was last filled: the
    /// third fills it.
    misses: HashMap<Ino, u32>,
    /// When the last successful lease renewal (or the session's opening) was sent.
    renewed: Option<Instant>,
    /// Inodes this session holds caps on (granted by a fill, until recalled).
    held: HashSet<Ino>,
    /// Listings of held directories.
    dirs: HashMap<Ino, Listing>,
    /// Attributes of held inodes.
    attrs: HashMap<Ino, Attr>,
    /// Directory -> the cached directories whose ".." it is.
    under: HashMap<Ino, HashSet<Ino>>,
    /// Opens of held files answered here and not reported to the leader, by inode. Kept by
    /// `clear` (they are opens, not cached facts): reported or dropped explicitly.
    unreported: HashMap<Ino, u32>,
    /// Inodes whose recall is being answered: no fill stores them until it is done (a grant
    /// applied before the release would be undone by it).
    recalling: HashSet<Ino>,
    /// Inode -> how many cached listings name it. A listed inode has a name, so it is not
    /// freed by anyone without this client knowing: another session's change is recalled
    /// first, this client's own drops the listing before it is sent.
    listed: HashMap<Ino, u32>,
    /// This client's own changes of names (unlink, rename, ...) sent and not answered: no
    /// open is answered here meanwhile (one could name an inode the change frees).
    name_changes: u32,
    /// Access times this client moved in opens it answered and has not sent yet
    /// (`open_locally`): shown in every answer about the inode until sent.
    accessed: HashMap<Ino, i64>,
}

impl State {
    fn clear(&mut self) {
        self.epoch += 1;
        self.floor = self.epoch;
        self.drops.clear();
        self.misses.clear();
        self.held.clear();
        self.dirs.clear();
        self.attrs.clear();
        self.under.clear();
        self.listed.clear();
    }

    /// Entries of a listing that are names of other inodes (not "." or "..").
    fn named(listing: &Listing) -> impl Iterator<Item = Ino> + '_ {
        listing
            .entries
            .iter()
            .filter(|e| e.name != b"." && e.name != b"..")
            .map(|e| e.ino)
    }

    fn insert_listing(&mut self, dir: Ino, listing: Listing) {
        self.remove_listing(dir);
        if let Some(p) = listing.parent() {
            self.under.entry(p).or_default().insert(dir);
        }
        for ino in Self::named(&listing) {
            *self.listed.entry(ino).or_default() += 1;
        }
        self.dirs.insert(dir, listing);
    }

    fn remove_listing(&mut self, dir: Ino) {
        let Some(listing) = self.dirs.remove(&dir) else {
            return;
        };
        for ino in Self::named(&listing) {
            self.unlist(ino);
        }
        if let Some(p) = listing.parent()
            && let Some(set) = self.under.get_mut(&p)
        {
            set.remove(&dir);
            if set.is_empty() {
                self.under.remove(&p);
            }
        }
    }

    /// One cached listing fewer names `ino`.
    fn unlist(&mut self, ino: Ino) {
        if let Some(n) = self.listed.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                self.listed.remove(&ino);
            }
        }
    }

    /// Drops what is cached about `ino` (its listing too with `listing`), noting when.
    fn drop_ino(&mut self, ino: Ino, listing: bool) {
        self.attrs.remove(&ino);
        if listing {
            self.remove_listing(ino);
        }
        if self.drops.len() >= MAX_DROPS {
            self.drops.clear();
            self.floor = self.epoch;
        }
        self.drops.insert(ino, self.epoch);
    }

    /// Whether `ino` was dropped since a read began at `begin`.
    fn dropped_since(&self, begin: u64, ino: Ino) -> bool {
        begin < self.floor || self.drops.get(&ino).is_some_and(|&e| e > begin)
    }

    /// The entry `name` of cached directory `dir`, if the listing is there.
    fn entry(&self, dir: Ino, name: &[u8]) -> Option<Option<Ino>> {
        let listing = self.dirs.get(&dir)?;
        Some(listing.names.get(name).map(|&at| listing.entries[at].ino))
    }

    /// Shows a pending access of `a`'s inode in it.
    fn overlay(&self, a: &mut Attr) {
        if let Some(&time) = self.accessed.get(&a.ino)
            && a.atime_ns < time
        {
            a.atime_ns = time;
        }
    }

    /// The unreported opens of `inos`, taken out to be reported.
    fn take_unreported(&mut self, inos: &[Ino]) -> Vec<(Ino, u32)> {
        inos.iter()
            .filter_map(|ino| self.unreported.remove(ino).map(|n| (*ino, n)))
            .collect()
    }

    /// Stops holding `inos` (a recall): drops what they covered.
    fn give_up(&mut self, inos: &[Ino]) {
        self.epoch += 1;
        for &ino in inos {
            self.held.remove(&ino);
            self.drop_ino(ino, true);
        }
    }
}

/// The cache of one client. Every method is cheap and never waits for I/O.
#[derive(Debug)]
pub struct CapCache {
    lease: Duration,
    state: Mutex<State>,
}

impl CapCache {
    /// A cache for a session renewed with `lease`.
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, if it may answer for `session` now.
    fn usable(&self, session: u64) -> Option<std::sync::MutexGuard<'_, State>> {
        let s = self.state();
        let fresh = s.renewed.is_some_and(|t| t.elapsed() < self.lease * 3 / 4);
        (session != 0 && s.session == session && fresh).then_some(s)
    }

    /// `session`'s lease was renewed (or opened) by a request sent at `sent`. A new session
    /// starts empty: the caps of another one are not this client's any more. So does one
    /// whose cache stopped being usable since the last renewal: meanwhile the leader may
    /// have counted the lease as run out and let other sessions change what it holds
    /// without a recall.
    ///
    /// Returns the unreported opens of a session whose cache lapsed, for the caller to
    /// report: the leader may have stopped protecting them too (a new session's opens of
    /// another one are gone with it).
    #[must_use = "unreported opens must be reported"]
    pub fn renewed(&self, session: u64, sent: Instant) -> Vec<(Ino, u32)> {
        let mut s = self.state();
        let lapsed = s.renewed.is_some_and(|t| t.elapsed() >= self.lease * 3 / 4);
        let mut report = Vec::new();
        if s.session != session {
            s.unreported.clear();
        } else if lapsed {
            report = s.unreported.drain().collect();
        }
        if s.session != session || lapsed {
            s.clear();
            s.session = session;
            s.renewed = None;
        }
        if s.renewed.is_none_or(|t| t < sent) {
            s.renewed = Some(sent);
        }
        report
    }

    /// The answer to `q` from the cache, if it has one.
    pub fn answer(&self, session: u64, q: &Query) -> Option<Reply> {
        let s = self.usable(session)?;
        let attr = |ino: &Ino| s.attrs.get(ino).map(|a| Ok(Response::Attr(a.clone())));
        match q {
            Query::GetAttr { ino } => attr(ino),
            Query::Lookup { parent, name } => match s.entry(*parent, name)? {
                // Not an entry, so a held listing cannot say it is absent.
                None if name == SNAPSHOTS_NAME => None,
                None => Some(Err(FsError::NotFound)),
                Some(ino) => attr(&ino),
            },
            Query::ReadDir {
                ino,
                after,
                limit,
                plus,
            } => {
                let listing = s.dirs.get(ino)?;
                let mut out = page(&listing.entries, *after, *limit, *plus);
                if *plus {
                    for e in out.iter_mut().filter(|e| e.name != b"." && e.name != b"..") {
                        e.attr = Some(s.attrs.get(&e.ino)?.clone());
                    }
                }
                Some(Ok(Response::Entries(out)))
            }
            _ => None,
        }
    }

    /// Where a read that asks the leader starts: the epoch to hand to
    /// [`fill`](Self::fill) or [`learn`](Self::learn), if the cache may be used now.
    pub fn begin(&self, session: u64) -> Option<u64> {
        self.usable(session).map(|s| s.epoch)
    }

    /// Stores the complete listing of `dir`, read with attributes after caps on it and its
    /// entries were granted, unless something was dropped since `epoch`.
    pub fn fill(&self, epoch: u64, session: u64, dir: Ino, mut entries: Vec<DirEntry>) {
        let Some(mut s) = self.usable(session) else {
            return;
        };
        let changed = s.dropped_since(epoch, dir)
            || entries
                .iter()
                .any(|e| e.name != b".." && s.dropped_since(epoch, e.ino));
        let recalled =
            s.recalling.contains(&dir) || entries.iter().any(|e| s.recalling.contains(&e.ino));
        if changed || recalled || entries.iter().any(|e| e.attr.is_none()) {
            return;
        }
        s.misses.remove(&dir);
        for e in entries.iter_mut().filter(|e| e.name != b"..") {
            s.held.insert(e.ino);
            // "." keeps a copy: a readdirplus carries it, and the kernel takes nothing from
            // it, so a later change of the directory's own attributes (its access time
            // after each listing) need not send the listing back to the leader.
            let attr = if e.name == b"." {
                e.attr.clone()
            } else {
                e.attr.take()
            };
            if let Some(a) = attr {
                s.attrs.insert(e.ino, a);
            }
        }
        s.held.insert(dir);
        let names = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        s.insert_listing(dir, Listing { entries, names });
    }

    /// Whether the session holds caps on every one of `inos` (a listing of a held directory
    /// whose entries are all held needs no new grant).
    pub fn holds(&self, session: u64, mut inos: impl Iterator<Item = Ino>) -> bool {
        self.usable(session)
            .is_some_and(|s| inos.all(|i| s.held.contains(&i)))
    }

    /// Keeps the attributes a read of `q` brought from the leader, if the inode is held and
    /// nothing was dropped since `epoch`.
    pub fn learn(&self, epoch: u64, session: u64, q: &Query, reply: &Reply) {
        let (Query::GetAttr { .. } | Query::Lookup { .. }, Ok(Response::Attr(a))) = (q, reply)
        else {
            return;
        };
        let Some(mut s) = self.usable(session) else {
            return;
        };
        if !s.dropped_since(epoch, a.ino) && s.held.contains(&a.ino) {
            s.attrs.insert(a.ino, a.clone());
        }
    }

    /// Counts a lookup in `dir` that had to ask the leader; true when it is time to fill
    /// the directory (a directory looked in often is worth its caps).
    pub fn missed(&self, session: u64, dir: Ino) -> bool {
        let Some(mut s) = self.usable(session) else {
            return false;
        };
        if s.misses.len() > MAX_DROPS {
            s.misses.clear();
        }
        let n = s.misses.entry(dir).or_default();
        *n += 1;
        *n >= MISSES_BEFORE_FILL
    }

    /// Drops what a change by this client may make untrue (before it is sent and after its
    /// reply).
    pub fn changing(&self, reach: &Reach) {
        let Reach { inos, names } = reach;
        if inos.as_ref().is_some_and(Vec::is_empty) && names.is_empty() {
            // Nothing cached can change (and a fill's own grant must not undo the fill).
            return;
        }
        let mut s = self.state();
        s.epoch += 1;
        let Some(inos) = inos else {
            let held = std::mem::take(&mut s.held);
            s.clear();
            // Still held: only what was cached goes.
            s.held = held;
            return;
        };
        for &ino in inos {
            s.drop_ino(ino, false);
        }
        for &(dir, ref name) in names {
            // The directory's entries change, and so may the entry's own attributes (its
            // link count, or its ".." when a directory moves).
            let gone: Vec<Ino> = match s.entry(dir, name) {
                Some(entry) => entry.into_iter().collect(),
                // Not told without the listing: any cached directory under `dir` may be it.
                None => s.under.get(&dir).into_iter().flatten().copied().collect(),
            };
            for ino in gone {
                s.drop_ino(ino, true);
            }
            s.drop_ino(dir, true);
        }
    }

    /// This client's own removal of `name` from `dir` (unlink, rmdir) is about to be sent
    /// (`applied: false`), or the leader applied it (`applied: true`). Unlike
    /// [`changing`](Self::changing), the listing of `dir` is kept and, once the removal is
    /// applied, the name is taken out of it: so `rm -rf` does not read every directory
    /// again after each name it removes. What the removal changes is dropped both times:
    /// the attributes of `dir` (times, link count) and of the removed inode (its link
    /// count; with its listing, for a directory), and a fill that began before either
    /// drop stores nothing about `dir`. `false` (nothing done) when the listing of `dir`
    /// is not cached: the caller then drops as for any change.
    #[must_use = "without the listing the caller must drop as for any change"]
    pub fn removing(&self, dir: Ino, name: &[u8], applied: bool) -> bool {
        let mut s = self.state();
        let Some(removed) = s.entry(dir, name) else {
            return false;
        };
        s.epoch += 1;
        s.drop_ino(dir, false);
        let Some(ino) = removed else {
            return true;
        };
        s.drop_ino(ino, true);
        if applied && let Some(listing) = s.dirs.get_mut(&dir) {
            listing.entries.retain(|e| e.name != name);
            listing.names = listing
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.name.clone(), i))
                .collect();
            s.unlist(ino);
        }
        true
    }

    /// The leader recalled the caps on `inos`: drops what they covered, keeps fills from
    /// storing them until [`recall_done`](Self::recall_done), and hands over their
    /// unreported opens, which the caller reports before giving the caps back.
    #[must_use = "unreported opens must be reported"]
    pub fn recall_begins(&self, inos: &[Ino]) -> Vec<(Ino, u32)> {
        let mut s = self.state();
        s.give_up(inos);
        s.recalling.extend(inos.iter().copied());
        s.take_unreported(inos)
    }

    /// The caps on `inos` were given back. A fill that began before stores nothing about
    /// them (its grant may have been applied before the release, which then took it back
    /// too), and what one stored meanwhile is dropped again.
    pub fn recall_done(&self, inos: &[Ino]) {
        let mut s = self.state();
        s.give_up(inos);
        for ino in inos {
            s.recalling.remove(ino);
        }
    }

    /// Answers an open of `ino` here if the session holds a cap on it and knows its
    /// attributes (a regular file with a name): the open is counted as unreported. An open
    /// to read (`access` as for `OpenToRead`: `Some(strict)`) that moves the access time
    /// moves it here, to `now_ns` (this client's clock), and returns that time: the caller
    /// sends it (`Op::AccessedAt`), and until it is recorded every attribute of the file
    /// this client answers carries it ([`overlay`](Self::overlay)), so a `stat` right
    /// after the read shows the time the leader will store.
    pub fn open_locally(
        &self,
        session: u64,
        ino: Ino,
        access: Option<bool>,
        now_ns: i64,
    ) -> Option<(Attr, Option<i64>)> {
        let mut s = self.usable(session)?;
        if !s.held.contains(&ino)
            || s.recalling.contains(&ino)
            || !s.listed.contains_key(&ino)
            || s.name_changes > 0
        {
            return None;
        }
        let mut attr = s
            .attrs
            .get(&ino)
            .filter(|a| a.kind == FileKind::Regular && a.nlink > 0)?
            .clone();
        s.overlay(&mut attr);
        let moves =
            |strict| strict || relatime_due(attr.atime_ns, attr.mtime_ns, attr.ctime_ns, now_ns);
        let accessed = access.is_some_and(moves) && attr.atime_ns < now_ns;
        if accessed {
            attr.atime_ns = now_ns;
            s.accessed.insert(ino, now_ns);
        }
        *s.unreported.entry(ino).or_default() += 1;
        Some((attr, accessed.then_some(now_ns)))
    }

    /// Shows this client's accesses not sent yet in the attributes `reply` carries, from
    /// the cache or from the leader.
    pub fn overlay(&self, reply: &mut Reply) {
        let s = self.state();
        if s.accessed.is_empty() {
            return;
        }
        match reply {
            Ok(Response::Attr(a)) => s.overlay(a),
            Ok(Response::Entries(entries)) => {
                for a in entries.iter_mut().filter_map(|e| e.attr.as_mut()) {
                    s.overlay(a);
                }
            }
            _ => {}
        }
    }

    /// The accesses `at` were sent (recorded, or failed: either way the leader's answer is
    /// the one to show from now on).
    pub fn accesses_sent(&self, at: &[(Ino, i64)]) {
        let mut s = self.state();
        for (ino, time) in at {
            if s.accessed.get(ino) == Some(time) {
                s.accessed.remove(ino);
            }
        }
    }

    /// Drops one unreported open of `ino`; false if there is none (the leader knows every
    /// open of it this session has: the release is sent).
    pub fn release_locally(&self, ino: Ino) -> bool {
        let mut s = self.state();
        let Some(n) = s.unreported.get_mut(&ino) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            s.unreported.remove(&ino);
        }
        true
    }

    /// A change of names by this client is about to be sent: no open is answered here until
    /// [`name_change_done`](Self::name_change_done), and every unreported open is handed
    /// over to be reported first (the change may free a file this client has open, and
    /// the leader keeps it only for opens it knows).
    #[must_use = "unreported opens must be reported"]
    pub fn name_change_begins(&self) -> Vec<(Ino, u32)> {
        let mut s = self.state();
        s.name_changes += 1;
        s.unreported.drain().collect()
    }

    /// The change announced by [`name_change_begins`](Self::name_change_begins) was
    /// answered (or failed).
    pub fn name_change_done(&self) {
        let mut s = self.state();
        s.name_changes = s.name_changes.saturating_sub(1);
    }

    /// The unreported opens of `inos` (every one with `None`), taken out to be reported.
    #[must_use = "unreported opens must be reported"]
    pub fn take_unreported(&self, inos: Option<&[Ino]>) -> Vec<(Ino, u32)> {
        let mut s = self.state();
        match inos {
            Some(inos) => s.take_unreported(inos),
            None => s.unreported.drain().collect(),
        }
    }

    /// Drops everything (the session was lost, and its opens with it).
    pub fn clear(&self) {
        let mut s = self.state();
        s.clear();
        s.unreported.clear();
    }
}

/// Up to `limit` of `entries` after cookie `after`, with attributes if `plus`.
pub fn page(entries: &[DirEntry], after: u64, limit: u32, plus: bool) -> Vec<DirEntry> {
    entries
        .iter()
        .filter(|e| e.cookie > after)
        .take(limit as usize)
        .map(|e| DirEntry {
            attr: if plus { e.attr.clone() } else { None },
            ..e.clone()
        })
        .collect()
}

/// What a change may make untrue in the cache: the inodes it names (`None`: its reach is not
/// known here, everything goes) and the directory entries (directory, name) it names.
/// Worked out once per write, for the drop before it is sent and the one after its reply.
#[derive(Debug)]
pub struct Reach {
    inos: Option<Vec<Ino>>,
    names: Vec<(Ino, Vec<u8>)>,
}

impl Reach {
    /// Whether the change may take a name away from an inode (or reaches what is not
    /// known), so it may free one.
    pub fn changes_names(&self) -> bool {
        self.inos.is_none() || !self.names.is_empty()
    }

    pub fn of(op: &Op) -> Reach {
        let (inos, names) = touched(op);
        Reach { inos, names }
    }
}

/// [`Reach`]'s two parts.
type Parts = (Option<Vec<Ino>>, Vec<(Ino, Vec<u8>)>);

fn touched(op: &Op) -> Parts {
    let inos = |v: &[Ino]| (Some(v.to_vec()), Vec::new());
    match op {
        Op::Mknod { parent, name, .. }
        | Op::Mkdir { parent, name, .. }
        | Op::Symlink { parent, name, .. }
        | Op::MakeNode { parent, name, .. }
        | Op::Unlink { parent, name }
        | Op::Rmdir { parent, name } => (Some(vec![*parent]), vec![(*parent, name.clone())]),
        Op::Link {
            ino,
            new_parent,
            new_name,
        } => (
            Some(vec![*ino, *new_parent]),
            vec![(*new_parent, new_name.clone())],
        ),
        Op::Rename {
            parent,
            name,
            new_parent,
            new_name,
            ..
        } => (
            Some(vec![*parent, *new_parent]),
            vec![(*parent, name.clone()), (*new_parent, new_name.clone())],
        ),
        Op::MakeTmpfile { parent, .. } => inos(&[*parent]),
        Op::MakeNodeAs { node, .. } => touched(node),
        Op::SetAttr { ino, .. }
        | Op::SetXattr { ino, .. }
        | Op::RemoveXattr { ino, .. }
        | Op::Open { ino }
        | Op::OpenToRead { ino, .. }
        | Op::Release { ino }
        | Op::CommitSlice { ino, .. }
        | Op::SetFlags { ino, .. }
        | Op::Reserve { ino, .. } => inos(&[*ino]),
        Op::ReleaseMany { inos: v } | Op::Accessed { inos: v, .. } => inos(v),
        Op::AccessedAt { at, .. } => (Some(at.iter().map(|&(ino, _)| ino).collect()), Vec::new()),
        // Locks, sessions and caps change nothing this cache holds.
        Op::SetLock { .. }
        | Op::OpenSession { .. }
        | Op::RenewSession { .. }
        | Op::GrantCaps { .. }
        | Op::ReleaseCaps { .. } => (Some(Vec::new()), Vec::new()),
        _ => (None, Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::FileKind;

    fn attr(ino: Ino, perm: u16) -> Attr {
        Attr {
            ino,
            generation: 1,
            kind: FileKind::Regular,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            blocks: 0,
            flags: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    fn entry(name: &str, ino: Ino, cookie: u64) -> DirEntry {
        DirEntry {
            name: name.into(),
            ino,
            kind: FileKind::Regular,
            cookie,
            attr: Some(attr(ino, 0o644)),
        }
    }

    /// A cache for session 1 holding directory 10 (in 1) with files "a" (11) and "b" (12).
    fn filled() -> CapCache {
        let c = CapCache::new(Duration::from_secs(30));
        assert!(c.renewed(1, Instant::now()).is_empty());
        let epoch = c.begin(1).unwrap();
        let listing = vec![
            entry(".", 10, 1),
            entry("..", 1, 2),
            entry("a", 11, 3),
            entry("b", 12, 4),
        ];
        c.fill(epoch, 1, 10, listing);
        c
    }

    fn lookup(c: &CapCache, name: &str) -> Option<Reply> {
        let q = Query::Lookup {
            parent: 10,
            name: name.into(),
        };
        c.answer(1, &q)
    }

    #[test]
    fn a_filled_listing_answers_lookups_getattr_and_readdir() {
        let c = filled();
        assert!(matches!(lookup(&c, "a"), Some(Ok(Response::Attr(a))) if a.ino == 11));
        assert_eq!(lookup(&c, "zz"), Some(Err(FsError::NotFound)));
        assert!(c.answer(1, &Query::GetAttr { ino: 12 }).is_some());
        // "..": its attributes are the parent's, which no cap here covers.
        assert!(c.answer(1, &Query::GetAttr { ino: 1 }).is_none());
        let page = Query::ReadDir {
            ino: 10,
            after: 2,
            limit: 1,
            plus: false,
        };
        match c.answer(1, &page) {
            Some(Ok(Response::Entries(e))) => {
                assert_eq!(e.len(), 1);
                assert_eq!(
                    (e[0].name.as_slice(), e[0].attr.is_none()),
                    (&b"a"[..], true)
                );
            }
            other => panic!("{other:?}"),
        }
        // Another session's view, or none: nothing.
        assert!(c.answer(2, &Query::GetAttr { ino: 12 }).is_none());
    }

    #[test]
    fn own_removals_keep_the_listing_and_take_the_name_out_once_applied() {
        let c = filled();
        let epoch = c.begin(1).unwrap();
        assert!(c.removing(10, b"a", false));
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_none());
        assert!(lookup(&c, "b").is_some(), "the listing stays");
        assert!(c.removing(10, b"a", true));
        assert_eq!(lookup(&c, "a"), Some(Err(FsError::NotFound)));
        assert!(matches!(lookup(&c, "b"), Some(Ok(Response::Attr(a))) if a.ino == 12));
        let all = Query::ReadDir {
            ino: 10,
            after: 0,
            limit: 10,
            plus: false,
        };
        match c.answer(1, &all) {
            Some(Ok(Response::Entries(e))) => {
                let names: Vec<&[u8]> = e.iter().map(|e| e.name.as_slice()).collect();
                assert_eq!(names, vec![&b"."[..], b"..", b"b"]);
            }
            other => panic!("{other:?}"),
        }
        // A fill that began before the removal was applied (it may have read the
        // directory before) stores nothing.
        c.fill(
            epoch,
            1,
            10,
            vec![entry(".", 10, 1), entry("a", 11, 3), entry("b", 12, 4)],
        );
        assert_eq!(lookup(&c, "a"), Some(Err(FsError::NotFound)));
        // Without the listing nothing is done here (the caller drops as for any change).
        let c = filled();
        assert!(!c.removing(99, b"x", false));
        assert!(
            lookup(&c, "b").is_some(),
            "another directory's listing stays"
        );
        assert!(c.removing(10, b"zz", true));
        assert!(
            lookup(&c, "b").is_some(),
            "a name not listed takes nothing out"
        );
    }

    #[test]
    fn own_changes_and_recalls_drop_what_they_touch() {
        let c = filled();
        c.changing(&Reach::of(&Op::Unlink {
            parent: 10,
            name: "a".into(),
        }));
        assert!(lookup(&c, "b").is_none());
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_none());

        let c = filled();
        assert!(c.recall_begins(&[12]).is_empty());
        c.recall_done(&[12]);
        assert!(c.answer(1, &Query::GetAttr { ino: 12 }).is_none());
        assert!(
            lookup(&c, "b").is_none(),
            "b's attributes went with its cap"
        );
        assert!(lookup(&c, "a").is_some(), "the listing and a's cap stay");
        // A read that asked the leader teaches the cache again, for held inodes only.
        let q = Query::GetAttr { ino: 11 };
        c.changing(&Reach::of(&Op::SetAttr {
            ino: 11,
            set: Default::default(),
        }));
        assert!(c.answer(1, &q).is_none());
        let epoch = c.begin(1).unwrap();
        c.learn(epoch, 1, &q, &Ok(Response::Attr(attr(11, 0o600))));
        assert!(matches!(c.answer(1, &q), Some(Ok(Response::Attr(a))) if a.perm == 0o600));
        let q12 = Query::GetAttr { ino: 12 };
        c.learn(epoch, 1, &q12, &Ok(Response::Attr(attr(12, 0o600))));
        assert!(c.answer(1, &q12).is_none(), "12 is not held any more");

        // A fill that began before a drop stores nothing.
        let c = CapCache::new(Duration::from_secs(30));
        assert!(c.renewed(1, Instant::now()).is_empty());
        let epoch = c.begin(1).unwrap();
        c.changing(&Reach::of(&Op::SetAttr {
            ino: 11,
            set: Default::default(),
        }));
        c.fill(epoch, 1, 10, vec![entry(".", 10, 1), entry("a", 11, 3)]);
        assert!(lookup(&c, "a").is_none());
    }

    #[test]
    fn opens_of_held_files_are_counted_here_until_reported_or_released() {
        let c = filled();
        let now = 1_000_000_000;
        assert!(c.open_locally(1, 11, None, now).is_some());
        assert!(c.open_locally(1, 11, None, now).is_some());
        let dir = Attr {
            kind: FileKind::Directory,
            ..attr(12, 0o755)
        };
        let epoch = c.begin(1).unwrap();
        c.learn(
            epoch,
            1,
            &Query::GetAttr { ino: 12 },
            &Ok(Response::Attr(dir)),
        );
        assert!(c.open_locally(1, 12, None, now).is_none(), "a directory");
        assert!(c.open_locally(1, 1, None, now).is_none(), "not held");
        assert!(
            c.open_locally(2, 12, None, now).is_none(),
            "another session"
        );
        assert!(c.release_locally(11));
        // The recall hands the one left over for reporting; then the leader knows every
        // open of 11, so its release is sent, and the next open asks the leader.
        assert_eq!(c.recall_begins(&[11]), vec![(11, 1)]);
        assert!(!c.release_locally(11));
        assert!(c.open_locally(1, 11, None, now).is_none());
        // A fill while the recall is answered stores nothing about 11 (its grant may be
        // undone by the release); one that begins after it does.
        let listing = || vec![entry(".", 10, 1), entry("a", 11, 3), entry("b", 12, 4)];
        let epoch = c.begin(1).unwrap();
        c.fill(epoch, 1, 10, listing());
        assert!(c.open_locally(1, 11, None, now).is_none());
        c.recall_done(&[11]);
        c.fill(epoch, 1, 10, listing());
        assert!(
            c.open_locally(1, 11, None, now).is_none(),
            "began before the release"
        );
        let epoch = c.begin(1).unwrap();
        c.fill(epoch, 1, 10, listing());
        assert!(c.open_locally(1, 11, None, now).is_some());
        assert_eq!(c.take_unreported(Some(&[11, 12])), vec![(11, 1)]);
        assert!(c.take_unreported(None).is_empty());

        // This client's own change of names: its opens are reported first, and none is
        // answered here until it is done; after it, only files still listed are.
        assert!(c.open_locally(1, 12, None, now).is_some());
        assert_eq!(c.name_change_begins(), vec![(12, 1)]);
        assert!(
            c.open_locally(1, 11, None, now).is_none(),
            "a name change in flight"
        );
        c.changing(&Reach::of(&Op::Unlink {
            parent: 10,
            name: "b".into(),
        }));
        c.name_change_done();
        let epoch = c.begin(1).unwrap();
        c.learn(
            epoch,
            1,
            &Query::GetAttr { ino: 11 },
            &Ok(Response::Attr(attr(11, 0o644))),
        );
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_some());
        assert!(
            c.open_locally(1, 11, None, now).is_none(),
            "its listing went with the unlink"
        );
    }

    #[test]
    fn an_open_that_moves_the_access_time_moves_it_here_until_sent() {
        let c = filled();
        let day = 24 * 3600 * 1_000_000_000_i64;
        let getattr = |c: &CapCache| {
            let mut reply = c.answer(1, &Query::GetAttr { ino: 11 }).unwrap();
            c.overlay(&mut reply);
            match reply {
                Ok(Response::Attr(a)) => a.atime_ns,
                other => panic!("{other:?}"),
            }
        };
        // Never read since the change (atime == mtime == ctime): relatime moves it, to this
        // client's time, shown at once.
        let (a, moved) = c.open_locally(1, 11, Some(false), day).unwrap();
        assert_eq!((a.atime_ns, moved), (day, Some(day)));
        assert_eq!(getattr(&c), day);
        // Read since the change: the next open moves nothing; an open to write never does.
        assert_eq!(c.open_locally(1, 11, Some(false), day + 5).unwrap().1, None);
        assert_eq!(c.open_locally(1, 11, None, day + 6).unwrap().1, None);
        // strictatime: every read; and a leader's answer without the access shows it too.
        assert_eq!(
            c.open_locally(1, 11, Some(true), day + 7).unwrap().1,
            Some(day + 7)
        );
        let mut from_leader = Ok(Response::Entries(vec![entry("a", 11, 3)]));
        c.overlay(&mut from_leader);
        assert!(
            matches!(&from_leader, Ok(Response::Entries(e)) if e[0].attr.as_ref().unwrap().atime_ns == day + 7)
        );
        // Sent: the leader's answer is the one shown again (an older send changes nothing).
        c.accesses_sent(&[(11, day)]);
        assert_eq!(getattr(&c), day + 7);
        c.accesses_sent(&[(11, day + 7)]);
        assert_eq!(
            getattr(&c),
            0,
            "the cached attributes, as the leader last said"
        );
    }

    #[test]
    fn a_lapsed_cache_hands_its_opens_over_for_reporting() {
        let c = CapCache::new(Duration::from_millis(40));
        assert!(c.renewed(1, Instant::now()).is_empty());
        let epoch = c.begin(1).unwrap();
        c.fill(epoch, 1, 10, vec![entry(".", 10, 1), entry("a", 11, 3)]);
        assert!(c.open_locally(1, 11, None, 0).is_some());
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(c.renewed(1, Instant::now()), vec![(11, 1)]);
        assert!(!c.release_locally(11));
    }

    #[test]
    fn nothing_is_answered_once_the_lease_may_have_run_out() {
        let c = CapCache::new(Duration::from_millis(40));
        assert!(c.renewed(1, Instant::now()).is_empty());
        let epoch = c.begin(1).unwrap();
        c.fill(epoch, 1, 10, vec![entry(".", 10, 1), entry("a", 11, 3)]);
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_some());
        std::thread::sleep(Duration::from_millis(35));
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_none());
        // Renewed again after the gap: what was cached may have changed without a recall.
        assert!(c.renewed(1, Instant::now()).is_empty());
        assert!(c.answer(1, &Query::GetAttr { ino: 11 }).is_none());
        // A new session starts empty.
        assert!(c.renewed(2, Instant::now()).is_empty());
        assert!(c.answer(2, &Query::GetAttr { ino: 11 }).is_none());
    }
}
