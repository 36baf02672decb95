//! Stage 2, pack: segments sorted into what a flush stores. All-zero ones become hole
//! slices (nothing stored), full stripes are stored alone, and short ones are packed back
//! to back into shared stripes of up to one stripe size, so many small random writes cost
//! one stripe put, not one each; each slice then points at its offset in its stripe.

use bytes::Bytes;
use tessera_proto::fs::{CHUNK_SIZE, ChunkSlice, Slice, StripeId, StripeRef};
use tessera_stripe::is_all_zero;

use super::cut::Segment;

/// The segments of one stripe, stored back to back.
#[derive(Debug)]
pub(super) struct Pack(Vec<Segment>);

/// What a flush stores: stripes to write, and holes that need only a slice.
#[derive(Debug, Default)]
pub(super) struct Packed {
    pub(super) packs: Vec<Pack>,
    pub(super) holes: Vec<ChunkSlice>,
}

impl Pack {
    /// Bytes of file data in the stripe.
    pub(super) fn len(&self) -> u64 {
        self.0.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The file ranges (offset, length) of its segments.
    pub(super) fn extents(&self) -> Vec<(u64, u64)> {
        self.0
            .iter()
            .map(|(off, b)| (*off, b.len() as u64))
            .collect()
    }

    /// The stripe's data: the one segment as it is, or the segments concatenated.
    pub(super) fn data(&self) -> Bytes {
        match &self.0[..] {
            [(_, b)] => b.clone(),
            many => {
                let mut buf = Vec::with_capacity(self.len() as usize);
                for (_, b) in many {
                    buf.extend_from_slice(b);
                }
                Bytes::from(buf)
            }
        }
    }

    /// A slice per segment, pointing at its bytes in `stripe`.
    pub(super) fn slices(&self, stripe: StripeId) -> Vec<ChunkSlice> {
        let mut at = 0u64;
        self.0
            .iter()
            .map(|(off, b)| {
                let slice = Slice {
                    offset: off % CHUNK_SIZE,
                    len: b.len() as u64,
                    data: Some(StripeRef { stripe, offset: at }),
                };
                at += b.len() as u64;
                ChunkSlice {
                    chunk: off / CHUNK_SIZE,
                    slice,
                }
            })
            .collect()
    }
}

/// Sorts cut segments into holes, lone full stripes and shared stripes (see the module).
pub(super) fn pack(segments: Vec<Segment>, stripe: u64) -> Packed {
    let mut out = Packed::default();
    let mut open: Vec<Segment> = Vec::new();
    let mut open_len = 0u64;
    for (off, b) in segments {
        let len = b.len() as u64;
        if is_all_zero(&b) {
            out.holes.push(ChunkSlice {
                chunk: off / CHUNK_SIZE,
                slice: Slice {
                    offset: off % CHUNK_SIZE,
                    len,
                    data: None,
                },
            });
        } else if len >= stripe {
            out.packs.push(Pack(vec![(off, b)]));
        } else {
            if open_len + len > stripe {
                out.packs.push(Pack(std::mem::take(&mut open)));
                open_len = 0;
            }
            open_len += len;
            open.push((off, b));
        }
    }
    if !open.is_empty() {
        out.packs.push(Pack(open));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_segments_share_stripes_and_zeros_are_holes() {
        let seg = |off: u64, len: usize, v: u8| (off, Bytes::from(vec![v; len]));
        let packed = pack(
            vec![
                seg(0, 3, 1),
                seg(10, 4, 0),
                seg(20, 5, 2),
                seg(32, 8, 3),
                seg(50, 2, 4),
            ],
            8,
        );
        let shape: Vec<Vec<(u64, usize)>> = packed
            .packs
            .iter()
            .map(|p| p.0.iter().map(|(o, b)| (*o, b.len())).collect())
            .collect();
        assert_eq!(
            shape,
            vec![vec![(32, 8)], vec![(0, 3), (20, 5)], vec![(50, 2)]]
        );
        let holes = &packed.holes;
        assert_eq!(holes.len(), 1);
        assert_eq!((holes[0].slice.offset, holes[0].slice.len), (10, 4));
        assert!(holes[0].slice.data.is_none());
    }

    #[test]
    fn slices_point_at_their_bytes_in_the_shared_stripe() {
        let p = Pack(vec![
            (CHUNK_SIZE + 5, Bytes::from_static(b"abc")),
            (9, Bytes::from_static(b"de")),
        ]);
        assert_eq!(p.len(), 5);
        assert_eq!(&p.data()[..], b"abcde");
        let id = StripeId([1; 32]);
        let s = p.slices(id);
        assert_eq!((s[0].chunk, s[0].slice.offset, s[0].slice.len), (1, 5, 3));
        assert_eq!(
            s[0].slice.data,
            Some(StripeRef {
                stripe: id,
                offset: 0
            })
        );
        assert_eq!((s[1].chunk, s[1].slice.offset), (0, 9));
        assert_eq!(
            s[1].slice.data,
            Some(StripeRef {
                stripe: id,
                offset: 3
            })
        );
    }
}
