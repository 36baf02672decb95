//! Verified reads of sub-ranges: a per-block BLAKE3 hash list bound to the shard id.
//!
//! Choice: a shard larger than one block stores the BLAKE3 *chaining value* of each 64 KiB
//! block. These are exactly the interior nodes of BLAKE3's own tree (a 64 KiB block is 64 chunks, a power of
//! two, so every aligned block is a complete subtree), so merging them along BLAKE3's tree shape
//! gives the shard id itself: the list is bound to the id with no extra key or signature, and
//! putting a shard still costs one hashing pass. A ranged get checks the list against the id
//! (one compression per block: ~64 for a 4 MiB shard, microseconds) and then hashes only the
//! blocks the range touches, instead of reading and hashing the whole shard.
//!
//! Measured here (`examples/store_bench.rs`, 2-core VM): BLAKE3 of 1 MiB at 8.3 GB/s in one
//! call versus 8.1-8.2 GB/s as 16 per-block chaining values, so the list costs put nothing
//! beyond its 32 bytes per 64 KiB; a verified 4 KiB read of a 4 MiB shard took 17 us this way
//! versus about 1,050 us reading and hashing the whole shard.
//!
//! Shards of one block or less store no list: their id is the plain hash of the data.
//!
//! This uses `blake3::hazmat`, whose functions panic on a misshapen tree; every length handed
//! to it here is derived from `BLOCK_LEN` and a data length whose block count was checked first.

use blake3::Hasher;
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};

use super::ShardId;

/// Length of a verification block (a power of two, at least one BLAKE3 chunk).
pub const BLOCK_LEN: usize = 64 * 1024;
/// Length of one chaining value in the hash list.
pub const CV_LEN: usize = 32;

/// Number of blocks in `data_len` bytes (a zero-length shard has none).
pub fn block_count(data_len: u64) -> u64 {
    data_len.div_ceil(BLOCK_LEN as u64)
}

/// Hashes `data` once; returns its id and the hash list to store beside it (empty for a
/// shard of one block or less).
pub fn hash_with_list(data: &[u8]) -> (ShardId, Vec<u8>) {
    if data.len() <= BLOCK_LEN {
        return (ShardId::of(data), Vec::new());
    }
    let mut list = Vec::with_capacity(data.len().div_ceil(BLOCK_LEN) * CV_LEN);
    for (i, block) in data.chunks(BLOCK_LEN).enumerate() {
        list.extend_from_slice(&block_cv(i as u64, block));
    }
    let id = root_of_list(&list, data.len() as u64);
    (id, list)
}

/// The chaining value of block `index` (not the root: only valid for shards of 2+ blocks).
fn block_cv(index: u64, block: &[u8]) -> ChainingValue {
    Hasher::new()
        .set_input_offset(index * BLOCK_LEN as u64)
        .update(block)
        .finalize_non_root()
}

/// The id a hash list stands for, given the shard's data length.
/// Caller guarantees `data_len > BLOCK_LEN` and `list.len() == block_count(data_len) * CV_LEN`.
pub fn root_of_list(list: &[u8], data_len: u64) -> ShardId {
    debug_assert!(data_len > BLOCK_LEN as u64);
    debug_assert_eq!(list.len() as u64, block_count(data_len) * CV_LEN as u64);
    let (left, right) = split(list, data_len);
    ShardId(*merge_subtrees_root(&left, &right, Mode::Hash).as_bytes())
}

/// The chaining value of the subtree of `len` bytes whose blocks' values are `list` (the
/// slice of the hash list from the subtree's first block; a subtree of one block or less is
/// that block's value). The subtree must start on a block boundary.
pub fn list_cv(list: &[u8], len: u64) -> ChainingValue {
    subtree_cv(list, len)
}

/// Chaining values of the left and right subtrees of a subtree of `len` bytes (> one block),
/// following BLAKE3's rule: the left subtree is the largest power of two strictly below `len`.
fn split(list: &[u8], len: u64) -> (ChainingValue, ChainingValue) {
    let left_len = left_subtree_len(len);
    let left_blocks = (left_len / BLOCK_LEN as u64) as usize;
    let (l, r) = list.split_at(left_blocks * CV_LEN);
    (subtree_cv(l, left_len), subtree_cv(r, len - left_len))
}

fn subtree_cv(list: &[u8], len: u64) -> ChainingValue {
    if len <= BLOCK_LEN as u64 {
        let mut cv = [0u8; CV_LEN];
        cv.copy_from_slice(&list[..CV_LEN]);
        return cv;
    }
    let (l, r) = split(list, len);
    merge_subtrees_non_root(&l, &r, Mode::Hash)
}

/// Checks the blocks `first..` held in `blocks` (which starts at block `first` and holds whole
/// blocks, the last one possibly short) against the hash list. Returns false on any mismatch.
pub fn blocks_match(list: &[u8], first: u64, blocks: &[u8]) -> bool {
    blocks.chunks(BLOCK_LEN).enumerate().all(|(i, block)| {
        let index = first + i as u64;
        let at = index as usize * CV_LEN;
        list.get(at..at + CV_LEN)
            .is_some_and(|want| block_cv(index, block) == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn list_root_equals_plain_blake3_for_many_lengths() {
        let b = BLOCK_LEN;
        for len in [
            0,
            1,
            b - 1,
            b,
            b + 1,
            2 * b,
            2 * b + 1,
            3 * b,
            5 * b - 3,
            8 * b,
            13 * b + 999,
        ] {
            let d = data(len);
            let (id, list) = hash_with_list(&d);
            assert_eq!(id, ShardId::of(&d), "len {len}");
            assert_eq!(
                list.len() as u64,
                if len > b {
                    block_count(len as u64) * 32
                } else {
                    0
                }
            );
            if len > b {
                assert_eq!(root_of_list(&list, len as u64), id);
                assert!(blocks_match(&list, 0, &d));
            }
        }
    }

    #[test]
    fn a_flipped_byte_fails_only_its_block() {
        let mut d = data(5 * BLOCK_LEN + 100);
        let (_, list) = hash_with_list(&d);
        d[3 * BLOCK_LEN + 17] ^= 1;
        assert!(blocks_match(&list, 0, &d[..3 * BLOCK_LEN]));
        assert!(!blocks_match(&list, 3, &d[3 * BLOCK_LEN..4 * BLOCK_LEN]));
        assert!(blocks_match(&list, 4, &d[4 * BLOCK_LEN..]));
    }

    #[test]
    fn a_damaged_list_does_not_hash_to_the_id() {
        let d = data(3 * BLOCK_LEN);
        let (id, mut list) = hash_with_list(&d);
        list[40] ^= 0x80;
        assert_ne!(root_of_list(&list, d.len() as u64), id);
    }
}
