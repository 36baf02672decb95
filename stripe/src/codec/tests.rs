use bytes::Bytes;
use proptest::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;
use tessera_proto::ShardId;
use tessera_proto::fs::{ShardPlace, StripeLayout};

use super::{Codec, Encoded, stripe_id_of};
use crate::error::CodecError;

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn layout_of(e: &Encoded) -> StripeLayout {
    let places = e
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| ShardPlace {
            shard: *id,
            server: i as u64,
        })
        .collect();
    e.layout(places)
}

fn slots(e: &Encoded, missing: &[usize]) -> Vec<Option<Bytes>> {
    (0..e.shards.len())
        .map(|i| (!missing.contains(&i)).then(|| e.shards[i].clone()))
        .collect()
}

#[test]
fn new_validates_the_code() {
    assert!(Codec::new(4, 2).is_ok());
    assert!(Codec::new(1, 0).is_ok());
    assert!(Codec::new(200, 55).is_ok());
    for (k, m) in [(0, 2), (200, 56), (256, 0), (usize::MAX, 1)] {
        assert_eq!(Codec::new(k, m).err(), Some(CodecError::BadCode { k, m }));
    }
    assert_eq!(format!("{:?}", Codec::new(8, 3).unwrap()), "Codec(8+3)");
}

#[test]
fn empty_data_is_not_a_stripe() {
    let c = Codec::new(4, 2).unwrap();
    assert_eq!(c.encode(&[]).err(), Some(CodecError::Empty));
    assert_eq!(c.encode_bytes(Bytes::new()).err(), Some(CodecError::Empty));
}

#[test]
fn shards_are_padded_slices_of_the_data_with_correct_parity_and_ids() {
    for (k, m) in [(4, 2), (8, 3), (1, 0), (3, 1), (1, 2)] {
        let c = Codec::new(k, m).unwrap();
        for len in [1, 2, 5, 4095, 4096, 70_001, (4 << 20) - 1] {
            let input = data(len, len as u64);
            let e = c.encode(&input).unwrap();
            let s = len.div_ceil(k);
            assert_eq!(e.shard_len, s as u64);
            assert_eq!(e.data_len, len as u64);
            assert_eq!(e.shards.len(), k + m);
            let mut joined = Vec::new();
            for (shard, id) in e.shards.iter().zip(&e.ids) {
                assert_eq!(shard.len(), s);
                assert_eq!(ShardId::of(shard), *id);
            }
            for shard in &e.shards[..k] {
                joined.extend_from_slice(shard);
            }
            assert_eq!(&joined[..len], &input[..], "{k}+{m} len {len}");
            assert!(joined[len..].iter().all(|&b| b == 0), "padding is zeros");
            if m > 0 {
                let rs = ReedSolomon::new(k, m).unwrap();
                let all: Vec<&[u8]> = e.shards.iter().map(|b| &b[..]).collect();
                assert!(rs.verify(&all).unwrap(), "{k}+{m} len {len}");
            }
            assert_eq!(e.stripe_id, stripe_id_of(&layout_of(&e)));
        }
    }
}

#[test]
fn encode_bytes_matches_encode() {
    let c = Codec::new(4, 2).unwrap();
    for len in [1, 3, 4, 7, 8, 4096, 4097, 1 << 20] {
        let input = data(len, 9);
        let a = c.encode(&input).unwrap();
        let b = c.encode_bytes(Bytes::from(input)).unwrap();
        assert_eq!(a.ids, b.ids, "len {len}");
        assert_eq!(a.shards, b.shards, "len {len}");
        assert_eq!(a.stripe_id, b.stripe_id);
    }
}

#[test]
fn full_data_shards_are_not_copied_by_encode_bytes() {
    let c = Codec::new(4, 2).unwrap();
    let input = Bytes::from(data(4 << 20, 1));
    let e = c.encode_bytes(input.clone()).unwrap();
    for (i, shard) in e.shards[..4].iter().enumerate() {
        assert_eq!(shard.as_ptr(), input[i << 20..].as_ptr());
    }
}

#[test]
fn stripe_ids_dedup_equal_data_and_separate_the_rest() {
    let c = Codec::new(2, 1).unwrap();
    let a = c.encode(b"hello world").unwrap();
    assert_eq!(c.encode(b"hello world").unwrap().stripe_id, a.stripe_id);
    assert_ne!(c.encode(b"hello worle").unwrap().stripe_id, a.stripe_id);
    assert_ne!(
        Codec::new(2, 2)
            .unwrap()
            .encode(b"hello world")
            .unwrap()
            .stripe_id,
        a.stripe_id
    );
    // Same shards (the zero byte is padding either way), different data length.
    let one = c.encode(b"a").unwrap();
    let two = c.encode(b"a\0").unwrap();
    assert_eq!(one.ids, two.ids);
    assert_ne!(one.stripe_id, two.stripe_id);
}

#[test]
fn too_large_shards_are_refused() {
    let c = Codec::new(1, 0).unwrap();
    let max = crate::layout::MAX_SHARD_LEN as usize;
    assert!(c.shard_len_for(max).is_ok());
    assert!(matches!(
        c.shard_len_for(max + 1),
        Err(CodecError::TooLarge { .. })
    ));
}

/// Every set of up to `m` missing shards, as index lists.
fn erasures(n: usize, m: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize <= m)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

#[test]
fn reconstructs_from_any_k_shards() {
    // 1+2 and 6+3: the per-directory layouts the integration test (ops_layouts) uses.
    for (k, m) in [(4, 2), (3, 3), (2, 1), (1, 2), (6, 3)] {
        let c = Codec::new(k, m).unwrap();
        for len in [1, 100, 4096 * 3 + 1] {
            let input = data(len, 3);
            let e = c.encode(&input).unwrap();
            let layout = layout_of(&e);
            for missing in erasures(k + m, m) {
                let got = c.reconstruct(&layout, slots(&e, &missing)).unwrap();
                assert_eq!(
                    &got[..],
                    &input[..],
                    "{k}+{m} len {len} missing {missing:?}"
                );
                for index in 0..k + m {
                    let mut others = slots(&e, &missing);
                    others[index] = None;
                    if others.iter().flatten().count() < k {
                        continue;
                    }
                    let shard = c.rebuild_shard(&layout, others, index).unwrap();
                    assert_eq!(shard, e.shards[index], "{k}+{m} rebuild {index}");
                }
            }
        }
    }
}

/// With one data shard the Reed-Solomon parity rows are all 1: `ec=1+M` stores plain
/// copies (same bytes, same shard id), and any one of them gives the data back.
#[test]
fn one_data_shard_means_plain_copies() {
    let c = Codec::new(1, 2).unwrap();
    let input = data(10_001, 9);
    let e = c.encode(&input).unwrap();
    assert_eq!(e.shards.len(), 3);
    for i in 1..3 {
        assert_eq!(e.shards[i], e.shards[0]);
        assert_eq!(e.ids[i], e.ids[0]);
    }
    let layout = layout_of(&e);
    for keep in 0..3 {
        let only: Vec<usize> = (0..3).filter(|&i| i != keep).collect();
        let got = c.reconstruct(&layout, slots(&e, &only)).unwrap();
        assert_eq!(&got[..], &input[..], "from copy {keep} alone");
    }
}

#[test]
fn corrupt_shards_count_as_missing() {
    let c = Codec::new(4, 2).unwrap();
    let input = data(10_000, 5);
    let e = c.encode(&input).unwrap();
    let layout = layout_of(&e);
    let mut shards = slots(&e, &[]);
    let mut bad = e.shards[1].to_vec();
    bad[17] ^= 1;
    shards[1] = Some(Bytes::from(bad));
    shards[2] = Some(e.shards[2].slice(1..));
    assert_eq!(
        &c.reconstruct(&layout, shards.clone()).unwrap()[..],
        &input[..]
    );
    shards[5] = None;
    assert_eq!(
        c.reconstruct(&layout, shards).err(),
        Some(CodecError::TooFewShards {
            usable: 3,
            need: 4,
            rejected: vec![1, 2]
        })
    );
}

#[test]
fn without_parity_every_data_shard_is_needed() {
    let c = Codec::new(3, 0).unwrap();
    let e = c.encode(b"abcdefg").unwrap();
    let layout = layout_of(&e);
    assert_eq!(
        &c.reconstruct(&layout, slots(&e, &[])).unwrap()[..],
        b"abcdefg"
    );
    assert!(matches!(
        c.reconstruct(&layout, slots(&e, &[1])),
        Err(CodecError::TooFewShards { .. })
    ));
}

#[test]
fn layouts_that_do_not_fit_are_refused() {
    let c = Codec::new(4, 2).unwrap();
    let e = c.encode(b"some data").unwrap();
    let mut layout = layout_of(&e);
    assert!(matches!(
        Codec::new(3, 3)
            .unwrap()
            .reconstruct(&layout, slots(&e, &[])),
        Err(CodecError::WrongCode { .. })
    ));
    assert_eq!(
        c.reconstruct(&layout, vec![None; 5]).err(),
        Some(CodecError::WrongShardCount { want: 6, got: 5 })
    );
    assert_eq!(
        c.rebuild_shard(&layout, slots(&e, &[]), 6).err(),
        Some(CodecError::NoSuchShard { index: 6, total: 6 })
    );
    layout.data_len = 1000;
    assert!(matches!(
        c.reconstruct(&layout, slots(&e, &[])),
        Err(CodecError::BadLayout { .. })
    ));
}

#[test]
fn a_layout_mixing_two_encodings_rebuilds_nothing() {
    let c = Codec::new(4, 2).unwrap();
    let a = c.encode(&data(4000, 1)).unwrap();
    let b = c.encode(&data(4000, 2)).unwrap();
    // Data ids of `a`, parity ids of `b`: every shard verifies, the decode cannot.
    let mut layout = layout_of(&a);
    layout.shards[4].shard = b.ids[4];
    layout.shards[5].shard = b.ids[5];
    let mut shards = slots(&a, &[0]);
    shards[4] = Some(b.shards[4].clone());
    shards[5] = Some(b.shards[5].clone());
    assert!(matches!(
        c.reconstruct(&layout, shards),
        Err(CodecError::RebuiltMismatch { index: 0, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_erasure_within_m_round_trips(
        len in 1usize..20_000,
        k in 1usize..8,
        m in 0usize..4,
        seed in any::<u64>(),
        lose in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let c = Codec::new(k, m).unwrap();
        let input = data(len, seed);
        let e = c.encode_bytes(Bytes::from(input.clone())).unwrap();
        let mut missing: Vec<usize> = lose.iter().map(|i| i.index(k + m)).collect();
        missing.sort_unstable();
        missing.dedup();
        missing.truncate(m);
        let got = c.reconstruct(&layout_of(&e), slots(&e, &missing)).unwrap();
        prop_assert_eq!(&got[..], &input[..]);
    }
}

#[test]
fn the_column_block_does_not_change_the_result() {
    let input = data((1 << 20) + 12_345, 8);
    let reference = Codec::new(4, 2).unwrap().encode(&input).unwrap();
    for block in [0, 1000, 4096, 65_537, 1 << 20, usize::MAX] {
        let e = Codec::new(4, 2)
            .unwrap()
            .with_column_block(block)
            .encode(&input)
            .unwrap();
        assert_eq!(e.ids, reference.ids, "block {block}");
        assert_eq!(e.shards, reference.shards, "block {block}");
    }
}
