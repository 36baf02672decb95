//! A fault-injecting wrapper around a shard store, for tests of the layers above it
//! (and of the store's own crash recovery): I/O errors, torn writes, a full disk, a slow disk.
//! Compiled into this crate's unit tests only (`cfg(test)`), never into the binary.
//!
//! Faults are armed at run time and consumed one call at a time, so a test can say "the next
//! two puts fail with ENOSPC" while other calls go through to the real backend.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::{ListPage, Proved, PutOutcome, ShardId, ShardStat, ShardStore, Usage};
use crate::error::{Error, Result};

/// A backend that can leave behind what a crash in the middle of a put would.
pub trait TornWrite {
    /// Writes the first `keep` bytes of `id`'s shard file where an unfinished put would, and
    /// returns without completing or cleaning up (as if the process had been killed).
    fn put_torn(&self, id: &ShardId, data: &Bytes, keep: usize) -> Result<()>;
}

/// The store operations faults can be armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
    Delete,
    List,
    Stat,
}

/// What an armed call does instead of its normal work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with an I/O error (EIO) and touches nothing.
    Io,
    /// Fails with `NoSpace` and touches nothing, as a full disk would.
    NoSpace,
    /// Puts only: writes half the shard file, then fails as a crash would (no cleanup).
    /// On other operations, and `NoSpace` on anything but a put, it acts as `Io`.
    Torn,
}

/// Wraps a store and injects faults into it. See the module docs.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    armed: HashMap<Op, Vec<Fault>>,
    delay: Duration,
}

impl<S> FaultyStore<S> {
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    /// The wrapped store, to reach it without faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes the next `times` calls of `op` fail with `fault` (queued after faults already armed).
    pub fn arm(&self, op: Op, fault: Fault, times: usize) {
        let mut state = self.state();
        state
            .armed
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Slow disk: every call sleeps this long before doing anything.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Disarms all faults and removes the delay.
    pub fn clear(&self) {
        *self.state() = State::default();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the delay, then pops the next fault armed for `op`, if any.
    fn enter(&self, op: Op) -> Option<Fault> {
        let (delay, fault) = {
            let mut state = self.state();
            let fault = state
                .armed
                .get_mut(&op)
                .and_then(|q| (!q.is_empty()).then(|| q.remove(0)));
            (state.delay, fault)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        fault
    }
}

fn injected(op: &'static str, id: Option<&ShardId>) -> Error {
    Error::io(
        op,
        PathBuf::from("<injected>"),
        id.copied(),
        io::Error::from_raw_os_error(5),
    )
}

impl<S: ShardStore + TornWrite> ShardStore for FaultyStore<S> {
    fn put(&self, id: &ShardId, data: Bytes) -> Result<PutOutcome> {
        match self.enter(Op::Put) {
            None => self.inner.put(id, data),
            Some(Fault::Io) => Err(injected("write", Some(id))),
            Some(Fault::NoSpace) => Err(Error::NoSpace {
                id: *id,
                needed: data.len() as u64,
            }),
            Some(Fault::Torn) => {
                self.inner.put_torn(id, &data, data.len() / 2)?;
                Err(injected("write (torn, simulated crash)", Some(id)))
            }
        }
    }

    fn get(&self, id: &ShardId, range: Option<Range<u64>>) -> Result<Bytes> {
        match self.enter(Op::Get) {
            None => self.inner.get(id, range),
            Some(_) => Err(injected("read", Some(id))),
        }
    }

    fn get_proved(&self, id: &ShardId, range: Range<u64>) -> Result<Proved> {
        match self.enter(Op::Get) {
            None => self.inner.get_proved(id, range),
            Some(_) => Err(injected("read", Some(id))),
        }
    }

    fn delete(&self, id: &ShardId) -> Result<bool> {
        match self.enter(Op::Delete) {
            None => self.inner.delete(id),
            Some(_) => Err(injected("delete", Some(id))),
        }
    }

    fn list(&self, after: Option<&ShardId>, limit: usize) -> Result<ListPage> {
        match self.enter(Op::List) {
            None => self.inner.list(after, limit),
            Some(_) => Err(injected("list", None)),
        }
    }

    fn stat(&self, id: &ShardId) -> Result<Option<ShardStat>> {
        match self.enter(Op::Stat) {
            None => self.inner.stat(id),
            Some(_) => Err(injected("stat", Some(id))),
        }
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::store::{FileStore, FileStoreConfig};
    use crate::testutil::{TempDir, files_in, shard};

    fn faulty(dir: &TempDir) -> FaultyStore<FileStore> {
        FaultyStore::new(FileStore::open(dir.path(), FileStoreConfig::default()).unwrap())
    }

    #[test]
    fn armed_faults_fire_once_each_then_calls_go_through() {
        let dir = TempDir::new("faulty-arm");
        let store = faulty(&dir);
        let (id, data) = shard(1000, 1);
        store.arm(Op::Put, Fault::NoSpace, 1);
        store.arm(Op::Put, Fault::Io, 1);
        assert!(matches!(
            store.put(&id, data.clone()),
            Err(Error::NoSpace { .. })
        ));
        assert!(matches!(
            store.put(&id, data.clone()),
            Err(Error::Io { .. })
        ));
        assert_eq!(store.put(&id, data.clone()).unwrap(), PutOutcome::Stored);
        store.arm(Op::Get, Fault::Io, 1);
        assert!(matches!(store.get(&id, None), Err(Error::Io { .. })));
        assert_eq!(store.get(&id, None).unwrap(), data);
        for op in [Op::Delete, Op::List, Op::Stat] {
            store.arm(op, Fault::Io, 1);
        }
        assert!(
            store.delete(&id).is_err() && store.list(None, 10).is_err() && store.stat(&id).is_err()
        );
        store.arm(Op::Delete, Fault::Io, 3);
        store.clear();
        assert!(store.delete(&id).unwrap());
    }

    #[test]
    fn a_torn_put_leaves_nothing_visible_after_restart() {
        let dir = TempDir::new("faulty-torn");
        let (id, data) = shard(300_000, 2);
        {
            let store = faulty(&dir);
            store.arm(Op::Put, Fault::Torn, 1);
            assert!(store.put(&id, data.clone()).is_err());
            // The "crashed" put left its temporary file, but nothing under the id.
            assert_eq!(files_in(&dir.path().join("tmp")).len(), 1);
            assert!(matches!(store.get(&id, None), Err(Error::NotFound { .. })));
        }
        let store = faulty(&dir);
        assert!(files_in(&dir.path().join("tmp")).is_empty());
        assert_eq!(store.usage().shards, 0);
        assert!(store.list(None, 10).unwrap().shards.is_empty());
        // A retried put then succeeds.
        assert_eq!(store.put(&id, data.clone()).unwrap(), PutOutcome::Stored);
        assert_eq!(store.get(&id, None).unwrap(), data);
    }

    #[test]
    fn a_slow_disk_delays_every_call() {
        let dir = TempDir::new("faulty-slow");
        let store = faulty(&dir);
        store.set_delay(Duration::from_millis(30));
        let t = Instant::now();
        let _ = store.stat(&shard(1, 3).0).unwrap();
        let _ = store.list(None, 1).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(60));
    }
}
