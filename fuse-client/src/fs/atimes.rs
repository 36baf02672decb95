//! Access times, recorded in the background and in batches.
//!
//! With `relatime` (the default, as on ext4) a file's access time moves when it is read after
//! a change, or when it is a day old; with `strictatime` on every read; with `noatime` never.
//!
//! The daemon sees only the reads the page cache does not answer, so an open for reading
//! counts as the access (with `strictatime` every read that reaches the daemon counts too),
//! as does each listing of a directory from its start. The one difference from ext4: an
//! open for reading that never reads also moves the access time.
//!
//! An open is a metadata commit anyway, so it carries the access (`OpenToRead`): no extra
//! entry, and its reply holds the new time. An open the mount answered alone under caps
//! moved the time itself, to its own clock's, and shows it at once (`CapCache`): that time
//! is queued here and sent as `AccessedAt`, which records it as given. Other accesses must not make a read or listing
//! wait for a commit: they are queued, and what gathered for a moment goes out as one
//! `Accessed` command, whose apply decides by the rule. A `stat` through this mount of an
//! inode still queued sends that access first, so this mount reads its own access times;
//! other mounts see them within the gathering delay.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_proto::fs::{Attr, Ino};
use tokio::sync::mpsc;

use tessera_client::ops::Namespace;

/// How access times are kept (`--atime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtimeMode {
    /// Linux's default: after a change, or once a day.
    #[default]
    Relatime,
    /// On every access.
    Strict,
    /// Never.
    Off,
}

/// An access time younger than this (by the mount's clock) was set by the open that returned
/// it, or by another access a moment ago: either way the kernel's copy may be older.
const JUST_NOW_NS: i64 = 5_000_000_000;

/// How long accesses gather before a batch goes out.
const GATHER: Duration = Duration::from_millis(50);
/// Most inodes in one command.
const BATCH: usize = 1024;

#[derive(Debug)]
pub(crate) struct Atimes {
    mode: AtimeMode,
    ns: Namespace,
    /// Inodes queued and not yet sent.
    pending: Arc<Mutex<HashSet<Ino>>>,
    /// Access times moved by this mount (opens under caps), queued and not yet sent.
    moved: Arc<Mutex<HashMap<Ino, i64>>>,
    tx: mpsc::UnboundedSender<()>,
}

impl Atimes {
    /// Starts the sender on `rt`.
    pub(crate) fn start(mode: AtimeMode, ns: Namespace, rt: &tokio::runtime::Handle) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let pending: Arc<Mutex<HashSet<Ino>>> = Arc::default();
        let moved: Arc<Mutex<HashMap<Ino, i64>>> = Arc::default();
        let (queued, queued_moved, sender_ns) = (pending.clone(), moved.clone(), ns.clone());
        let strict = mode == AtimeMode::Strict;
        rt.spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(GATHER).await;
                while rx.try_recv().is_ok() {}
                let inos: Vec<Ino> = lock(&queued).drain().collect();
                for batch in inos.chunks(BATCH) {
                    if let Err(e) = sender_ns.accessed(batch.to_vec(), strict).await {
                        tracing::warn!(count = batch.len(), "access times not recorded: {e}");
                    }
                }
                let at: Vec<(Ino, i64)> = lock(&queued_moved).drain().collect();
                for batch in at.chunks(BATCH) {
                    if let Err(e) = sender_ns.accessed_at(batch.to_vec(), strict).await {
                        tracing::warn!(count = batch.len(), "access times not recorded: {e}");
                    }
                }
            }
        });
        Self {
            mode,
            ns,
            pending,
            moved,
            tx,
        }
    }

    /// An open this mount answered under caps moved `ino`'s access time to `at`: queued to
    /// be sent. (No `settle` needed: until it is sent, this mount's answers carry it.)
    pub(crate) fn moved_here(&self, ino: Ino, at: i64) {
        let mut moved = lock(&self.moved);
        let later = moved.get(&ino).is_none_or(|&t| t < at);
        if later {
            moved.insert(ino, at);
        }
        drop(moved);
        let _ = self.tx.send(());
    }

    fn queue(&self, ino: Ino) {
        if lock(&self.pending).insert(ino) {
            let _ = self.tx.send(());
        }
    }

    /// What an open for reading asks of the access time: `Some(strict)` to move it in the
    /// open's own entry, `None` with `noatime`.
    pub(crate) fn open_access(&self) -> Option<bool> {
        match self.mode {
            AtimeMode::Off => None,
            AtimeMode::Relatime => Some(false),
            AtimeMode::Strict => Some(true),
        }
    }

    /// Whether the open that answered `a` just moved the access time (it is after the last
    /// change and a moment old), so the kernel's cached attributes are out of date.
    pub(crate) fn moved_by_open(&self, a: &Attr) -> bool {
        self.mode != AtimeMode::Off
            && a.atime_ns > a.mtime_ns
            && a.atime_ns > a.ctime_ns
            && now_ns().saturating_sub(a.atime_ns) < JUST_NOW_NS
    }

    /// Directory `ino` was listed from its start (the kernel drops its cached access time
    /// after a listing by itself).
    pub(crate) fn accessed(&self, ino: Ino) {
        if self.mode != AtimeMode::Off {
            self.queue(ino);
        }
    }

    /// A read of `ino` reached the daemon (counted only with `strictatime`: the open was the
    /// access otherwise).
    pub(crate) fn read(&self, ino: Ino) {
        if self.mode == AtimeMode::Strict {
            self.queue(ino);
        }
    }

    /// Sends `ino`'s queued access now, if there is one, so that a `stat` through this mount
    /// sees it.
    pub(crate) async fn settle(&self, ino: Ino) {
        if self.mode == AtimeMode::Off || !lock(&self.pending).remove(&ino) {
            return;
        }
        let strict = self.mode == AtimeMode::Strict;
        if let Err(e) = self.ns.accessed(vec![ino], strict).await {
            tracing::warn!(ino, "access time not recorded: {e}");
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
