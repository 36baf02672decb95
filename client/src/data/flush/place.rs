//! Stage 3, place: chunkservers for every stripe of the flush, asked of the metadata leader
//! in one `PlaceStripes` call before anything is encoded (a stripe's shard length follows
//! from its data length alone). Shards whose put fails are placed again by `put.rs`: one
//! more call per retry of that stripe.

use tessera_proto::meta::{ChunkserverInfo, PlaceRequest};
use tessera_stripe::Codec;

use super::pack::Pack;
use crate::data::DataPath;
use crate::error::ClientError;

/// What the leader needs to place `pack`: `k + m` distinct servers with room for its shards.
pub(super) fn request(codec: &Codec, pack: &Pack) -> Result<PlaceRequest, ClientError> {
    let code = |source| ClientError::Code {
        k: codec.k(),
        m: codec.m(),
        source,
    };
    let shard_len = codec.shard_len_for(pack.len() as usize).map_err(code)?;
    Ok(PlaceRequest {
        count: codec.k() + codec.m(),
        shard_len: shard_len as u64,
        exclude: Vec::new(),
    })
}

impl DataPath {
    /// Servers for each request, in order, in one call; fewer than a request asks for (the
    /// servers with room ran out) is `ENOSPC`.
    pub(super) async fn place(
        &self,
        wants: &[PlaceRequest],
    ) -> Result<Vec<Vec<ChunkserverInfo>>, ClientError> {
        if wants.is_empty() {
            return Ok(Vec::new());
        }
        let placed = self
            .meta
            .place_stripes(wants.to_vec())
            .await
            .map_err(|e| ClientError::meta("place stripes", e))?;
        if placed.len() != wants.len() {
            return Err(ClientError::unexpected("place stripes", &placed.len()));
        }
        for (want, servers) in wants.iter().zip(&placed) {
            if servers.len() < usize::from(want.count) {
                return Err(ClientError::TooFewServers {
                    have: servers.len(),
                    want: usize::from(want.count),
                });
            }
        }
        // Reads of what this flush stores may follow at once: know where the servers are.
        let mut a = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        for s in placed.iter().flatten() {
            a.insert(s.id, s.addr.clone());
        }
        Ok(placed)
    }
}
