use proptest::prelude::*;

use super::*;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8 ^ seed)
        .collect()
}

/// Lengths around every boundary that changes the tree's shape.
fn lengths() -> Vec<u64> {
    let c = CHUNK_LEN;
    vec![
        1,
        c - 1,
        c,
        c + 1,
        2 * c,
        3 * c + 5,
        16 * c,
        64 * c,
        64 * c + 1,
        100 * c + 77,
        1 << 20,
    ]
}

fn spans(len: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    out.push(0..len);
    for (s, e) in [(0, 1), (1, 2), (3, 7), (5, 6), (0, 4096), (1000, 5000)] {
        let r = span_of(&(s * 997 % len..(e * 1231).min(len)), len);
        if r.start < r.end {
            out.push(r);
        }
    }
    out.push(span_of(&(len - 1..len), len));
    out
}

#[test]
fn every_span_of_every_shape_proves_and_verifies() {
    for len in lengths() {
        let d = data(len as usize, 1);
        let id = ShardId::of(&d);
        for span in spans(len) {
            let (root, proof) = prove(&d, &span).expect("a chunk-aligned span");
            assert_eq!(root, id, "len {len} span {span:?}");
            assert_eq!(proof.len(), proof_len(len, &span));
            let bytes = &d[span.start as usize..span.end as usize];
            assert_eq!(
                verify(&id, len, &span, bytes, &proof),
                Ok(()),
                "len {len} span {span:?}"
            );
        }
    }
}

#[test]
fn a_proof_is_short() {
    // At most two chaining values per level of a 1 MiB shard's tree (10 levels of chunks).
    let len = 1 << 20;
    for span in spans(len) {
        assert!(
            proof_len(len, &span) <= 20,
            "{span:?}: {}",
            proof_len(len, &span)
        );
    }
    assert_eq!(proof_len(len, &(0..len)), 0);
    // An aligned 4 KiB read: one sibling per level above its 4-chunk subtree.
    assert_eq!(proof_len(len, &(8192..12288)), 8);
}

#[test]
fn every_flipped_byte_or_proof_bit_is_caught() {
    let len = 70 * CHUNK_LEN + 3;
    let d = data(len as usize, 2);
    let id = ShardId::of(&d);
    let span = 5 * CHUNK_LEN..9 * CHUNK_LEN;
    let (_, proof) = prove(&d, &span).unwrap();
    let good = d[span.start as usize..span.end as usize].to_vec();
    for at in (0..good.len()).step_by(97) {
        let mut b = good.clone();
        b[at] ^= 1;
        assert!(matches!(
            verify(&id, len, &span, &b, &proof),
            Err(ProofError::WrongRoot { .. })
        ));
    }
    for i in 0..proof.len() {
        let mut p = proof.clone();
        p[i][i % CV_LEN] ^= 0x80;
        assert!(matches!(
            verify(&id, len, &span, &good, &p),
            Err(ProofError::WrongRoot { .. })
        ));
    }
}

#[test]
fn lies_of_every_shape_are_refused() {
    let len = 40 * CHUNK_LEN;
    let d = data(len as usize, 3);
    let other = data(len as usize, 4);
    let id = ShardId::of(&d);
    let span = 8 * CHUNK_LEN..12 * CHUNK_LEN;
    let (_, proof) = prove(&d, &span).unwrap();
    let bytes = |x: &[u8]| x[span.start as usize..span.end as usize].to_vec();
    // Bytes from another shard under the right proof.
    assert!(matches!(
        verify(&id, len, &span, &bytes(&other), &proof),
        Err(ProofError::WrongRoot { .. })
    ));
    // Another shard with its own, self-consistent proof (a stale copy).
    let (other_id, other_proof) = prove(&other, &span).unwrap();
    assert_eq!(
        verify(&id, len, &span, &bytes(&other), &other_proof),
        Err(ProofError::WrongRoot { got: other_id })
    );
    // A truncated range.
    let short = &bytes(&d)[..1000];
    assert_eq!(
        verify(&id, len, &span, short, &proof),
        Err(ProofError::WrongLength {
            got: 1000,
            want: 4096
        })
    );
    // A proof with a value missing or one too many.
    assert!(matches!(
        verify(&id, len, &span, &bytes(&d), &proof[1..]),
        Err(ProofError::WrongProofLength { .. })
    ));
    let mut long = proof.clone();
    long.push([0; CV_LEN]);
    assert!(matches!(
        verify(&id, len, &span, &bytes(&d), &long),
        Err(ProofError::WrongProofLength { .. })
    ));
    // A whole-shard span has no proof: the bytes alone must hash to the id.
    assert!(matches!(
        verify(&id, len, &(0..len), &other, &[]),
        Err(ProofError::WrongRoot { .. })
    ));
}

#[test]
fn spans_must_be_chunk_aligned_and_inside() {
    let len = 10 * CHUNK_LEN + 1;
    assert!(is_span(&(0..len), len));
    assert!(is_span(&(CHUNK_LEN..len), len));
    assert!(!is_span(&(1..CHUNK_LEN), len));
    assert!(!is_span(&(0..CHUNK_LEN + 1), len));
    assert!(!is_span(&(0..len + 1), len));
    assert!(!is_span(&(0..0), len));
    let d = data(len as usize, 5);
    assert!(prove(&d, &(1..5)).is_none());
    assert!(matches!(
        verify(&ShardId::of(&d), len, &(1..5), &d[1..5], &[]),
        Err(ProofError::BadSpan { .. })
    ));
}

#[test]
fn widening_rounds_out_to_the_alignment() {
    assert_eq!(span_of(&(1..2), 10_000), 0..1024);
    assert_eq!(span_of(&(1024..2048), 10_000), 1024..2048);
    assert_eq!(span_of(&(9000..10_000), 10_000), 8192..10_000);
    assert_eq!(widen(&(5000..5001), 1 << 20, 4096), 4096..8192);
    assert_eq!(widen(&(5000..70_000), 1 << 20, 65536), 0..131_072);
    assert_eq!(widen(&(5000..70_000), 70_001, 65536), 0..70_001);
    assert_eq!(span_of(&(100..100), 10_000), 100..100);
}

proptest! {
    #[test]
    fn random_ranges_verify(len in 1u64..300_000, a in 0u64..300_000, b in 0u64..300_000, align in 0u32..7) {
        let (a, b) = (a % len, b % len);
        let range = a.min(b)..a.max(b) + 1;
        let span = widen(&range, len, CHUNK_LEN << align);
        let d = data(len as usize, 6);
        let (root, proof) = prove(&d, &span).unwrap();
        prop_assert_eq!(root, ShardId::of(&d));
        let bytes = &d[span.start as usize..span.end as usize];
        prop_assert_eq!(verify(&root, len, &span, bytes, &proof), Ok(()));
        prop_assert!(span.start <= range.start && range.end <= span.end);
    }
}
