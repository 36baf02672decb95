//! Writes: when buffered bytes are flushed. A write is buffered (`dirty.rs`); full stripes
//! go to a background flush at once, everything else on `fsync`, `flush` (close),
//! `release`, the 1 s timer (`mod.rs`) or when too much is buffered. Each flush runs the
//! pipeline in `flush/`.

use std::sync::Arc;

use tessera_proto::fs::FsError;

use super::{DataPath, InodeData};

/// A write waits for a flush past this many times `max_extents` buffered extents.
const HARD_EXTENTS: u64 = 8;

impl DataPath {
    /// Buffers a write without waiting for anything but the inode's buffer lock, so the
    /// FUSE thread can answer at once. Full stripes the write completes are stored by a
    /// background task (one at a time per inode, each taking every full stripe buffered by
    /// then, so a fast writer's stripes are stored in parallel). When the inode buffers more
    /// than `max_dirty` bytes or `max_extents` extents, a background task stores everything
    /// buffered while the writer goes on; only past twice `max_dirty` or `HARD_EXTENTS`
    /// times `max_extents` does this return `true`: the caller must then [`Self::flush`]
    /// before answering, which paces a writer to the cluster's speed.
    pub fn buffer_write(
        self: &Arc<Self>,
        data: &Arc<InodeData>,
        off: u64,
        bytes: &[u8],
    ) -> Result<bool, FsError> {
        let end = off
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= tessera_proto::fs::FILE_SIZE_MAX)
            .ok_or(FsError::FileTooLarge)?;
        // A background flush refused by a directory quota: the writer hears it at its next
        // write, not only at fsync or close (where it is reported again, and cleared), so
        // it stops buffering data that cannot be committed.
        let refused = *data.error.lock().unwrap_or_else(|e| e.into_inner());
        if refused == Some(FsError::QuotaExceeded) {
            return Err(FsError::QuotaExceeded);
        }
        let (full, soft, hard) = {
            let mut d = data.lock();
            d.write(off, bytes);
            let s = self.stripe_size_hint(data.ino);
            let held = d.bytes() + d.flushing_bytes();
            let over = |bytes: u64, extents: u64| {
                held > bytes.saturating_mul(self.cfg.max_dirty)
                    || d.extents() as u64 > extents.saturating_mul(self.cfg.max_extents as u64)
            };
            // Extents wait longer than bytes: while one commit of many small slices is being
            // applied (its cost grows with the chunk's record), the next batch gathers.
            let (soft, hard) = (over(1, 1) && !d.flush_queued, over(2, HARD_EXTENTS));
            if soft && !hard {
                d.flush_queued = true;
            }
            // A stripe boundary crossed by this write may have completed a stripe.
            (off / s != end / s || end % s == 0, soft, hard)
        };
        if hard {
            return Ok(true);
        }
        if soft || full {
            let (me, data) = (self.clone(), data.clone());
            self.rt.spawn(async move {
                let _g = data.flush_lock.lock().await;
                // Full stripes of the file's own stripe size (its layout's).
                let stripe = match me.file_code(data.ino).await {
                    Ok(c) => c.stripe_size,
                    Err(e) => {
                        let mut err = data.error.lock().unwrap_or_else(|p| p.into_inner());
                        err.get_or_insert(e.into());
                        return;
                    }
                };
                let pieces = {
                    let mut d = data.lock();
                    if soft {
                        // Full stripes if there are any (a fast sequential writer), so no
                        // stripe is cut short; else everything (many small extents).
                        d.flush_queued = false;
                        let full = d.take_full_stripes(stripe);
                        if full.is_empty() { d.take_all() } else { full }
                    } else {
                        d.take_full_stripes(stripe)
                    }
                };
                if let Err(e) = me.store(&data, pieces).await {
                    let mut err = data.error.lock().unwrap_or_else(|p| p.into_inner());
                    err.get_or_insert(e);
                }
            });
        }
        Ok(false)
    }

    /// [`Self::buffer_write`], then the flush it may ask for.
    pub async fn write(
        self: &Arc<Self>,
        data: &Arc<InodeData>,
        off: u64,
        bytes: &[u8],
    ) -> Result<(), FsError> {
        if self.buffer_write(data, off, bytes)? {
            self.flush(data).await?;
        }
        Ok(())
    }

    /// Stores and commits everything buffered for the inode; returns once the commit is
    /// applied (the `fsync`/`close` durability point). Reports an earlier background
    /// flush failure once.
    pub async fn flush(&self, data: &Arc<InodeData>) -> Result<(), FsError> {
        let _g = data.flush_lock.lock().await;
        let pieces = data.lock().take_all();
        self.store(data, pieces).await?;
        match data.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
