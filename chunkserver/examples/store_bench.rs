//! Rough figures for the file backend: a benchmark, not a test.
//!
//!     cargo run -p tessera-chunkserver --example store_bench -- [DIR] [SHARDS]
//!
//! DIR (default: the system temp dir) should be on the disk to measure. Prints, for 1 MiB
//! shards: put and get MB/s with 1 and 8 in flight and CPU ms per MiB, beside a plain
//! write + fdatasync of the same bytes to the same disk; then the cost of verifying a 4 KiB
//! range of a 4 MiB shard by its block hash list versus reading and hashing the whole shard;
//! then, for 4 KiB reads of a 1 MiB shard (a 4 MiB stripe in 4+2) asked for in units of 1,
//! 4, 16 and 64 KiB, the server's proved get, the reader's check of the proof, and the bytes
//! each sends.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use blake3::hazmat::HasherExt;
use bytes::Bytes;
use tessera_chunkserver::store::{FileStore, FileStoreConfig, ShardId, ShardStore};
use tessera_proto::proof;

const MIB: usize = 1 << 20;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let count: usize = args
        .next()
        .map_or(Ok(256), |s| s.parse())
        .context("SHARDS")?;
    let dir = base.join(format!("tessera-store-bench-{}", std::process::id()));
    let result = run(&dir, count);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run(dir: &Path, count: usize) -> anyhow::Result<()> {
    let shards: Vec<(ShardId, Bytes)> = (0..count).map(|i| make_shard(MIB, i as u64)).collect();
    let mib = count as f64;
    println!("{count} shards of 1 MiB in {}", dir.display());

    for threads in [1, 8] {
        let plain = dir.join(format!("plain-{threads}"));
        fs::create_dir_all(&plain)?;
        let (wall, cpu) =
            timed(|| parallel(&shards, threads, |i, (_, d)| plain_write(&plain, i, d)))?;
        report(&format!("plain write+fdatasync x{threads}"), mib, wall, cpu);

        let store = FileStore::open(
            dir.join(format!("store-{threads}")),
            FileStoreConfig::default(),
        )?;
        let (wall, cpu) = timed(|| parallel(&shards, threads, |_, (id, d)| put(&store, id, d)))?;
        report(&format!("store put x{threads}"), mib, wall, cpu);
        let (wall, cpu) = timed(|| {
            parallel(&shards, threads, |_, (id, _)| {
                Ok(store.get(id, None).map(drop)?)
            })
        })?;
        report(
            &format!("store get (page cache) x{threads}"),
            mib,
            wall,
            cpu,
        );
    }

    // Hashing: plain BLAKE3 versus the per-64 KiB-block chaining values the store computes.
    let data = &shards[0].1;
    let rounds = 200;
    let (wall, _) = timed(|| {
        (0..rounds).for_each(|_| {
            std::hint::black_box(blake3::hash(data));
        });
        Ok(())
    })?;
    report("blake3::hash 1 MiB", rounds as f64, wall, Duration::ZERO);
    let (wall, _) = timed(|| {
        for _ in 0..rounds {
            for (i, block) in data.chunks(64 << 10).enumerate() {
                let mut h = blake3::Hasher::new();
                h.set_input_offset((i * (64 << 10)) as u64);
                h.update(block);
                std::hint::black_box(h.finalize_non_root());
            }
        }
        Ok(())
    })?;
    report(
        "blake3 per 64 KiB block, 1 MiB",
        rounds as f64,
        wall,
        Duration::ZERO,
    );

    // Ranged read: 4 KiB out of a 4 MiB shard.
    let store = FileStore::open(dir.join("ranged"), FileStoreConfig::default())?;
    let (id, big) = make_shard(4 * MIB, 1 << 40);
    put(&store, &id, &big)?;
    let n = 2000;
    let (block, _) = timed(|| {
        for i in 0..n {
            let at = (i * 7919 * 4096) as u64 % (4 * MIB as u64 - 4096);
            store.get(&id, Some(at..at + 4096))?;
        }
        Ok(())
    })?;
    let (whole, _) = timed(|| {
        for i in 0..n / 10 {
            let at = (i * 7919 * 4096) % (4 * MIB - 4096);
            drop(store.get(&id, None)?.slice(at..at + 4096));
        }
        Ok(())
    })?;
    println!(
        "{:<36} {:>8.1} us per 4 KiB read of a 4 MiB shard",
        "ranged get, block-verified",
        block.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "{:<36} {:>8.1} us per 4 KiB read of a 4 MiB shard",
        "whole get + hash + slice",
        whole.as_secs_f64() * 1e6 / (n / 10) as f64
    );
    proved_reads(&store)
}

/// Proved 4 KiB reads of a 1 MiB shard, for each unit a reader may ask in.
fn proved_reads(store: &FileStore) -> anyhow::Result<()> {
    let (id, data) = make_shard(MIB, 1 << 41);
    put(store, &id, &data)?;
    let len = MIB as u64;
    let n = 4000;
    let at = |i: usize| (i * 7919 % (MIB / 4096)) as u64 * 4096;
    // Warm the page cache and the allocator first, so no variant pays for it.
    for i in 0..n {
        store.get_proved(&id, at(i)..at(i) + 4096)?;
    }
    let (plain, _) = timed(|| {
        for i in 0..n {
            store.get(&id, Some(at(i)..at(i) + 4096))?;
        }
        Ok(())
    })?;
    println!(
        "{:<36} {:>8.1} us per 4 KiB read of a 1 MiB shard",
        "ranged get (no proof)",
        plain.as_secs_f64() * 1e6 / n as f64
    );
    for align in [1024u64, 4096, 16384, 65536] {
        let span = |i: usize| proof::widen(&(at(i)..at(i) + 4096), len, align);
        // Each reply dropped at once, as a server does once it is sent (kept, their blocks
        // could not go back to the buffer pool and every read would fault in fresh pages).
        let (server, _) = timed(|| {
            for i in 0..n {
                store.get_proved(&id, span(i))?;
            }
            Ok(())
        })?;
        let replies = (0..n)
            .map(|i| store.get_proved(&id, span(i)))
            .collect::<Result<Vec<_>, _>>()?;
        let (client, _) = timed(|| {
            for p in &replies {
                proof::verify(&id, len, &p.span, &p.bytes, &p.proof)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(())
        })?;
        let bytes: usize = replies.iter().map(|p| p.bytes.len()).sum::<usize>() / n;
        let cvs: usize = replies.iter().map(|p| p.proof.len()).sum::<usize>() / n;
        println!(
            "asked in {:>2} KiB units: server get_proved {:>6.1} us, reader verify {:>6.1} us, \
             {bytes} bytes + {cvs} CVs ({} bytes) sent",
            align / 1024,
            server.as_secs_f64() * 1e6 / n as f64,
            client.as_secs_f64() * 1e6 / n as f64,
            cvs * 32
        );
    }
    Ok(())
}

fn make_shard(len: usize, seed: u64) -> (ShardId, Bytes) {
    let mut data = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut data);
    (ShardId::of(&data), Bytes::from(data))
}

fn put(store: &FileStore, id: &ShardId, data: &Bytes) -> anyhow::Result<()> {
    store.put(id, data.clone())?;
    Ok(())
}

fn plain_write(dir: &Path, i: usize, data: &[u8]) -> anyhow::Result<()> {
    let mut f = File::create(dir.join(i.to_string()))?;
    f.write_all(data)?;
    f.sync_data()?;
    Ok(())
}

/// Runs `op` over `items` on `threads` threads (each takes every `threads`-th item).
fn parallel<T: Sync>(
    items: &[T],
    threads: usize,
    op: impl Fn(usize, &T) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || -> anyhow::Result<()> {
                    for (i, item) in items.iter().enumerate().skip(t).step_by(threads) {
                        op(i, item)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("panicked"))?)
    })
}

/// Wall time and process CPU time (user + system) of `f`.
fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<(Duration, Duration)> {
    let (c0, t0) = (cpu_time()?, Instant::now());
    f()?;
    Ok((t0.elapsed(), cpu_time()?.saturating_sub(c0)))
}

/// utime + stime of this process from /proc (clock ticks of 10 ms).
fn cpu_time() -> anyhow::Result<Duration> {
    let stat = fs::read_to_string("/proc/self/stat")?;
    let after_comm = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn report(what: &str, mib: f64, wall: Duration, cpu: Duration) {
    let mbs = mib * MIB as f64 / 1e6 / wall.as_secs_f64();
    if cpu.is_zero() {
        println!("{what:<36} {mbs:>8.0} MB/s");
    } else {
        let cpu_ms = cpu.as_secs_f64() * 1e3 / mib;
        println!("{what:<36} {mbs:>8.0} MB/s  {cpu_ms:>5.2} CPU ms/MiB");
    }
}
