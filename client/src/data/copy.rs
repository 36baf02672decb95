//! `copy_file_range` that moves no bytes: the target's range gets slices that refer to the
//! stripes the source's range refers to (each slice takes a stripe reference, as any commit
//! does), and hole slices where the source has none. Stripes are immutable, so a later
//! write to either file makes new slices on that side only; a stripe is collected once no
//! slice of any file refers to it.

use std::sync::Arc;
use std::time::Duration;

use tessera_proto::fs::{CHUNK_SIZE, ChunkSlice, FsError, Slice, StripeInfo, StripeRef};

use super::read::resolve;
use super::{DataPath, InodeData};
use crate::error::ClientError;

/// The most one call copies (its reply counts bytes in 32 bits); callers such as `cp` go
/// on with the rest.
const MAX_COPY: u64 = 1 << 30;
/// A source stripe being collected meanwhile (its file overwritten) refuses the reference:
/// the layout is read again, this many times.
const ATTEMPTS: u32 = 5;

impl DataPath {
    /// Makes `len` bytes of `dst` at `off_out` refer to the bytes of `src` at `off_in`;
    /// returns how many (fewer at the source's end, at most 1 GiB per call). The caller
    /// flushes both handles first, so buffered bytes are in the layouts.
    pub async fn copy_range(
        &self,
        src: &Arc<InodeData>,
        off_in: u64,
        dst: &Arc<InodeData>,
        off_out: u64,
        len: u64,
    ) -> Result<u64, FsError> {
        let mut attempt = 1;
        loop {
            match self.copy_once(src, off_in, dst, off_out, len).await {
                Err(ClientError::Fs(FsError::WouldBlock)) if attempt < ATTEMPTS => {
                    attempt += 1;
                    src.invalidate();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r.map_err(FsError::from),
            }
        }
    }

    async fn copy_once(
        &self,
        src: &Arc<InodeData>,
        off_in: u64,
        dst: &Arc<InodeData>,
        off_out: u64,
        len: u64,
    ) -> Result<u64, ClientError> {
        let want_end = off_in.saturating_add(len.min(MAX_COPY));
        let layout = self.layout(src.ino, Some(src), off_in, want_end).await?;
        let end = want_end.min(layout.size);
        if end <= off_in {
            return Ok(0);
        }
        off_out
            .checked_add(end - off_in)
            .ok_or(FsError::FileTooLarge)?;
        // Source runs in order: data pieces from the layout, holes between them.
        let mut pieces = resolve(&layout, off_in, end);
        pieces.sort_by_key(|p| p.out_at);
        let mut runs: Vec<(u64, u64, Option<StripeRef>)> = Vec::new();
        let mut at = 0u64;
        for p in &pieces {
            let from = p.out_at as u64;
            if from > at {
                runs.push((at, from - at, None));
            }
            let stripe = StripeRef {
                stripe: p.stripe,
                offset: p.start,
            };
            runs.push((from, p.end - p.start, Some(stripe)));
            at = from + (p.end - p.start);
        }
        if at < end - off_in {
            runs.push((at, end - off_in - at, None));
        }
        let slices = runs
            .into_iter()
            .flat_map(|(rel, n, data)| target_slices(off_out + rel, n, data))
            .collect();
        let used: Vec<StripeInfo> = layout
            .stripes
            .iter()
            .filter(|s| pieces.iter().any(|p| p.stripe == s.id))
            .cloned()
            .collect();
        let _g = dst.flush_lock.lock().await;
        let attr = self.commit_slices(dst.ino, slices, used).await?;
        self.saw(&attr);
        Ok(end - off_in)
    }
}

/// Slices putting `n` bytes at file offset `at`, cut at chunk boundaries; `data` (if any)
/// is where the first byte lies in its stripe.
fn target_slices(at: u64, n: u64, data: Option<StripeRef>) -> Vec<ChunkSlice> {
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
    fn a_run_across_a_chunk_boundary_becomes_two_slices_of_one_stripe() {
        let r = StripeRef {
            stripe: StripeId([7; 32]),
            offset: 100,
        };
        let s = target_slices(CHUNK_SIZE - 10, 30, Some(r));
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].chunk, s[0].slice.offset, s[0].slice.len),
            (0, CHUNK_SIZE - 10, 10)
        );
        assert_eq!((s[1].chunk, s[1].slice.offset, s[1].slice.len), (1, 0, 20));
        assert_eq!(s[1].slice.data.map(|d| d.offset), Some(110));
        assert!(target_slices(5, 0, None).is_empty());
    }
}
