//! Decoding: the stripe's data, or one shard, from any `k` shards that verify.
//!
//! Every shard used is checked against the layout's id first (length and BLAKE3), and every
//! shard rebuilt is checked against its id after: verified inputs with ids from one encoding
//! always rebuild the right bytes, so a mismatch means the layout itself is inconsistent and
//! nothing rebuilt from it is returned.

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_proto::fs::StripeLayout;
use tessera_rpc::pool;

use super::Codec;
use crate::error::CodecError;
use crate::layout::{self, data_span};

/// A shard whose bytes were checked against the layout's id: its index and bytes.
pub(crate) type Verified = (usize, Bytes);

impl Codec {
    /// Rebuilds the stripe's data (`data_len` bytes) from `shards` (`k + m` slots, data
    /// first; `None` where a shard is missing). Uses the first `k` slots, in index order,
    /// whose bytes match their ids; parity is only touched when a data shard is missing.
    pub fn reconstruct(
        &self,
        layout: &StripeLayout,
        shards: Vec<Option<Bytes>>,
    ) -> Result<Bytes, CodecError> {
        self.check(layout)?;
        let chosen = pick_verified(layout, shards, None)?;
        self.decode_verified(layout, chosen)
    }

    /// Rebuilds shard `index` (data or parity) from the other shards, for repair. Returns
    /// exactly the shard's bytes, checked against its id.
    pub fn rebuild_shard(
        &self,
        layout: &StripeLayout,
        shards: Vec<Option<Bytes>>,
        index: usize,
    ) -> Result<Bytes, CodecError> {
        self.check(layout)?;
        let total = self.n();
        if index >= total {
            return Err(CodecError::NoSuchShard { index, total });
        }
        let chosen = pick_verified(layout, shards, Some(index))?;
        self.rebuild_verified(layout, chosen, index)
    }

    /// The layout is valid and coded like this codec.
    pub(crate) fn check(&self, layout: &StripeLayout) -> Result<(), CodecError> {
        layout::check(layout)?;
        if (layout.k, layout.m) != (self.k, self.m) {
            return Err(CodecError::WrongCode {
                k: layout.k,
                m: layout.m,
                codec_k: self.k,
                codec_m: self.m,
            });
        }
        Ok(())
    }

    /// [`Self::reconstruct`] from `k` shards already verified, sorted by index.
    pub(crate) fn decode_verified(
        &self,
        layout: &StripeLayout,
        chosen: Vec<Verified>,
    ) -> Result<Bytes, CodecError> {
        let k = usize::from(self.k);
        let data_len = layout.data_len as usize;
        if chosen.iter().map(|(i, _)| *i).eq(0..k) {
            // Every data shard is here: no decoding, at most one copy to join them.
            if let [(_, only)] = &chosen[..] {
                return Ok(only.slice(..data_len));
            }
            let mut out = pool::take(data_len);
            for (i, shard) in &chosen {
                let span = data_span(layout, *i);
                out.extend_from_slice(&shard[..(span.end - span.start) as usize]);
            }
            return Ok(pool::freeze(out));
        }
        let mut area = self.decode_area(layout, &chosen)?;
        area.truncate(data_len);
        Ok(pool::freeze(area))
    }

    /// [`Self::rebuild_shard`] from `k` shards already verified, sorted by index, none of
    /// them `index`.
    pub(crate) fn rebuild_verified(
        &self,
        layout: &StripeLayout,
        chosen: Vec<Verified>,
        index: usize,
    ) -> Result<Bytes, CodecError> {
        let k = usize::from(self.k);
        let s = layout.shard_len as usize;
        let area = self.decode_area(layout, &chosen)?;
        if index < k {
            // `decode_area` verified every data shard it rebuilt, this one included.
            return Ok(Bytes::copy_from_slice(&area[index * s..(index + 1) * s]));
        }
        let rs = self.rs.as_ref().ok_or(CodecError::NoSuchShard {
            index,
            total: self.n(),
        })?;
        // The library has no single-row encode: computing all m rows costs (m - 1) rows
        // more than needed, acceptable on the repair path.
        let mut parity = vec![0u8; usize::from(self.m) * s];
        {
            let data: Vec<&[u8]> = area.chunks(s).collect();
            let mut outs: Vec<&mut [u8]> = parity.chunks_mut(s).collect();
            rs.encode_sep(&data, &mut outs)
                .map_err(|e| CodecError::Library {
                    reason: e.to_string(),
                })?;
        }
        let shard = &parity[(index - k) * s..(index - k + 1) * s];
        check_rebuilt(layout, index, shard)?;
        Ok(Bytes::copy_from_slice(shard))
    }

    /// All `k` data shards, padding included, as one `k * shard_len` buffer: the chosen data
    /// shards copied in, the missing ones rebuilt from the chosen parity and verified.
    fn decode_area(
        &self,
        layout: &StripeLayout,
        chosen: &[Verified],
    ) -> Result<Vec<u8>, CodecError> {
        let k = usize::from(self.k);
        let m = usize::from(self.m);
        let s = layout.shard_len as usize;
        let mut present = vec![false; k + m];
        for (i, _) in chosen {
            present[*i] = true;
        }
        let mut area = pool::take(k * s);
        for i in 0..k {
            match chosen.iter().find(|(j, _)| *j == i) {
                Some((_, shard)) => area.extend_from_slice(shard),
                None => area.resize(area.len() + s, 0),
            }
        }
        let missing: Vec<usize> = (0..k).filter(|i| !present[*i]).collect();
        if missing.is_empty() {
            return Ok(area);
        }
        let rs = self.rs.as_ref().ok_or(CodecError::TooFewShards {
            usable: chosen.len(),
            need: k,
            rejected: Vec::new(),
        })?;
        // The library decodes in place into mutable slots of one type, so the chosen parity
        // shards (at most one per missing data shard) are copied into owned buffers.
        let mut parity: Vec<Vec<u8>> = (k..k + m)
            .map(|i| match chosen.iter().find(|(j, _)| *j == i) {
                Some((_, shard)) => shard.to_vec(),
                None => Vec::new(),
            })
            .collect();
        {
            let mut slots: Vec<(&mut [u8], bool)> = area
                .chunks_mut(s)
                .map(|c| (c, false))
                .chain(parity.iter_mut().map(|p| (&mut p[..], false)))
                .collect();
            for (slot, is_present) in slots.iter_mut().zip(&present) {
                slot.1 = *is_present;
            }
            rs.reconstruct_data(&mut slots)
                .map_err(|e| CodecError::Library {
                    reason: e.to_string(),
                })?;
        }
        for i in missing {
            check_rebuilt(layout, i, &area[i * s..(i + 1) * s])?;
        }
        Ok(area)
    }
}

/// The first `k` slots (in index order, skipping `skip`) whose bytes have the layout's
/// length and id. Unused slots are not hashed.
pub(crate) fn pick_verified(
    layout: &StripeLayout,
    shards: Vec<Option<Bytes>>,
    skip: Option<usize>,
) -> Result<Vec<Verified>, CodecError> {
    let k = usize::from(layout.k);
    let total = layout.shards.len();
    if shards.len() != total {
        return Err(CodecError::WrongShardCount {
            want: total,
            got: shards.len(),
        });
    }
    let mut chosen = Vec::with_capacity(k);
    let mut rejected = Vec::new();
    for (i, (slot, place)) in shards.into_iter().zip(&layout.shards).enumerate() {
        if chosen.len() == k {
            break;
        }
        let Some(bytes) = slot else { continue };
        if Some(i) == skip {
            continue;
        }
        if bytes.len() as u64 == layout.shard_len && ShardId::of(&bytes) == place.shard {
            chosen.push((i, bytes));
        } else {
            rejected.push(i);
        }
    }
    if chosen.len() < k {
        return Err(CodecError::TooFewShards {
            usable: chosen.len(),
            need: k,
            rejected,
        });
    }
    Ok(chosen)
}

fn check_rebuilt(layout: &StripeLayout, index: usize, shard: &[u8]) -> Result<(), CodecError> {
    let got = ShardId::of(shard);
    let want = layout.shards[index].shard;
    if got != want {
        return Err(CodecError::RebuiltMismatch { index, want, got });
    }
    Ok(())
}
