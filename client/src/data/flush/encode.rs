//! Stage 4, encode: a pack's data split into `k` data shards and `m` Reed-Solomon parity
//! shards (`tessera-stripe`), each named by its BLAKE3 hash and the stripe by a hash over
//! them, so identical data gets identical ids (and deduplicates).

use tessera_stripe::{Codec, Encoded};

use super::pack::Pack;
use crate::error::ClientError;

/// The shards of one pack.
pub(super) fn encode(codec: &Codec, pack: &Pack) -> Result<Encoded, ClientError> {
    codec
        .encode_bytes(pack.data())
        .map_err(|source| ClientError::Code {
            k: codec.k(),
            m: codec.m(),
            source,
        })
}
