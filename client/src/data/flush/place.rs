//! Stage 3, place: chunkservers for every stripe of the flush, asked of the metadata leader
//! in one `PlaceStripes` call before anything is encoded (a stripe's shard length follows
//! from its data length alone). Servers this mount cannot reach are excluded; fewer than
//! `k + m` servers will do as long as the write rule's minimum is met (a degraded write).
//! Shards whose put fails are placed again by `put.rs`: one more call per retry of that
//! stripe.

use tessera_proto::meta::{ChunkserverInfo, ChunkserverState, PlaceRequest};
use tessera_stripe::Codec;

use super::pack::Pack;
use crate::data::DataPath;
use crate::error::ClientError;

/// What the leader needs to place `pack`: `k + m` distinct servers with room for its shards,
/// at least `min`, none in `exclude`; `reserved` when all of it goes into ranges its file
/// preallocated (it may use the room held back for them).
pub(super) fn request(
    codec: &Codec,
    pack: &Pack,
    min: usize,
    exclude: &[u64],
    reserved: bool,
) -> Result<PlaceRequest, ClientError> {
    let code = |source| ClientError::Code {
        k: codec.k(),
        m: codec.m(),
        source,
    };
    let shard_len = codec.shard_len_for(pack.len() as usize).map_err(code)?;
    Ok(PlaceRequest {
        count: codec.k() + codec.m(),
        shard_len: shard_len as u64,
        exclude: exclude.to_vec(),
        min: min as u8,
        k: codec.k(),
        reserved,
    })
}

impl DataPath {
    /// Servers for each request, in order, in one call. Fewer than a request's minimum is
    /// an error naming the cause: too few servers up and reachable (`EIO`) or too few with
    /// room (`ENOSPC`).
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
            let min = match want.min {
                0 => want.count,
                min => min,
            };
            if servers.len() < usize::from(min) {
                return Err(self.shortage(servers.len(), usize::from(min)).await);
            }
        }
        // Reads of what this flush stores may follow at once: know where the servers are.
        let mut a = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        for s in placed.iter().flatten() {
            a.insert(s.id, s.addr.clone());
        }
        Ok(placed)
    }

    /// Why only `have` servers could be placed on: too few up and reachable, or too few
    /// with room.
    async fn shortage(&self, have: usize, want: usize) -> ClientError {
        let Ok(list) = self.meta.list_chunkservers().await else {
            return ClientError::TooFewServers { have, want };
        };
        let health = self.chunks.health();
        let up = list
            .iter()
            .filter(|s| s.state == ChunkserverState::Up && !health.unreachable(s.id))
            .count();
        if up < want {
            ClientError::TooFewUp {
                up,
                known: list.len(),
                want,
            }
        } else {
            ClientError::TooFewServers { have, want }
        }
    }
}
