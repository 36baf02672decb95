//! Chunk service throughput against a real `tessera chunk` process, beside a plain fsynced
//! fio write of the same amount of data to the same disk, in the same run.
//!
//! Run it through `scripts/bench-chunk.sh` (which builds the release binary and sets
//! `TESSERA_BIN`), or directly:
//!
//!     TESSERA_BIN=target/release/tessera cargo bench -p tessera-tests --bench chunk_bench
//!
//! For 1 and 8 in flight it measures: `fio` sequential 1 MiB writes with an fdatasync after
//! each, split over as many jobs as there are puts in flight; puts of fresh 1 MiB shards; and
//! gets of those shards (page cache warm). Each figure is MB/s and CPU ms per MiB of the
//! chunkserver and of this client (from `/proc/<pid>/stat`). The steps are interleaved in
//! rounds (fio and put alternating which goes first) and medians reported, because the fsync
//! throughput of this VM's disk swings by 3x from second to second. Settings: TESSERA_BENCH_DIR (default `target/bench-chunk`; put it on the disk to
//! measure), TESSERA_BENCH_MIB per step (default 256), TESSERA_BENCH_ROUNDS (default 5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_tests::chunk::{ChunkClient, ChunkOptions, Chunkserver, shard};
use tessera_tests::process::write_secret;
use tessera_tests::{FakeMeta, TempDir};

const MIB: f64 = (1 << 20) as f64;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of a process so far, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks * 10.0
}

#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    mbps: f64,
    server_ms_per_mib: f64,
    client_ms_per_mib: f64,
}

/// Times `work` over `mib` MiB, charging CPU to the server and to this process.
async fn measure<F: std::future::Future<Output = ()>>(
    server_pid: u32,
    mib: usize,
    work: F,
) -> Sample {
    let me = std::process::id();
    let (s0, c0) = (cpu_ms(server_pid), cpu_ms(me));
    let t = Instant::now();
    work.await;
    let secs = t.elapsed().as_secs_f64();
    let (s1, c1) = (cpu_ms(server_pid), cpu_ms(me));
    Sample {
        mbps: mib as f64 * MIB / secs / 1e6,
        server_ms_per_mib: (s1 - s0) / mib as f64,
        client_ms_per_mib: (c1 - c0) / mib as f64,
    }
}

/// `fio` writing `mib` MiB in 1 MiB blocks with an fdatasync after each, over `jobs` jobs.
fn fio(dir: &Path, mib: usize, jobs: usize) -> Sample {
    let work = dir.join("fio");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("fio")
        .args([
            "--name=plain",
            "--rw=write",
            "--bs=1M",
            "--fdatasync=1",
            "--ioengine=psync",
            "--group_reporting",
            "--output-format=terse",
        ])
        .arg(format!("--directory={}", work.display()))
        .arg(format!("--size={}M", mib / jobs))
        .arg(format!("--numjobs={jobs}"))
        .output()
        .expect("fio is not installed: apt-get install -y fio");
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let terse = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = terse.trim().split(';').collect();
    // Terse v3: field 48 (1-based) is the write bandwidth in KiB/s.
    let kib_s: f64 = fields[47].parse().unwrap();
    std::fs::remove_dir_all(&work).unwrap();
    Sample {
        mbps: kib_s * 1024.0 / 1e6,
        ..Sample::default()
    }
}

async fn put_all(client: Arc<ChunkClient>, shards: Arc<Vec<(ShardId, Bytes)>>, inflight: usize) {
    run_parallel(shards.len(), inflight, move |i| {
        let (c, s) = (client.clone(), shards.clone());
        async move {
            let (id, data) = &s[i];
            c.put(*id, data.clone()).await.unwrap();
        }
    })
    .await;
}

async fn get_all(client: Arc<ChunkClient>, shards: Arc<Vec<(ShardId, Bytes)>>, inflight: usize) {
    run_parallel(shards.len(), inflight, move |i| {
        let (c, s) = (client.clone(), shards.clone());
        async move {
            let got = c.get(s[i].0, None).await.unwrap();
            assert_eq!(got.len(), s[i].1.len());
        }
    })
    .await;
}

/// Runs `task(0..n)` with at most `inflight` running at once.
async fn run_parallel<F, Fut>(n: usize, inflight: usize, task: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = Arc::new(task);
    let workers: Vec<_> = (0..inflight)
        .map(|_| {
            let (next, task) = (next.clone(), task.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    task(i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mib = env_or("TESSERA_BENCH_MIB", 256) as usize;
    let rounds = env_or("TESSERA_BENCH_ROUNDS", 5) as usize;
    let base = std::env::var_os("TESSERA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tessera_tests::bin::workspace_root().join("target/bench-chunk"));
    std::fs::create_dir_all(&base).unwrap();
    // The scratch directory (and the chunkserver's data) lives on the disk being measured.
    let dir = TempDir::new_in(&base, "bench");
    let (path, secret) = write_secret(dir.path());
    let meta = FakeMeta::start(&secret).await;
    let opts = ChunkOptions {
        meta: vec![meta.addr()],
        heartbeat_ms: 1000,
        ..ChunkOptions::default()
    };
    let server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let pid = server.process.pid().unwrap();
    let client = Arc::new(server.client());
    println!(
        "chunk bench: {mib} MiB of 1 MiB shards per step, {rounds} rounds, data in {}",
        dir.path().display()
    );

    let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    let mut ratio: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut written: Vec<ShardId> = Vec::new();
    for round in 0..rounds {
        for inflight in [1usize, 8] {
            let shards: Arc<Vec<(ShardId, Bytes)>> = Arc::new(
                (0..mib)
                    .map(|i| shard(1 << 20, ((round * 2 + inflight) << 32 | i) as u64))
                    .collect(),
            );
            // Alternate which goes first, so a slow phase of the disk does not always land
            // on the same side.
            let (f, p) = if round % 2 == 0 {
                let f = fio(dir.path(), mib, inflight);
                let p = measure(pid, mib, put_all(client.clone(), shards.clone(), inflight)).await;
                (f, p)
            } else {
                let p = measure(pid, mib, put_all(client.clone(), shards.clone(), inflight)).await;
                (fio(dir.path(), mib, inflight), p)
            };
            let g = measure(pid, mib, get_all(client.clone(), shards.clone(), inflight)).await;
            ratio.entry(inflight).or_default().push(p.mbps / f.mbps);
            let (fk, pk, gk) = if inflight == 1 {
                ("1 fio write+fdatasync x1", "2 put x1", "3 get x1")
            } else {
                ("4 fio write+fdatasync x8", "5 put x8", "6 get x8")
            };
            samples.entry(fk).or_default().push(f);
            samples.entry(pk).or_default().push(p);
            samples.entry(gk).or_default().push(g);
            eprintln!(
                "round {round} x{inflight}: fio {:.0} MB/s, put {:.0} MB/s ({:.0}%), get {:.0} MB/s",
                f.mbps,
                p.mbps,
                100.0 * p.mbps / f.mbps,
                g.mbps
            );
            written.extend(shards.iter().map(|(id, _)| *id));
        }
    }
    // Deleted only at the end: deleting between steps made the next step's puts pay for
    // ext4 searching its inode table past recently freed inodes (seen in `perf`), a cost of
    // this benchmark's churn rather than of the put path.
    for id in written {
        client.delete(id).await.unwrap();
    }

    println!();
    println!(
        "| step (medians of {rounds}) | MB/s | server CPU ms/MiB | client CPU ms/MiB | total CPU ms/MiB |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in &samples {
        let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
        let (server, client) = (m(|x| x.server_ms_per_mib), m(|x| x.client_ms_per_mib));
        let cpu = if name.contains("fio") {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                format!("{server:.2}"),
                format!("{client:.2}"),
                format!("{:.2}", m(|x| x.server_ms_per_mib + x.client_ms_per_mib)),
            )
        };
        println!(
            "| {} | {:.0} | {} | {} | {} |",
            &name[2..],
            m(|x| x.mbps),
            cpu.0,
            cpu.1,
            cpu.2
        );
    }
    println!();
    let med = |k: &str| median(samples[k].iter().map(|x| x.mbps).collect());
    for (inflight, r) in ratio {
        let (f, p) = if inflight == 1 {
            (med("1 fio write+fdatasync x1"), med("2 put x1"))
        } else {
            (med("4 fio write+fdatasync x8"), med("5 put x8"))
        };
        println!(
            "put x{inflight} / fio x{inflight}: {:.0}% of medians; median of per-round ratios {:.0}% (rounds: {})",
            100.0 * p / f,
            100.0 * median(r.clone()),
            r.iter()
                .map(|x| format!("{:.0}%", 100.0 * x))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
