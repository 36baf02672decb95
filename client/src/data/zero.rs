//! `fallocate` PUNCH_HOLE and ZERO_RANGE: hole slices laid over the range and committed as a
//! flush commits its all-zero pieces. No byte is written or stored; the stripes the range
//! covered lose their references there (and are collected once nothing refers to them).

use std::sync::Arc;

use tessera_proto::fs::{CHUNK_SIZE, ChunkSlice, FsError, Slice};

use super::{DataPath, InodeData};

impl DataPath {
    /// Makes bytes `off..end` of the file read as zeros and hold no data; a range past the
    /// size grows it. The caller flushes the handle first, so no older buffered byte lands
    /// on the range afterwards.
    pub async fn zero(&self, data: &Arc<InodeData>, off: u64, end: u64) -> Result<(), FsError> {
        if off >= end {
            return Ok(());
        }
        let _g = data.flush_lock.lock().await;
        let attr = self
            .commit(data.ino, hole_slices(off, end), Vec::new())
            .await
            .map_err(FsError::from)?;
        self.saw(&attr);
        Ok(())
    }
}

/// Hole slices covering `off..end`, one per chunk it touches.
fn hole_slices(off: u64, end: u64) -> Vec<ChunkSlice> {
    let mut out = Vec::new();
    let mut at = off;
    while at < end {
        let chunk = at / CHUNK_SIZE;
        let within = at - chunk * CHUNK_SIZE;
        let len = (CHUNK_SIZE - within).min(end - at);
        out.push(ChunkSlice {
            chunk,
            slice: Slice {
                offset: within,
                len,
                data: None,
            },
        });
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_cut_at_chunk_boundaries() {
        let h = hole_slices(CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 5);
        let got: Vec<(u64, u64, u64)> = h
            .iter()
            .map(|c| (c.chunk, c.slice.offset, c.slice.len))
            .collect();
        assert_eq!(
            got,
            vec![(0, CHUNK_SIZE - 10, 10), (1, 0, CHUNK_SIZE), (2, 0, 5)]
        );
        assert!(h.iter().all(|c| c.slice.data.is_none()));
        assert!(hole_slices(7, 7).is_empty());
    }
}
