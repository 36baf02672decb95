//! Proved ranged reads of the file backend: every range of every shape checks out against
//! the shard id with the proof alone, damage near the range is caught, and shard files
//! written before proofs existed (`testdata/`) serve proofs as they are.

use std::ops::Range;

use tessera_proto::proof::{self, CHUNK_LEN};

use super::file_tests::{assert_corrupt, flip};
use super::{BLOCK_LEN, FileStore, FileStoreConfig, ShardId, ShardStore};
use crate::error::{Damage, Error};
use crate::testutil::{TempDir, shard};

fn open(dir: &TempDir) -> FileStore {
    FileStore::open(dir.path(), FileStoreConfig::default()).unwrap()
}

/// Reads `range` with its proof and checks it the way a client does.
fn check(store: &FileStore, id: &ShardId, data: &[u8], range: Range<u64>) {
    let p = store.get_proved(id, range.clone()).unwrap();
    let len = data.len() as u64;
    assert_eq!(p.len, len);
    assert_eq!(p.span, proof::span_of(&range, len), "{range:?}");
    assert!(p.span.start <= range.start && range.end <= p.span.end);
    assert_eq!(
        &p.bytes[..],
        &data[p.span.start as usize..p.span.end as usize]
    );
    assert_eq!(
        proof::verify(id, len, &p.span, &p.bytes, &p.proof),
        Ok(()),
        "len {len} range {range:?}"
    );
}

fn ranges(len: u64) -> Vec<Range<u64>> {
    let b = BLOCK_LEN as u64;
    let mut out = vec![0..len, 0..1, len - 1..len, len / 3..len / 2 + 1];
    for (s, e) in [(4096, 8192), (b - 10, b + 10), (b, 2 * b), (5, 3 * b + 7)] {
        if e <= len {
            out.push(s..e);
        }
    }
    out
}

#[test]
fn every_range_of_every_size_is_proved() {
    let dir = TempDir::new("prove-sizes");
    let store = open(&dir);
    let b = BLOCK_LEN;
    for (seed, len) in [
        1,
        1000,
        1024,
        1025,
        4096,
        b - 1,
        b,
        b + 1,
        3 * b + 5,
        4 << 20,
    ]
    .into_iter()
    .enumerate()
    {
        let (id, data) = shard(len, seed as u64);
        store.put(&id, data.clone()).unwrap();
        for r in ranges(len as u64) {
            check(&store, &id, &data, r);
        }
    }
}

#[test]
fn an_empty_range_has_no_bytes_and_a_bad_one_is_refused() {
    let dir = TempDir::new("prove-empty");
    let store = open(&dir);
    let (id, data) = shard(3 * BLOCK_LEN, 1);
    store.put(&id, data).unwrap();
    let p = store.get_proved(&id, 100..100).unwrap();
    assert!(p.bytes.is_empty() && p.proof.is_empty());
    assert!(matches!(
        store.get_proved(&id, 0..3 * BLOCK_LEN as u64 + 1),
        Err(Error::BadRange { .. })
    ));
}

#[test]
fn damage_in_a_block_the_range_touches_is_caught_even_outside_the_range() {
    let dir = TempDir::new("prove-damage");
    let store = open(&dir);
    let b = BLOCK_LEN as u64;
    let (id, data) = shard(5 * BLOCK_LEN, 2);
    let data_at = 64 + 5 * 32;
    store.put(&id, data.clone()).unwrap();
    // Rot in block 3, outside the range 2b+4096..2b+8192 (block 2): not read, so served.
    flip(&store, &id, data_at + 3 * b + 99);
    check(&store, &id, &data, 2 * b + 4096..2 * b + 8192);
    // In block 2, outside the span but inside the block the span lies in: the sibling
    // subtree it hashes into does not match, so the shard is quarantined.
    flip(&store, &id, data_at + 2 * b + 60_000);
    assert_corrupt(
        store.get_proved(&id, 2 * b + 4096..2 * b + 8192),
        Damage::BadData,
    );
    assert!(!store.shard_path(&id).exists());
}

#[test]
fn a_small_shard_with_rot_is_quarantined() {
    let dir = TempDir::new("prove-small");
    let store = open(&dir);
    let (id, _) = shard(10_000, 3);
    store.put(&id, shard(10_000, 3).1).unwrap();
    flip(&store, &id, 64 + 9_000);
    assert_corrupt(store.get_proved(&id, 0..CHUNK_LEN), Damage::BadData);
}

#[test]
fn a_damaged_hash_list_is_caught() {
    let dir = TempDir::new("prove-list");
    let store = open(&dir);
    let (id, data) = shard(2 * BLOCK_LEN + 1, 4);
    store.put(&id, data).unwrap();
    flip(&store, &id, 64 + 40);
    assert_corrupt(store.get_proved(&id, 0..10), Damage::BadHashList);
}

#[test]
fn shard_files_written_before_proofs_serve_them() {
    // Written by a chunkserver built before proofs existed (see tests/tests/chunk_old_shards.rs).
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v1");
    let dir = TempDir::new("prove-v1");
    drop(open(&dir));
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let entry = entry.unwrap();
        let id: ShardId = entry.file_name().to_str().unwrap().parse().unwrap();
        let to = super::shard_file(dir.path(), &id);
        std::fs::copy(entry.path(), to).unwrap();
        ids.push(id);
    }
    assert_eq!(ids.len(), 2, "fixtures in {}", fixtures.display());
    let store = open(&dir);
    for id in ids {
        let data = store.get(&id, None).unwrap();
        for r in ranges(data.len() as u64) {
            check(&store, &id, &data, r);
        }
    }
}
