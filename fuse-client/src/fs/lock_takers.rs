//! Which lock owners took locks through each open file handle, so closing an open file
//! description drops the locks it owns.
//!
//! The kernel names a lock's owner by an opaque id: the process's file table for POSIX
//! (`F_SETLK`) locks, the open file description itself for OFD (`F_OFD_SETLK`) locks. POSIX
//! locks go at every `close` (FLUSH carries their owner); OFD locks go when the description's
//! last descriptor closes, and FUSE passes no owner at RELEASE for them (it does only for
//! `flock`). So the mount remembers, per handle, the owners that locked through it and have
//! not unlocked since, and at RELEASE unlocks those: by then every process that used the
//! description has closed it, so a POSIX owner still listed has nothing left to keep either.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct LockTakers {
    /// Handle -> (inode, owners that locked through it).
    by_handle: Mutex<HashMap<u64, (u64, HashSet<u64>)>>,
}

impl LockTakers {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, HashSet<u64>)>> {
        self.by_handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `owner` locked (part of) `ino` through handle `fh`.
    pub fn took(&self, fh: u64, ino: u64, owner: u64) {
        self.table()
            .entry(fh)
            .or_insert_with(|| (ino, HashSet::new()))
            .1
            .insert(owner);
    }

    /// Every lock of `owner` on `ino` is gone (a close by a POSIX owner): no handle needs to
    /// drop them again, which could drop locks the owner takes later through another one.
    pub fn dropped(&self, ino: u64, owner: u64) {
        for (i, owners) in self.table().values_mut() {
            if *i == ino {
                owners.remove(&owner);
            }
        }
    }

    /// Handle `fh` is closed for good: the owners whose locks go with it.
    pub fn released(&self, fh: u64) -> Vec<u64> {
        self.table()
            .remove(&fh)
            .map(|(_, owners)| owners.into_iter().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_drops_the_locks_still_taken_through_it() {
        let t = LockTakers::default();
        // An OFD lock (owner 100 = the description) and a POSIX lock (owner 7) through
        // handle 1 on inode 5; the POSIX owner closes (FLUSH) and relocks through handle 2.
        t.took(1, 5, 100);
        t.took(1, 5, 7);
        t.dropped(5, 7);
        t.took(2, 5, 7);
        assert_eq!(t.released(1), vec![100]);
        assert_eq!(t.released(1), Vec::<u64>::new());
        assert_eq!(t.released(2), vec![7]);
    }
}
