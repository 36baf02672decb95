//! `copy_file_range` that moves no bytes: the target's range gets slices that refer to the
//! stripes the source's range refers to (each slice takes a stripe reference, as any commit
//! does), and hole slices where the source has none. Stripes are immutable, so a later
//! write to either file makes new slices on that side only; a stripe is collected once no
//! slice of any file refers to it.

use std::sync::Arc;

use tessera_proto::fs::{FsError, StripeInfo, StripeRef};

use super::flush::through_gc_race;
use super::read::resolve;
use super::zero::slices_over;
use super::{DataPath, InodeData};
use crate::error::ClientError;

/// The most one call copies (its reply counts bytes in 32 bits); callers such as `cp` go
/// on with the rest.
const MAX_COPY: u64 = 1 << 30;

impl DataPath {
    /// Makes `len` bytes of `dst` at `off_out` refer to the bytes of `src` at `off_in`;
    /// returns how many (fewer at the source's end, at most 1 GiB per call). The caller
    /// flushes both handles first, so buffered bytes are in the layouts. A source stripe
    /// being collected meanwhile (its file overwritten) refuses the reference: the copy is
    /// tried again, with the source's layout read afresh each time.
    pub async fn copy_range(
        &self,
        src: &Arc<InodeData>,
        off_in: u64,
        dst: &Arc<InodeData>,
        off_out: u64,
        len: u64,
    ) -> Result<u64, FsError> {
        through_gc_race(|| self.copy_once(src.ino, off_in, dst, off_out, len))
            .await
            .map_err(FsError::from)
    }

    async fn copy_once(
        &self,
        src: u64,
        off_in: u64,
        dst: &Arc<InodeData>,
        off_out: u64,
        len: u64,
    ) -> Result<u64, ClientError> {
        let want_end = off_in.saturating_add(len.min(MAX_COPY));
        let layout = self.layout(src, None, off_in, want_end).await?;
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
            runs.push((from, p.len(), Some(stripe)));
            at = from + p.len();
        }
        if at < end - off_in {
            runs.push((at, end - off_in - at, None));
        }
        let slices = runs
            .into_iter()
            .flat_map(|(rel, n, data)| slices_over(off_out + rel, n, data))
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
