//! Open file handles: the number the kernel holds for each open file, mapped to the
//! inode state it reads and writes through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_client::data::InodeData;

/// The handle table. Sharded by nothing: lookups are short critical sections.
#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<InodeData>>>,
}

impl Handles {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<InodeData>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new handle number for `data` (never 0, which directories use).
    pub fn insert(&self, data: Arc<InodeData>) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.table().insert(fh, data);
        fh
    }

    pub fn get(&self, fh: u64) -> Option<Arc<InodeData>> {
        self.table().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<InodeData>> {
        self.table().remove(&fh)
    }
}
