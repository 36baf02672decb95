//! Stage 5, put: every shard of a stripe on its own chunkserver, in parallel (each fsyncs
//! before it acknowledges). Shards that fail are placed again, on servers this stripe has
//! not used yet (one more placement call per retry), and put again, up to `PUT_ATTEMPTS`
//! placements; when every failure of the last attempt was a full server the writer gets
//! `ENOSPC`.

use tessera_proto::fs::ShardPlace;
use tessera_proto::meta::{ChunkserverInfo, PlaceRequest};
use tessera_stripe::{Encoded, PutError};

use crate::data::DataPath;
use crate::error::ClientError;

/// Placements of failed shards (the first included) before a stripe write gives up.
const PUT_ATTEMPTS: usize = 4;

impl DataPath {
    /// Puts the shards of `enc` on `placed` (one server per shard, in order), re-placing
    /// failed ones; returns where each shard is.
    pub(super) async fn put(
        &self,
        enc: &Encoded,
        placed: Vec<ChunkserverInfo>,
    ) -> Result<Vec<ShardPlace>, ClientError> {
        let stripe = enc.stripe_id;
        let n = enc.shards.len();
        let mut places: Vec<Option<ShardPlace>> = vec![None; n];
        let mut used: Vec<u64> = Vec::new();
        let mut want: Vec<usize> = (0..n).collect();
        let mut servers = placed;
        // Every failure of the last attempt was a full chunkserver: the writer gets ENOSPC.
        let mut out_of_space = false;
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                let again = PlaceRequest {
                    count: want.len() as u8,
                    shard_len: enc.shard_len,
                    exclude: used.clone(),
                };
                servers = self.place(&[again]).await?.pop().unwrap_or_default();
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
                    tracing::warn!(%stripe, attempt, "{failures}; re-placing");
                    out_of_space = failures.0.iter().all(|f| f.fault.is_no_space());
                    for (i, p) in stored {
                        places[i] = Some(p);
                    }
                    want = failures.0.iter().map(|f| f.index).collect();
                }
                Err(e) => {
                    let source = Box::new(e);
                    return Err(ClientError::Put { stripe, source });
                }
            }
            if want.is_empty() {
                return places.into_iter().collect::<Option<Vec<_>>>().ok_or(
                    ClientError::PutsFailed {
                        stripe,
                        out_of_space: false,
                    },
                );
            }
        }
        Err(ClientError::PutsFailed {
            stripe,
            out_of_space,
        })
    }
}
