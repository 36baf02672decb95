//! A flush: what the write buffer took, stored and committed as one pipeline of named
//! stages, one file each, run in this order:
//!
//! 1. `cut.rs`: extents cut at stripe-aligned offsets and chunk boundaries.
//! 2. `pack.rs`: all-zero segments become holes, full stripes stand alone, short segments
//!    share stripes.
//! 3. `place.rs`: one `PlaceStripes` call places every stripe of the flush.
//! 4. `encode.rs`: each stripe split into `k + m` shards with BLAKE3 ids.
//! 5. `put.rs`: shards put in parallel until the write rule's minimum is stored, failed
//!    ones placed again; what is still missing is left to repair (a degraded stripe).
//! 6. `commit.rs`: one `CommitSlice` for the whole flush.
//!
//! Every stage works in the file's own code and stripe size (`code.rs`: its layout, or
//! this mount's `--ec` for a file without one).
//!
//! Encode and put run for `parallel_stripes` stripes at a time; placement comes first
//! because it needs only each stripe's length. A commit answered `EAGAIN` (the same content
//! is a stripe that garbage collection is deleting right now) runs the pipeline again.

mod commit;
mod cut;
mod encode;
mod pack;
mod place;
mod put;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tessera_proto::fs::{Attr, ChunkSlice, FsError, Ino, StripeInfo};

use super::{DataPath, InodeData};
use crate::error::ClientError;
use cut::Segment;
use pack::Packed;

/// How long a commit keeps retrying while GC deletes an identical, unreferenced stripe.
const GC_RACE_WAIT: Duration = Duration::from_secs(30);

/// Runs `attempt` again while it fails with `WouldBlock`, which a commit gets when a stripe
/// it references is being deleted by GC (it has no references left), backing off from
/// 100 ms to 2 s, for at most [`GC_RACE_WAIT`].
pub(in crate::data) async fn through_gc_race<T, F, Fut>(mut attempt: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut result = attempt().await;
    let mut backoff = Duration::from_millis(100);
    let give_up = Instant::now() + GC_RACE_WAIT;
    while matches!(result, Err(ClientError::Fs(FsError::WouldBlock))) && Instant::now() < give_up {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
        result = attempt().await;
    }
    result
}

impl DataPath {
    /// Stores `pieces` (taken from the buffer; the caller holds the flush lock) and commits
    /// them in one command. They stay readable from `flushing` until the commit is applied.
    pub(super) async fn store(
        &self,
        data: &Arc<InodeData>,
        pieces: Vec<Segment>,
    ) -> Result<(), FsError> {
        if pieces.is_empty() {
            return Ok(());
        }
        data.lock().flushing = pieces.clone();
        // Storing the shards again also keeps them from the GC's delete; the commit goes
        // through once GC is done with the old stripe.
        let result = through_gc_race(|| self.store_once(data.ino, &pieces)).await;
        data.lock().flushing.clear();
        match result {
            Ok(attr) => {
                self.saw(&attr);
                Ok(())
            }
            Err(e) => {
                let e = FsError::from(e);
                tracing::error!(
                    ino = data.ino,
                    "writing {} buffered bytes failed: {e}; the data is lost",
                    pieces.iter().map(|(_, b)| b.len()).sum::<usize>()
                );
                Err(e)
            }
        }
    }

    /// One run of the pipeline over `pieces`.
    async fn store_once(&self, ino: Ino, pieces: &[Segment]) -> Result<Attr, ClientError> {
        // The file's layout (decided by the metadata service), not necessarily this mount's.
        let code = self.file_code(ino).await?;
        let stripe = code.stripe_size;
        let Packed { packs, holes } = pack::pack(cut::cut_all(pieces, stripe), stripe);
        let codec = self.codec_for(code)?;
        let min = self.rule.min_shards(codec.k(), codec.m());
        let unreachable = self.chunks.health().unreachable_servers();
        let wants = packs
            .iter()
            .map(|p| {
                let reserved = self.within_reserved(ino, &p.extents());
                place::request(&codec, p, min, &unreachable, reserved)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let placed = self.place(&wants).await?;
        let stored: Vec<(Vec<ChunkSlice>, StripeInfo)> =
            stream::iter(packs.into_iter().zip(placed))
                .map(|(pack, servers)| {
                    let codec = codec.clone();
                    async move {
                        let enc = encode::encode(&codec, &pack)?;
                        let places = self.put(&enc, servers, min).await?;
                        Ok::<_, ClientError>((pack.slices(enc.stripe_id), enc.info(places)))
                    }
                })
                .buffered(self.cfg.parallel_stripes.max(1))
                .try_collect()
                .await?;
        self.commit(ino, holes, stored).await
    }
}
