//! `fallocate` PUNCH_HOLE and ZERO_RANGE: hole slices laid over the range and committed as a
//! flush commits its all-zero pieces. No byte is written or stored; the stripes the range
//! covered lose their references there (and are collected once nothing refers to them).

use std::sync::Arc;

use tessera_proto::fs::{CHUNK_SIZE, ChunkSlice, FsError, Slice, StripeRef};

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
            .commit(data.ino, slices_over(off, end - off, None), Vec::new())
            .await
            .map_err(FsError::from)?;
        self.saw(&attr);
        Ok(())
    }
}

/// Slices putting `n` bytes at file offset `at`, one per chunk the range touches; `data`
/// (if any) is where the first byte lies in its stripe, `None` lays holes.
pub(super) fn slices_over(at: u64, n: u64, data: Option<StripeRef>) -> Vec<ChunkSlice> {
    let mut out = Vec::new();
    let mut done = 0;
    while done < n {
        let pos = at + done;
        let chunk = pos / CHUNK_SIZE;
        let within = pos - chunk * CHUNK_SIZE;
        let len = (CHUNK_SIZE - within).min(n - done);
        out.push(ChunkSlice {
            chunk,
            slice: Slice {
                offset: within,
                len,
                data: data.map(|r| StripeRef {
                    stripe: r.stripe,
                    offset: r.offset + done,
                }),
            },
        });
        done += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use tessera_proto::fs::StripeId;

    #[test]
    fn holes_are_cut_at_chunk_boundaries() {
        let h = slices_over(CHUNK_SIZE - 10, CHUNK_SIZE + 15, None);
        let got: Vec<(u64, u64, u64)> = h
            .iter()
            .map(|c| (c.chunk, c.slice.offset, c.slice.len))
            .collect();
        assert_eq!(
            got,
            vec![(0, CHUNK_SIZE - 10, 10), (1, 0, CHUNK_SIZE), (2, 0, 5)]
        );
        assert!(h.iter().all(|c| c.slice.data.is_none()));
        assert!(slices_over(7, 0, None).is_empty());
    }

    #[test]
    fn a_run_across_a_chunk_boundary_names_one_stripe_in_two_slices() {
        let r = StripeRef {
            stripe: StripeId([7; 32]),
            offset: 100,
        };
        let s = slices_over(CHUNK_SIZE - 10, 30, Some(r));
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].chunk, s[0].slice.offset, s[0].slice.len),
            (0, CHUNK_SIZE - 10, 10)
        );
        assert_eq!((s[1].chunk, s[1].slice.offset, s[1].slice.len), (1, 0, 20));
        assert_eq!(s[1].slice.data.map(|d| d.offset), Some(110));
    }
}
