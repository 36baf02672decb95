//! Writes: buffer, cut into stripes, store, commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tessera_proto::fs::{
    Attr, CHUNK_SIZE, ChunkSlice, FsError, ShardPlace, Slice, StripeInfo, StripeRef,
};
use tessera_proto::meta::{Op, Response};
use tessera_stripe::{Encoded, PutError, is_all_zero};

use super::{DataPath, InodeData};
use crate::client::ops::unavailable;

/// A write waits for a flush past this many times `max_extents` buffered extents.
const HARD_EXTENTS: u64 = 8;

/// Re-placements of failed shards before a stripe write gives up.
const PUT_ATTEMPTS: usize = 4;
/// How long a commit keeps retrying while GC deletes an identical, unreferenced stripe.
const GC_RACE_WAIT: Duration = Duration::from_secs(30);

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
        let (full, soft, hard) = {
            let mut d = data.lock();
            d.write(off, bytes);
            let s = self.cfg.stripe_size;
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
                let pieces = {
                    let mut d = data.lock();
                    if soft {
                        // Full stripes if there are any (a fast sequential writer), so no
                        // stripe is cut short; else everything (many small extents).
                        d.flush_queued = false;
                        let full = d.take_full_stripes(me.cfg.stripe_size);
                        if full.is_empty() { d.take_all() } else { full }
                    } else {
                        d.take_full_stripes(me.cfg.stripe_size)
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

    /// Stores `pieces` (taken from the buffer; the caller holds the flush lock) and commits
    /// them in one command. They stay readable from `flushing` until the commit is applied.
    async fn store(&self, data: &Arc<InodeData>, pieces: Vec<(u64, Bytes)>) -> Result<(), FsError> {
        if pieces.is_empty() {
            return Ok(());
        }
        data.lock().flushing = pieces.clone();
        let mut result = self.store_inner(data.ino, &pieces).await;
        // `EAGAIN` from the commit: the same content is a stripe that garbage collection is
        // deleting right now. Store the shards again (which also keeps them from the
        // delete) and commit once GC is done with the old stripe.
        let mut backoff = Duration::from_millis(100);
        let give_up = Instant::now() + GC_RACE_WAIT;
        while result == Err(FsError::WouldBlock) && Instant::now() < give_up {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            result = self.store_inner(data.ino, &pieces).await;
        }
        data.lock().flushing.clear();
        match result {
            Ok(attr) => {
                self.saw(&attr);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    ino = data.ino,
                    "writing {} buffered bytes failed: {e}; the data is lost",
                    pieces.iter().map(|(_, b)| b.len()).sum::<usize>()
                );
                Err(e)
            }
        }
    }

    async fn store_inner(&self, ino: u64, pieces: &[(u64, Bytes)]) -> Result<Attr, FsError> {
        let segments: Vec<(u64, Bytes)> = pieces
            .iter()
            .flat_map(|(off, b)| cut(*off, b, self.cfg.stripe_size))
            .collect();
        let mut slices = Vec::with_capacity(segments.len());
        let packs = pack(segments, self.cfg.stripe_size, &mut slices);
        let stored: Vec<(Vec<ChunkSlice>, StripeInfo)> = stream::iter(packs)
            .map(|p| self.store_pack(p))
            .buffered(self.cfg.parallel_stripes.max(1))
            .try_collect()
            .await?;
        let mut stripes: Vec<StripeInfo> = Vec::new();
        for (s, info) in stored {
            slices.extend(s);
            if !stripes.iter().any(|x| x.id == info.id) {
                stripes.push(info);
            }
        }
        let op = Op::CommitSlice {
            ino,
            slices,
            stripes,
        };
        match self
            .meta
            .write(op)
            .await
            .map_err(|e| unavailable("commit", e))??
        {
            Response::Attr(a) => Ok(a),
            other => {
                tracing::error!("commit: unexpected reply {other:?}");
                Err(FsError::Io)
            }
        }
    }

    /// One stripe holding the segments of `pack` back to back, and a slice per segment
    /// pointing at its bytes.
    async fn store_pack(
        &self,
        pack: Vec<(u64, Bytes)>,
    ) -> Result<(Vec<ChunkSlice>, StripeInfo), FsError> {
        let data = match &pack[..] {
            [(_, b)] => b.clone(),
            many => {
                let mut buf = Vec::with_capacity(many.iter().map(|(_, b)| b.len()).sum::<usize>());
                for (_, b) in many {
                    buf.extend_from_slice(b);
                }
                Bytes::from(buf)
            }
        };
        let codec = self.chunks.codec(self.cfg.k, self.cfg.m).map_err(|e| {
            tracing::error!("erasure code {}+{}: {e}", self.cfg.k, self.cfg.m);
            FsError::Io
        })?;
        let encoded = codec.encode_bytes(data).map_err(|e| {
            tracing::error!("encoding a stripe failed: {e}");
            FsError::Io
        })?;
        let places = self.put(&encoded).await?;
        let mut at = 0u64;
        let slices = pack
            .iter()
            .map(|(off, b)| {
                let slice = Slice {
                    offset: off % CHUNK_SIZE,
                    len: b.len() as u64,
                    data: Some(StripeRef {
                        stripe: encoded.stripe_id,
                        offset: at,
                    }),
                };
                at += b.len() as u64;
                ChunkSlice {
                    chunk: off / CHUNK_SIZE,
                    slice,
                }
            })
            .collect();
        Ok((slices, encoded.info(places)))
    }

    /// Puts every shard on its own chunkserver, re-placing failed ones on other servers.
    async fn put(&self, enc: &Encoded) -> Result<Vec<ShardPlace>, FsError> {
        let n = enc.shards.len();
        let mut places: Vec<Option<ShardPlace>> = vec![None; n];
        let mut used: Vec<u64> = Vec::new();
        let mut want: Vec<usize> = (0..n).collect();
        // Every failure of the last attempt was a full chunkserver: the writer gets ENOSPC.
        let mut out_of_space = false;
        for attempt in 0..PUT_ATTEMPTS {
            let servers = self
                .meta
                .place_stripe(want.len() as u8, enc.shard_len, used.clone())
                .await
                .map_err(|e| unavailable("place stripe", e))?;
            if servers.len() < want.len() {
                tracing::error!(
                    stripe = %enc.stripe_id,
                    "only {} chunkservers available for {} shards; start more chunkservers or use a smaller --ec",
                    servers.len(),
                    want.len()
                );
                return Err(FsError::NoSpace);
            }
            {
                let mut a = self.addrs.write().unwrap_or_else(|e| e.into_inner());
                for s in &servers {
                    a.insert(s.id, s.addr.clone());
                }
            }
            let targets: Vec<(usize, u64, String)> = want
                .iter()
                .zip(&servers)
                .map(|(i, s)| (*i, s.id, s.addr.clone()))
                .collect();
            used.extend(servers.iter().map(|s| s.id));
            match self.chunks.put_shards_at(enc, &targets).await {
                Ok(done) => {
                    for ((i, _, _), p) in targets.iter().zip(done) {
                        places[*i] = Some(p);
                    }
                    want.clear();
                }
                Err(PutError::Failed {
                    stored, failures, ..
                }) => {
                    tracing::warn!(stripe = %enc.stripe_id, attempt, "{failures}; re-placing");
                    out_of_space = failures.0.iter().all(|f| f.fault.is_no_space());
                    for (i, p) in stored {
                        places[i] = Some(p);
                    }
                    want = failures.0.iter().map(|f| f.index).collect();
                }
                Err(e) => {
                    tracing::error!("{e}");
                    return Err(FsError::Io);
                }
            }
            if want.is_empty() {
                return places
                    .into_iter()
                    .map(|p| p.ok_or(FsError::Io))
                    .collect::<Result<Vec<_>, _>>();
            }
        }
        tracing::error!(stripe = %enc.stripe_id, "shard puts kept failing; check the chunkservers");
        Err(if out_of_space {
            FsError::NoSpace
        } else {
            FsError::Io
        })
    }
}

/// Sorts segments into what a flush stores: all-zero ones become hole slices (pushed to
/// `holes`), full stripes are stored alone, and short ones are packed together into shared
/// stripes of up to `stripe` bytes, so many small random writes cost one stripe put, not
/// one each.
fn pack(
    segments: Vec<(u64, Bytes)>,
    stripe: u64,
    holes: &mut Vec<ChunkSlice>,
) -> Vec<Vec<(u64, Bytes)>> {
    let mut packs = Vec::new();
    let mut open: Vec<(u64, Bytes)> = Vec::new();
    let mut open_len = 0u64;
    for (off, b) in segments {
        let len = b.len() as u64;
        if is_all_zero(&b) {
            holes.push(ChunkSlice {
                chunk: off / CHUNK_SIZE,
                slice: Slice {
                    offset: off % CHUNK_SIZE,
                    len,
                    data: None,
                },
            });
        } else if len >= stripe {
            packs.push(vec![(off, b)]);
        } else {
            if open_len + len > stripe {
                packs.push(std::mem::take(&mut open));
                open_len = 0;
            }
            open_len += len;
            open.push((off, b));
        }
    }
    if !open.is_empty() {
        packs.push(open);
    }
    packs
}

/// Cuts `bytes` at `off` at every multiple of `stripe` and of `CHUNK_SIZE` in the file.
fn cut(off: u64, bytes: &Bytes, stripe: u64) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let end = off + bytes.len() as u64;
    let mut at = off;
    while at < end {
        let next_stripe = (at / stripe + 1) * stripe;
        let next_chunk = (at / CHUNK_SIZE + 1) * CHUNK_SIZE;
        let stop = next_stripe.min(next_chunk).min(end);
        out.push((at, bytes.slice((at - off) as usize..(stop - off) as usize)));
        at = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_stripe_and_chunk_boundaries() {
        let b = Bytes::from(vec![1u8; 20]);
        let spans: Vec<(u64, usize)> = cut(5, &b, 8).iter().map(|(o, b)| (*o, b.len())).collect();
        assert_eq!(spans, vec![(5, 3), (8, 8), (16, 8), (24, 1)]);
        let big = Bytes::from(vec![1u8; 10]);
        let spans: Vec<(u64, usize)> = cut(CHUNK_SIZE - 4, &big, 3 << 20)
            .iter()
            .map(|(o, b)| (*o, b.len()))
            .collect();
        assert_eq!(spans, vec![(CHUNK_SIZE - 4, 4), (CHUNK_SIZE, 6)]);
    }

    #[test]
    fn short_segments_share_stripes_and_zeros_are_holes() {
        let seg = |off: u64, len: usize, v: u8| (off, Bytes::from(vec![v; len]));
        let mut holes = Vec::new();
        let packs = pack(
            vec![
                seg(0, 3, 1),
                seg(10, 4, 0),
                seg(20, 5, 2),
                seg(32, 8, 3),
                seg(50, 2, 4),
            ],
            8,
            &mut holes,
        );
        let shape: Vec<Vec<(u64, usize)>> = packs
            .iter()
            .map(|p| p.iter().map(|(o, b)| (*o, b.len())).collect())
            .collect();
        assert_eq!(
            shape,
            vec![vec![(32, 8)], vec![(0, 3), (20, 5)], vec![(50, 2)]]
        );
        assert_eq!(holes.len(), 1);
        assert_eq!((holes[0].slice.offset, holes[0].slice.len), (10, 4));
        assert!(holes[0].slice.data.is_none());
    }
}
