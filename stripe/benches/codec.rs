//! Codec throughput: `cargo bench -p tessera-stripe --bench codec` (release build).
//!
//! Prints GiB/s of stripe data on one core for encoding (split, Reed-Solomon, BLAKE3 of every
//! shard, stripe id) with 1 MiB shards, beside its parts measured alone, a sweep of the
//! column block, and the decode of a degraded read. The machine is shared, so all the
//! variants of one code run interleaved, round after round, and each keeps its best round.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;
use tessera_proto::fs::{ShardPlace, StripeLayout};
use tessera_stripe::codec::COLUMN_BLOCK;
use tessera_stripe::{Codec, Encoded, is_all_zero};

const SHARD: usize = 1 << 20;
const ROUNDS: usize = 9;
const ROUND_TIME: Duration = Duration::from_millis(150);

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A named closure to time.
type Job<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Best GiB/s of each of `jobs` (each processing `bytes` per call), run interleaved.
fn race(bytes: usize, jobs: &mut [Job<'_>]) -> Vec<(String, f64)> {
    let mut best = vec![0f64; jobs.len()];
    for _ in 0..ROUNDS {
        for (j, (_, f)) in jobs.iter_mut().enumerate() {
            f();
            let start = Instant::now();
            let mut n = 0usize;
            while start.elapsed() < ROUND_TIME {
                f();
                n += 1;
            }
            let rate = (bytes * n) as f64 / start.elapsed().as_secs_f64() / f64::from(1 << 30);
            best[j] = best[j].max(rate);
        }
    }
    jobs.iter()
        .zip(best)
        .map(|((name, _), b)| (name.to_string(), b))
        .collect()
}

fn layout(e: &Encoded) -> StripeLayout {
    e.layout(
        e.ids
            .iter()
            .enumerate()
            .map(|(i, id)| ShardPlace {
                shard: *id,
                server: i as u64,
            })
            .collect(),
    )
}

fn main() {
    let blocks = [16usize << 10, 64 << 10, 256 << 10, SHARD];
    println!(
        "GiB/s of stripe data, one core, {} KiB shards, best of {ROUNDS} interleaved rounds",
        SHARD >> 10
    );
    println!("(default column block: {} KiB)\n", COLUMN_BLOCK >> 10);
    let mut header = String::from("| code    | encode | encode_bytes |");
    for b in blocks {
        header.push_str(&format!(" block {:>4} KiB |", b >> 10));
    }
    header.push_str(" RS only | BLAKE3 only | memcpy | decode, m data lost |");
    println!("{header}");
    println!(
        "|{}|",
        header[1..header.len() - 1]
            .split('|')
            .map(|c| "-".repeat(c.len()))
            .collect::<Vec<_>>()
            .join("|")
    );
    for (k, m) in [(4usize, 2usize), (8, 3)] {
        let len = k * SHARD;
        let input = data(len);
        let shared = Bytes::from(input.clone());
        let codec = Codec::new(k, m).unwrap();
        let tuned: Vec<Codec> = blocks
            .iter()
            .map(|b| Codec::new(k, m).unwrap().with_column_block(*b))
            .collect();
        let rs = ReedSolomon::new(k, m).unwrap();
        let mut parity = vec![vec![0u8; SHARD]; m];
        let mut dst = vec![0u8; len];
        let e = codec.encode(&input).unwrap();
        let l = layout(&e);
        let degraded: Vec<Option<Bytes>> = (0..k + m)
            .map(|i| (i >= m).then(|| e.shards[i].clone()))
            .collect();

        let mut jobs: Vec<Job<'_>> = vec![
            (
                "encode",
                Box::new(|| {
                    black_box(codec.encode(black_box(&input)).unwrap());
                }),
            ),
            (
                "encode_bytes",
                Box::new(|| {
                    black_box(codec.encode_bytes(black_box(shared.clone())).unwrap());
                }),
            ),
        ];
        for c in &tuned {
            let input = &input;
            jobs.push((
                "block",
                Box::new(move || {
                    black_box(c.encode(black_box(input)).unwrap());
                }),
            ));
        }
        jobs.push((
            "rs",
            Box::new(|| {
                let d: Vec<&[u8]> = input.chunks(SHARD).collect();
                rs.encode_sep(&d, &mut parity).unwrap();
                black_box(&parity);
            }),
        ));
        jobs.push((
            "blake3",
            Box::new(|| {
                for c in input.chunks(SHARD) {
                    black_box(blake3::hash(c));
                }
            }),
        ));
        jobs.push((
            "memcpy",
            Box::new(|| {
                dst.copy_from_slice(black_box(&input));
                black_box(&dst);
            }),
        ));
        jobs.push((
            "decode",
            Box::new(|| {
                black_box(codec.reconstruct(&l, degraded.clone()).unwrap());
            }),
        ));
        let results = race(len, &mut jobs);
        let mut row = format!("| RS({k},{m}) ");
        for ((_, rate), col) in results.iter().zip(header.split('|').skip(2)) {
            row.push_str(&format!("| {rate:>w$.2} ", w = col.len() - 2));
        }
        println!("{row}|");
    }
    let zeros = vec![0u8; 4 << 20];
    let z = race(
        zeros.len(),
        &mut [(
            "zero",
            Box::new(|| {
                black_box(is_all_zero(black_box(&zeros)));
            }),
        )],
    );
    println!("\nis_all_zero over 4 MiB of zeros: {:.1} GiB/s", z[0].1);
}
