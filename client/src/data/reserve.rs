//! Preallocation as this mount sees it: the namespace keeps what each file reserved (see
//! `namespace/src/reserve.rs`) and the leader holds room back for it; this mount remembers
//! the ranges it preallocated itself, so the stripes it writes into them are placed as
//! reserved (they may use the room held back). A write into a range another mount
//! preallocated is placed as an ordinary one.

use tessera_proto::fs::{FsError, Ino};
use tessera_proto::meta::{Op, Response};

use super::DataPath;
use crate::error::ClientError;

impl DataPath {
    /// Shard bytes `data` file bytes take in this mount's erasure code (an estimate for
    /// `statfs`'s held room, which sums every file's preallocations whatever their layout;
    /// one file's check uses [`DataPath::shard_bytes_in_file`]).
    pub fn shard_bytes_for(&self, data: u64) -> u64 {
        let (k, m) = (u64::from(self.cfg.k.max(1)), u64::from(self.cfg.m));
        data.div_ceil(k) * (k + m)
    }

    /// Preallocates `offset..offset + len` of `ino` in the namespace and remembers it.
    pub async fn reserve(&self, ino: Ino, offset: u64, len: u64) -> Result<(), FsError> {
        self.meta_reserve(ino, offset, len).await?;
        let mut all = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let ranges = all.entry(ino).or_default();
        ranges.push((offset, offset.saturating_add(len)));
        merge(ranges);
        Ok(())
    }

    /// Whether every byte of `extents` (file offset, length) is in a range this mount
    /// preallocated for `ino`.
    pub(crate) fn within_reserved(&self, ino: Ino, extents: &[(u64, u64)]) -> bool {
        let all = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ranges) = all.get(&ino) else {
            return false;
        };
        extents.iter().all(|&(off, len)| {
            ranges
                .iter()
                .any(|&(a, b)| a <= off && off.saturating_add(len) <= b)
        })
    }

    /// Forgets what this mount preallocated for `ino` (the file was truncated or freed).
    pub fn forget_reserved(&self, ino: Ino) {
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ino);
    }
}

impl DataPath {
    async fn meta_reserve(&self, ino: Ino, offset: u64, len: u64) -> Result<(), FsError> {
        let reply = self
            .meta
            .write(Op::Reserve { ino, offset, len })
            .await
            .map_err(|e| ClientError::meta("reserve", e))?;
        match reply? {
            Response::Attr(_) => Ok(()),
            other => Err(ClientError::unexpected("reserve", &other).into()),
        }
    }
}

/// Sorts and merges overlapping or touching ranges.
fn merge(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match out.last_mut() {
            Some(last) if last.1 >= a => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *ranges = out;
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn ranges_merge_when_they_touch() {
        let mut r = vec![(10, 20), (0, 5), (5, 8), (15, 30)];
        merge(&mut r);
        assert_eq!(r, vec![(0, 8), (10, 30)]);
    }
}
