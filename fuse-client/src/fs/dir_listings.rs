//! A whole small directory listed at once per open handle.
//!
//! The kernel reads a directory in requests continued by cookie, and asks once more after
//! the last entry to learn that the listing ended. Another mount's rename or re-create in
//! between gives the name a new cookie past the cursor, so the same scan would list the old
//! name and the new one, or one name twice (POSIX allows it for entries changed during a
//! scan, but a listing of one instant is what people expect and what the multi-mount
//! checker proves). So when the request at offset 0 gets the whole directory in one batch,
//! the handle keeps it and answers the rest of that scan from it: a directory of up to one
//! batch lists as of one instant. Larger ones are read batch by batch, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_proto::fs::DirEntry;

/// One handle's listing: complete as of one read, with attributes if `plus`.
#[derive(Debug)]
struct Listing {
    plus: bool,
    entries: Vec<DirEntry>,
}

#[derive(Debug)]
pub struct DirListings {
    next_handle: AtomicU64,
    kept: Mutex<HashMap<u64, Listing>>,
}

impl Default for DirListings {
    fn default() -> Self {
        Self::new(0)
    }
}

impl DirListings {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Listing>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles of process generation `generation` (see `handles.rs`): a successor's never
    /// equal a predecessor's, which it does not know the listings of (it lists afresh).
    pub fn new(generation: u64) -> Self {
        Self {
            // 0 is what handles opened before listings were kept carry: never one of these.
            next_handle: AtomicU64::new((generation << super::handles::GENERATION_SHIFT) | 1),
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// A new directory handle.
    pub fn open(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    pub fn release(&self, fh: u64) {
        self.table().remove(&fh);
    }

    /// What a read at offset 0 returned: kept if it is the whole directory (fewer entries
    /// than were asked for), dropped otherwise (a rewind reads afresh).
    pub fn read_from_start(&self, fh: u64, entries: &[DirEntry], asked: usize, plus: bool) {
        let mut t = self.table();
        if entries.len() < asked {
            let entries = entries.to_vec();
            t.insert(fh, Listing { plus, entries });
        } else {
            t.remove(&fh);
        }
    }

    /// The kept entries after `offset` (a cookie), if this handle keeps a listing that can
    /// answer a request with or without attributes.
    pub fn after(&self, fh: u64, offset: u64, plus: bool) -> Option<Vec<DirEntry>> {
        let t = self.table();
        let l = t.get(&fh).filter(|l| l.plus || !plus)?;
        Some(
            l.entries
                .iter()
                .filter(|e| e.cookie > offset)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::FileKind;

    fn entry(name: &str, cookie: u64) -> DirEntry {
        DirEntry {
            name: name.as_bytes().to_vec(),
            ino: cookie + 100,
            kind: FileKind::Regular,
            cookie,
            attr: None,
        }
    }

    #[test]
    fn a_whole_listing_answers_the_rest_of_its_scan() {
        let l = DirListings::default();
        let fh = l.open();
        let all = vec![entry(".", 1), entry("..", 2), entry("a", 5), entry("b", 9)];
        l.read_from_start(fh, &all, 256, false);
        let rest = l.after(fh, 5, false).unwrap();
        assert_eq!(rest, vec![entry("b", 9)]);
        assert!(l.after(fh, 9, false).unwrap().is_empty());
        // A listing without attributes cannot answer a request that wants them.
        assert!(l.after(fh, 5, true).is_none());
        // Another handle, or this one after release, reads afresh.
        assert!(l.after(l.open(), 5, false).is_none());
        l.release(fh);
        assert!(l.after(fh, 5, false).is_none());
    }

    #[test]
    fn a_partial_listing_is_not_kept() {
        let l = DirListings::default();
        let fh = l.open();
        l.read_from_start(fh, &[entry("a", 5), entry("b", 9)], 2, true);
        assert!(l.after(fh, 5, true).is_none());
    }
}
