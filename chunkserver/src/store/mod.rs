//! The shard store: a small backend trait over content-addressed shards, and its backends.
//!
//! Blocking by design: every method does plain `std::fs` I/O and returns when it is done.
//! An async caller (the RPC handler) runs one whole operation under
//! `tokio::task::spawn_blocking`: a put is write + fdatasync + link + directory fsync, and
//! `tokio::fs` would hop to the blocking pool for each of those steps anyway (it has no real
//! async file I/O), costing several thread hand-offs per put instead of one. All methods take
//! `&self` and backends are `Send + Sync`, so an `Arc<dyn ShardStore>` moves into the closure.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

#[cfg(test)]
pub mod faulty;
pub mod file;
mod format;
mod layout;
mod list;
pub mod marker;
mod prove;
mod verify;

#[cfg(test)]
pub use faulty::{Fault, FaultyStore, Op, TornWrite};
pub use file::{FileStore, FileStoreConfig};
pub use layout::{quarantine_dir, shard_file, temp_dir};
// The id is a wire type (clients and the metadata service name shards too); re-exported here
// so store code and its users keep naming it `store::ShardId`.
pub use tessera_proto::shard::{ParseShardIdError, ShardId};
pub use verify::BLOCK_LEN;

/// Largest shard a put accepts. Stripes are 4 MiB by default, so real shards are far smaller;
/// the bound keeps a damaged or hostile header from asking for an absurd allocation on read.
pub const MAX_SHARD_LEN: u64 = 256 << 20;

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The shard is now stored durably.
    Stored,
    /// It was already stored (durably); nothing was written.
    AlreadyPresent,
}

/// A ranged read with its proof: bytes `span` of a shard of `len` bytes, where `span` is the
/// range asked for widened to whole BLAKE3 chunks, and the chaining values that let a reader
/// check them against the shard id (`tessera_proto::proof`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proved {
    pub len: u64,
    pub span: Range<u64>,
    pub bytes: Bytes,
    pub proof: Vec<tessera_proto::proof::Cv>,
}

/// One shard as listed or stat-ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: ShardId,
    /// Time since the shard was last put (its file's mtime). A put of an existing shard
    /// refreshes it, so a sweep never sees a freshly re-uploaded shard as old.
    pub age: Duration,
}

/// What `stat` reports about one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStat {
    pub id: ShardId,
    /// Length of the shard data in bytes.
    pub len: u64,
    /// As in [`ShardInfo::age`].
    pub age: Duration,
}

/// One page of the inventory, in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub shards: Vec<ShardInfo>,
    /// Pass as `after` to get the next page; `None` when the listing is complete.
    pub next: Option<ShardId>,
}

/// Space accounting, kept in memory and rebuilt by a scan at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Number of shards stored.
    pub shards: u64,
    /// Bytes of shard files (headers and hash lists included; quarantine excluded).
    pub used_bytes: u64,
    /// Configured limit on `used_bytes`, if any.
    pub capacity: Option<u64>,
}

/// A content-addressed shard store. Every method is blocking (see the module docs).
pub trait ShardStore: Send + Sync {
    /// Stores `data` under `id` after checking `BLAKE3(data) == id`; returns only once the
    /// shard is on stable storage. Idempotent: an existing id is not written again.
    fn put(&self, id: &ShardId, data: Bytes) -> Result<PutOutcome>;

    /// Reads the whole shard (`range: None`) or a byte range of it. The bytes returned have
    /// been verified against `id`; a mismatch quarantines the shard and returns `Corrupt`.
    fn get(&self, id: &ShardId, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Reads `range` widened to whole 1 KiB chunks, with the proof that binds those bytes to
    /// `id` for a reader that trusts no server. Verified here as [`Self::get`] does. An empty
    /// range gives no bytes and no proof.
    ///
    /// The default reads and verifies the whole shard and proves the range from memory; the
    /// file backend reads only the blocks around the range.
    fn get_proved(&self, id: &ShardId, range: Range<u64>) -> Result<Proved> {
        let data = self.get(id, None)?;
        let len = data.len() as u64;
        if range.start > range.end || range.end > len {
            let (start, end) = (range.start, range.end);
            return Err(crate::Error::BadRange {
                id: *id,
                start,
                end,
                len,
            });
        }
        let span = tessera_proto::proof::span_of(&range, len);
        let proof = match tessera_proto::proof::prove(&data, &span) {
            Some((root, proof)) => {
                debug_assert_eq!(root, *id, "get returned bytes that were not verified");
                proof
            }
            None => Vec::new(),
        };
        let bytes = data.slice(span.start as usize..span.end as usize);
        Ok(Proved {
            len,
            span,
            bytes,
            proof,
        })
    }

    /// Removes a shard. Returns whether it was there; deleting an absent id is not an error.
    fn delete(&self, id: &ShardId) -> Result<bool>;

    /// Up to `limit` shards with ids strictly after `after`, in id order.
    fn list(&self, after: Option<&ShardId>, limit: usize) -> Result<ListPage>;

    /// Length and age of one shard, `None` if absent. Checks the header, not the data.
    fn stat(&self, id: &ShardId) -> Result<Option<ShardStat>>;

    /// Current space accounting.
    fn usage(&self) -> Usage;

    /// Sweep support: up to `limit` shards at least `grace` old, scanning ids after `after`.
    /// `next` is the last id *scanned* (`None` once the inventory is exhausted), and one call
    /// scans at most `SWEEP_SCAN_BUDGET` ids, so a call stays short even when few are old.
    fn list_older_than(
        &self,
        grace: Duration,
        after: Option<&ShardId>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        let mut out = ListPage::default();
        let mut cursor = after.copied();
        let mut scanned = 0;
        loop {
            let page = self.list(cursor.as_ref(), limit.min(1024))?;
            for s in &page.shards {
                cursor = Some(s.id);
                scanned += 1;
                if s.age >= grace {
                    out.shards.push(*s);
                }
                if out.shards.len() >= limit || scanned >= SWEEP_SCAN_BUDGET {
                    out.next = cursor;
                    return Ok(out);
                }
            }
            if page.next.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Most ids one `list_older_than` call looks at.
pub const SWEEP_SCAN_BUDGET: usize = 100_000;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod prove_tests;
