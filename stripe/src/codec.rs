//! The stripe codec: split up to one stripe of data into `k` data shards, compute `m`
//! Reed-Solomon parity shards, name every shard by its BLAKE3 hash and the stripe by a hash
//! of those; and the reverse (in `decode`): rebuild the data, or any one shard, from any
//! `k` shards that verify against their ids.
//!
//! Cost is what matters here (design §6: a copy costs about as much as a hash), so encoding
//! touches each byte as few times as possible:
//! - [`Codec::encode_bytes`] copies no full data shard: they are slices of the caller's
//!   buffer; only shards that need padding are copied. [`Codec::encode`] copies the input
//!   once, into one buffer that then holds every shard.
//! - Parity and hashes are computed column block by column block ([`COLUMN_BLOCK`]), so the
//!   `k + m` pieces of a block are still in cache when BLAKE3 reads them after Reed-Solomon
//!   wrote them. See `benches/codec.rs`: BLAKE3 of every shard is the largest part of the
//!   cost, Reed-Solomon the next, and the one copy of `encode` about a sixth.

pub(crate) mod decode;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;
use tessera_proto::ShardId;
use tessera_proto::fs::{ShardPlace, StripeId, StripeInfo, StripeLayout};
use tessera_rpc::pool;

use crate::error::CodecError;
use crate::layout::MAX_SHARD_LEN;

/// Bytes of each shard coded and hashed together. Measured in `benches/codec.rs` (1 MiB
/// shards): 16-256 KiB blocks encode at the same speed, whole 1 MiB shards about 10% slower;
/// at 64 KiB the `k + m` pieces of a block (384-704 KiB for RS(4,2)-RS(8,3)) stay in L2.
pub const COLUMN_BLOCK: usize = 64 << 10;

/// Prefix of the stripe id's hash input, so a stripe id can never equal the hash of
/// anything else this system hashes (a shard, a header).
const STRIPE_ID_DOMAIN: &[u8] = b"tessera stripe id v1\0";

/// A Reed-Solomon `k + m` codec. Build one per code and keep it: it caches the encoding
/// matrix and the inverted matrices of past reconstructions. `Send + Sync`.
pub struct Codec {
    k: u8,
    m: u8,
    /// `None` for `m == 0`, which the library does not support and needs no parity.
    rs: Option<ReedSolomon>,
    /// Bytes of each shard coded and hashed together; [`COLUMN_BLOCK`] unless tuned.
    column_block: usize,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Codec({}+{})", self.k, self.m)
    }
}

/// One encoded stripe, ready to put: `k + m` shards (data first) and their ids.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub k: u8,
    pub m: u8,
    /// `k + m` shards of `shard_len` bytes each.
    pub shards: Vec<Bytes>,
    /// `ids[i] == ShardId::of(&shards[i])`.
    pub ids: Vec<ShardId>,
    pub shard_len: u64,
    /// Bytes of data before padding.
    pub data_len: u64,
    /// [`stripe_id`] of the above: equal data with an equal code gives an equal id.
    pub stripe_id: StripeId,
}

impl Encoded {
    /// The layout of this stripe once its shards are stored at `places` (as returned by
    /// `ChunkClient::put_shards`, one per shard in index order).
    pub fn layout(&self, places: Vec<ShardPlace>) -> StripeLayout {
        debug_assert!(places.iter().map(|p| p.shard).eq(self.ids.iter().copied()));
        StripeLayout {
            k: self.k,
            m: self.m,
            shard_len: self.shard_len,
            data_len: self.data_len,
            shards: places,
        }
    }

    /// [`Self::layout`] with the stripe id.
    pub fn info(&self, places: Vec<ShardPlace>) -> StripeInfo {
        StripeInfo {
            id: self.stripe_id,
            layout: self.layout(places),
        }
    }
}

/// The id of a stripe: BLAKE3 over a domain tag, `k`, `m`, the data length (little-endian)
/// and the shard ids in order.
pub fn stripe_id(k: u8, m: u8, data_len: u64, ids: &[ShardId]) -> StripeId {
    let mut h = blake3::Hasher::new();
    h.update(STRIPE_ID_DOMAIN);
    h.update(&[k, m]);
    h.update(&data_len.to_le_bytes());
    for id in ids {
        h.update(id.as_bytes());
    }
    StripeId(*h.finalize().as_bytes())
}

/// The id a layout's stripe must have (for admin tools checking metadata).
pub fn stripe_id_of(layout: &StripeLayout) -> StripeId {
    let ids: Vec<ShardId> = layout.shards.iter().map(|p| p.shard).collect();
    stripe_id(layout.k, layout.m, layout.data_len, &ids)
}

impl Codec {
    /// A codec for `k` data and `m` parity shards: `1 <= k`, `k + m <= 255`.
    pub fn new(k: usize, m: usize) -> Result<Codec, CodecError> {
        let bad = || CodecError::BadCode { k, m };
        if k == 0 || k.checked_add(m).is_none_or(|n| n > 255) {
            return Err(bad());
        }
        let rs = match m {
            0 => None,
            _ => Some(ReedSolomon::new(k, m).map_err(|_| bad())?),
        };
        Ok(Codec {
            k: u8::try_from(k).map_err(|_| bad())?,
            m: u8::try_from(m).map_err(|_| bad())?,
            rs,
            column_block: COLUMN_BLOCK,
        })
    }

    /// The same codec coding and hashing `bytes` columns at a time (at least 1 KiB, one
    /// BLAKE3 chunk); for tuning and benchmarks. Results are identical for any value.
    pub fn with_column_block(mut self, bytes: usize) -> Codec {
        self.column_block = bytes.max(1024);
        self
    }

    /// Data shards per stripe.
    pub fn k(&self) -> u8 {
        self.k
    }

    /// Parity shards per stripe.
    pub fn m(&self) -> u8 {
        self.m
    }

    /// The shard length for `len` bytes of data: `ceil(len / k)`.
    pub fn shard_len_for(&self, len: usize) -> Result<usize, CodecError> {
        if len == 0 {
            return Err(CodecError::Empty);
        }
        let shard_len = len.div_ceil(usize::from(self.k));
        if shard_len as u64 > MAX_SHARD_LEN {
            return Err(CodecError::TooLarge {
                len: len as u64,
                k: self.k,
                shard_len: shard_len as u64,
                max: MAX_SHARD_LEN,
            });
        }
        Ok(shard_len)
    }

    /// Encodes `data` (one stripe: the caller cuts at its stripe size) with one copy of the
    /// input: all shards are slices of one buffer. Empty data is an error: store a hole.
    pub fn encode(&self, data: &[u8]) -> Result<Encoded, CodecError> {
        let s = self.shard_len_for(data.len())?;
        let n = self.n();
        let mut buf = pool::take(n * s);
        buf.extend_from_slice(data);
        // Zero padding and the parity area in one fill; parity is overwritten below, but safe
        // Rust has no uninitialised buffers, and a memset is far cheaper than a hash.
        buf.resize(n * s, 0);
        let ids = {
            let (data_area, parity_area) = buf.split_at_mut(self.k() as usize * s);
            let data_shards: Vec<&[u8]> = data_area.chunks(s).collect();
            let mut parity: Vec<&mut [u8]> = parity_area.chunks_mut(s).collect();
            self.code_and_hash(&data_shards, &mut parity)?
        };
        let all = pool::freeze(buf);
        let shards = (0..n).map(|i| all.slice(i * s..(i + 1) * s)).collect();
        Ok(self.finish(shards, ids, s, data.len()))
    }

    /// Encodes `data` without copying it: full data shards are slices of `data`; only the
    /// shards that need zero padding are copied. Empty data is an error: store a hole.
    pub fn encode_bytes(&self, data: Bytes) -> Result<Encoded, CodecError> {
        let s = self.shard_len_for(data.len())?;
        let k = usize::from(self.k);
        let m = usize::from(self.m);
        let full = data.len() / s;
        let mut shards: Vec<Bytes> = (0..full).map(|i| data.slice(i * s..(i + 1) * s)).collect();
        let mut tail = pool::take((k - full) * s);
        tail.extend_from_slice(&data[full * s..]);
        tail.resize((k - full) * s, 0);
        let mut parity_buf = pool::take(m * s);
        parity_buf.resize(m * s, 0);
        let ids = {
            let data_shards: Vec<&[u8]> = shards
                .iter()
                .map(|b| &b[..])
                .chain(tail.chunks(s))
                .collect();
            let mut parity: Vec<&mut [u8]> = parity_buf.chunks_mut(s).collect();
            self.code_and_hash(&data_shards, &mut parity)?
        };
        let tail = pool::freeze(tail);
        shards.extend((0..k - full).map(|i| tail.slice(i * s..(i + 1) * s)));
        let parity = pool::freeze(parity_buf);
        shards.extend((0..m).map(|i| parity.slice(i * s..(i + 1) * s)));
        Ok(self.finish(shards, ids, s, data.len()))
    }

    fn n(&self) -> usize {
        usize::from(self.k) + usize::from(self.m)
    }

    fn finish(&self, shards: Vec<Bytes>, ids: Vec<ShardId>, s: usize, len: usize) -> Encoded {
        let data_len = len as u64;
        Encoded {
            k: self.k,
            m: self.m,
            stripe_id: stripe_id(self.k, self.m, data_len, &ids),
            shards,
            ids,
            shard_len: s as u64,
            data_len,
        }
    }

    /// Computes `parity` from `data` and hashes every shard, one column block at a time.
    /// All slices have the same length.
    fn code_and_hash(
        &self,
        data: &[&[u8]],
        parity: &mut [&mut [u8]],
    ) -> Result<Vec<ShardId>, CodecError> {
        let s = data.first().map_or(0, |d| d.len());
        let mut hashers: Vec<blake3::Hasher> = (0..data.len() + parity.len())
            .map(|_| blake3::Hasher::new())
            .collect();
        let (data_hashers, parity_hashers) = hashers.split_at_mut(data.len());
        let mut start = 0;
        while start < s {
            let end = start.saturating_add(self.column_block).min(s);
            if let Some(rs) = &self.rs {
                let cols: Vec<&[u8]> = data.iter().map(|d| &d[start..end]).collect();
                let mut outs: Vec<&mut [u8]> =
                    parity.iter_mut().map(|p| &mut p[start..end]).collect();
                rs.encode_sep(&cols, &mut outs)
                    .map_err(|e| CodecError::Library {
                        reason: e.to_string(),
                    })?;
            }
            for (h, d) in data_hashers.iter_mut().zip(data) {
                h.update(&d[start..end]);
            }
            for (h, p) in parity_hashers.iter_mut().zip(parity.iter()) {
                h.update(&p[start..end]);
            }
            start = end;
        }
        Ok(hashers
            .iter()
            .map(|h| ShardId::from(h.finalize()))
            .collect())
    }
}
