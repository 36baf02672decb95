//! Stage 5, put: every shard of a stripe on its own chunkserver, in parallel (each fsyncs
//! before it acknowledges).
//!
//! A stripe is stored once the write rule's minimum (`k + spare` shards) is: the servers
//! still out then get a short grace and are given up (a black-holed server must not hold a
//! writer for the put deadline; this mount's `Health` quarantines it, so the next placement
//! excludes it). Shards that failed while fewer than the minimum are stored are placed again
//! on servers this stripe has not used (one more placement call per retry), up to
//! `PUT_ATTEMPTS` placements. What is still missing then is recorded as stored nowhere
//! (`ShardPlace::NOWHERE`) and rebuilt by the leader's repair. Below the minimum the writer
//! gets `EIO`, or `ENOSPC` when every failure of the last attempt was a full server.

use std::time::Duration;

use tessera_proto::fs::ShardPlace;
use tessera_proto::meta::{ChunkserverInfo, PlaceRequest};
use tessera_stripe::{Encoded, PutError, Quorum};

use crate::data::DataPath;
use crate::error::ClientError;

/// Placements of failed shards (the first included) before a stripe write gives up.
const PUT_ATTEMPTS: usize = 4;
/// Least time the puts still out get once the minimum is stored (more when the minimum
/// itself was slow: three times what it took).
const STRAGGLER_GRACE: Duration = Duration::from_millis(1200);

impl DataPath {
    /// Puts the shards of `enc` on `placed` (one server per shard, in order; fewer servers
    /// than shards leave the rest to re-placement), until at least `min` are stored; returns
    /// where each shard is, `NOWHERE` for the missing ones.
    pub(super) async fn put(
        &self,
        enc: &Encoded,
        placed: Vec<ChunkserverInfo>,
        min: usize,
    ) -> Result<Vec<ShardPlace>, ClientError> {
        let stripe = enc.stripe_id;
        let n = enc.shards.len();
        let min = min.min(n);
        let mut places: Vec<Option<ShardPlace>> = vec![None; n];
        let mut used: Vec<u64> = Vec::new();
        let mut servers = placed;
        // Every failure of the last attempt was a full chunkserver: the writer gets ENOSPC.
        let mut out_of_space = false;
        let mut last = String::from("no server could be placed on");
        for attempt in 0..PUT_ATTEMPTS {
            let want: Vec<usize> = (0..n).filter(|i| places[*i].is_none()).collect();
            let stored = n - want.len();
            if want.is_empty() || stored >= min {
                break;
            }
            if attempt > 0 {
                let mut exclude = used.clone();
                exclude.extend(self.chunks.health().unreachable_servers());
                // The stripe was admitted by its first placement: room held back for
                // preallocations is not asked of it again.
                let again = PlaceRequest {
                    count: want.len() as u8,
                    shard_len: enc.shard_len,
                    exclude,
                    min: 1,
                    k: 1,
                    reserved: true,
                };
                servers = match self.place(&[again]).await {
                    Ok(mut lists) => lists.pop().unwrap_or_default(),
                    Err(e) => {
                        last = e.to_string();
                        break;
                    }
                };
            }
            let targets: Vec<(usize, u64, String)> = want
                .iter()
                .zip(&servers)
                .map(|(i, s)| (*i, s.id, s.addr.clone()))
                .collect();
            if targets.is_empty() {
                break;
            }
            used.extend(servers.iter().map(|s| s.id));
            let quorum = Quorum {
                need: min - stored,
                grace: STRAGGLER_GRACE,
            };
            match self
                .chunks
                .put_shards_until(enc, &targets, Some(quorum))
                .await
            {
                Ok(done) => {
                    for ((i, _, _), p) in targets.iter().zip(done) {
                        places[*i] = Some(p);
                    }
                }
                Err(PutError::Failed {
                    stored, failures, ..
                }) => {
                    out_of_space = failures.0.iter().all(|f| f.fault.is_no_space());
                    last = failures.to_string();
                    for (i, p) in stored {
                        places[i] = Some(p);
                    }
                }
                Err(e) => {
                    let source = Box::new(e);
                    return Err(ClientError::Put { stripe, source });
                }
            }
        }
        let stored = places.iter().flatten().count();
        if stored < min {
            return Err(ClientError::PutsFailed {
                stripe,
                stored,
                need: min,
                out_of_space,
                last,
            });
        }
        if stored < n {
            tracing::info!(%stripe, stored, of = n,
                "stripe stored degraded ({last}); repair rebuilds the missing shards");
        }
        Ok(places
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                p.unwrap_or(ShardPlace {
                    shard: enc.ids[i],
                    server: ShardPlace::NOWHERE,
                })
            })
            .collect())
    }
}
