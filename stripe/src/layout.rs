//! Stripe geometry: which bytes of a stripe's data live in which data shard, and the checks
//! a layout from the metadata service must pass before any index into it is trusted.
//!
//! Data shard `i` holds data bytes `i * shard_len .. (i + 1) * shard_len`, cut at
//! `data_len`; the rest of the shard is zero padding. So with `data_len = 5, k = 4` the
//! shards are 2 bytes long and shard 3 is all padding.

use std::ops::Range;

use tessera_proto::fs::StripeLayout;

use crate::error::CodecError;

/// Longest shard this crate writes or accepts: one RPC payload
/// (`tessera_proto::frame::DEFAULT_MAX_PAYLOAD`).
pub const MAX_SHARD_LEN: u64 = tessera_proto::frame::DEFAULT_MAX_PAYLOAD as u64;

/// Checks that `layout` is self-consistent: a supported code, `k + m` places, a non-empty
/// stripe whose data fits in its `k` data shards, shards no longer than [`MAX_SHARD_LEN`].
///
/// Only `data_len <= k * shard_len` is required, not `shard_len == ceil(data_len / k)`:
/// readers need nothing more, and a later writer may pad shards further (e.g. to a block).
pub fn check(layout: &StripeLayout) -> Result<(), CodecError> {
    let (k, m) = (usize::from(layout.k), usize::from(layout.m));
    if k == 0 || k + m > 255 {
        return Err(CodecError::BadCode { k, m });
    }
    let fits = layout
        .shard_len
        .checked_mul(u64::from(layout.k))
        .is_some_and(|cap| layout.data_len <= cap);
    if layout.shards.len() != k + m
        || layout.data_len == 0
        || layout.shard_len > MAX_SHARD_LEN
        || !fits
    {
        return Err(CodecError::BadLayout {
            k: layout.k,
            m: layout.m,
            shards: layout.shards.len(),
            shard_len: layout.shard_len,
            data_len: layout.data_len,
        });
    }
    Ok(())
}

/// The data bytes (stripe offsets) that data shard `index` holds; empty for a shard of
/// padding only.
pub fn data_span(layout: &StripeLayout, index: usize) -> Range<u64> {
    let s = layout.shard_len;
    let start = (index as u64).saturating_mul(s).min(layout.data_len);
    let end = start.saturating_add(s).min(layout.data_len);
    start..end
}

/// One data shard's share of a read: stripe bytes `stripe` are shard bytes `shard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub index: usize,
    pub shard: Range<u64>,
    pub stripe: Range<u64>,
}

/// The pieces of data shards that cover `range` (which must be inside the data), in order.
pub fn pieces(layout: &StripeLayout, range: &Range<u64>) -> Vec<Piece> {
    let s = layout.shard_len;
    if range.is_empty() || s == 0 {
        return Vec::new();
    }
    let first = range.start / s;
    let last = (range.end - 1) / s;
    (first..=last)
        .map(|i| {
            let base = i * s;
            let start = range.start.max(base);
            let end = range.end.min(base + s);
            Piece {
                index: i as usize,
                shard: start - base..end - base,
                stripe: start..end,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::ShardId;
    use tessera_proto::fs::ShardPlace;

    fn layout(k: u8, m: u8, shard_len: u64, data_len: u64) -> StripeLayout {
        let place = ShardPlace {
            shard: ShardId::of(b""),
            server: 1,
        };
        StripeLayout {
            k,
            m,
            shard_len,
            data_len,
            shards: vec![place; usize::from(k) + usize::from(m)],
        }
    }

    #[test]
    fn accepts_consistent_layouts_and_rejects_the_rest() {
        assert_eq!(check(&layout(4, 2, 2, 5)), Ok(()));
        assert_eq!(check(&layout(1, 0, 1, 1)), Ok(()));
        assert!(check(&layout(0, 2, 2, 5)).is_err());
        assert!(check(&layout(200, 56, 2, 5)).is_err());
        assert!(check(&layout(4, 2, 1, 5)).is_err(), "data does not fit");
        assert!(check(&layout(4, 2, 2, 0)).is_err(), "empty stripe");
        assert!(check(&layout(4, 2, MAX_SHARD_LEN + 1, 5)).is_err());
        assert!(check(&layout(255, 0, u64::MAX, 5)).is_err(), "overflow");
        let mut short = layout(4, 2, 2, 5);
        short.shards.pop();
        assert!(check(&short).is_err());
    }

    #[test]
    fn spans_cut_at_the_data_length() {
        let l = layout(4, 2, 2, 5);
        let spans: Vec<_> = (0..4).map(|i| data_span(&l, i)).collect();
        assert_eq!(spans, vec![0..2, 2..4, 4..5, 5..5]);
    }

    #[test]
    fn pieces_cover_the_range_exactly() {
        let l = layout(4, 2, 10, 35);
        assert_eq!(pieces(&l, &(3..3)), vec![]);
        assert_eq!(
            pieces(&l, &(3..25)),
            vec![
                Piece {
                    index: 0,
                    shard: 3..10,
                    stripe: 3..10
                },
                Piece {
                    index: 1,
                    shard: 0..10,
                    stripe: 10..20
                },
                Piece {
                    index: 2,
                    shard: 0..5,
                    stripe: 20..25
                },
            ]
        );
        assert_eq!(
            pieces(&l, &(30..35)),
            vec![Piece {
                index: 3,
                shard: 0..5,
                stripe: 30..35
            }]
        );
    }
}
