//! Open file handles: the number the kernel holds for each open file, mapped to the
//! inode state it reads and writes through.
//!
//! A mount that survives its serving process (`mount/supervise.rs`) numbers handles by
//! process generation (high bits), so a successor never reuses a number the kernel still
//! holds, and adopts a predecessor's handle when the kernel first names it: the open is
//! still counted in the session the successor took over, only this process's state for it
//! is new.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_client::data::InodeData;

/// Bits of a handle number below the process generation.
pub const GENERATION_SHIFT: u32 = 40;

/// The handle table. Sharded by nothing: lookups are short critical sections.
#[derive(Debug, Default)]
pub struct Handles {
    generation: u64,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<InodeData>>>,
    /// Inodes opened through a predecessor's handles: their lock owners are not known here.
    inherited: Mutex<HashSet<u64>>,
}

impl Handles {
    /// Handles of process generation `generation` (0: a mount without a supervisor).
    pub fn new(generation: u64) -> Self {
        Self {
            generation,
            next: AtomicU64::new(generation << GENERATION_SHIFT),
            ..Self::default()
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<InodeData>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new handle number for `data` (never 0, which directories use).
    pub fn insert(&self, data: Arc<InodeData>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.table().insert(fh, data);
        fh
    }

    /// Whether `fh` was given out by an earlier process of this mount.
    fn is_predecessors(&self, fh: u64) -> bool {
        fh != 0 && fh >> GENERATION_SHIFT < self.generation
    }

    /// The state of handle `fh`; a predecessor's handle is adopted with `open()`'s state.
    pub fn get_or_adopt(
        &self,
        fh: u64,
        ino: u64,
        open: impl FnOnce() -> Arc<InodeData>,
    ) -> Option<Arc<InodeData>> {
        let mut t = self.table();
        if let Some(d) = t.get(&fh) {
            return Some(d.clone());
        }
        if !self.is_predecessors(fh) {
            return None;
        }
        tracing::debug!(fh, ino, "adopting a handle of the previous process");
        self.inherited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino);
        let d = open();
        t.insert(fh, d.clone());
        Some(d)
    }

    /// Removes handle `fh` (adopting it first if it is a predecessor's).
    pub fn remove_or_adopt(
        &self,
        fh: u64,
        ino: u64,
        open: impl FnOnce() -> Arc<InodeData>,
    ) -> Option<Arc<InodeData>> {
        self.get_or_adopt(fh, ino, open)?;
        self.table().remove(&fh)
    }

    /// Whether locks on `ino` may have been taken by a predecessor (an unlock at close
    /// must then be sent even though this process took none).
    pub fn inherited(&self, ino: u64) -> bool {
        self.inherited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_adopts_older_handles_and_never_reuses_their_numbers() {
        let first = Handles::new(1);
        let old = (1 << GENERATION_SHIFT) + 1;
        let second = Handles::new(2);
        assert!(second.is_predecessors(old));
        assert!(!second.is_predecessors(0));
        assert!(!second.is_predecessors((2 << GENERATION_SHIFT) + 1));
        assert!(!first.is_predecessors(old));
        assert!(!second.inherited(5));
    }
}
