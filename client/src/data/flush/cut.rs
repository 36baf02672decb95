//! Stage 1, cut: buffered extents become segments that each lie inside one stripe-aligned
//! span and one chunk of the file, so a full stripe of a sequential writer is one segment
//! and no slice crosses a chunk.

use bytes::Bytes;
use tessera_proto::fs::CHUNK_SIZE;

/// Bytes at a file offset.
pub(crate) type Segment = (u64, Bytes);

/// Every extent of a flush, cut (see [`cut`]).
pub(super) fn cut_all(pieces: &[Segment], stripe: u64) -> Vec<Segment> {
    pieces
        .iter()
        .flat_map(|(off, b)| cut(*off, b, stripe))
        .collect()
}

/// Cuts `bytes` at `off` at every multiple of `stripe` and of `CHUNK_SIZE` in the file.
fn cut(off: u64, bytes: &Bytes, stripe: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let end = off + bytes.len() as u64;
    let mut at = off;
    while at < end {
        let next_stripe = (at / stripe + 1) * stripe;
        let next_chunk = (at / CHUNK_SIZE + 1) * CHUNK_SIZE;
        let stop = next_stripe.min(next_chunk).min(end);
        out.push((at, bytes.slice((at - off) as usize..(stop - off) as usize)));
        at = stop;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_stripe_and_chunk_boundaries() {
        let b = Bytes::from(vec![1u8; 20]);
        let spans: Vec<(u64, usize)> = cut(5, &b, 8).iter().map(|(o, b)| (*o, b.len())).collect();
        assert_eq!(spans, vec![(5, 3), (8, 8), (16, 8), (24, 1)]);
        let big = Bytes::from(vec![1u8; 10]);
        let spans: Vec<(u64, usize)> = cut(CHUNK_SIZE - 4, &big, 3 << 20)
            .iter()
            .map(|(o, b)| (*o, b.len()))
            .collect();
        assert_eq!(spans, vec![(CHUNK_SIZE - 4, 4), (CHUNK_SIZE, 6)]);
    }
}
