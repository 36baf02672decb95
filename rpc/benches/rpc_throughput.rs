//! RPC throughput and latency beside raw TCP, measured in one run on 127.0.0.1.
//!
//! `cargo bench -p tessera-rpc --bench rpc_throughput` prints:
//! - raw tokio TCP `write_all` throughput with 1 MiB buffers (the ceiling),
//! - our RPC's throughput for calls carrying a 1 MiB payload, 1 and 8 in flight,
//! - small-call round-trip latency (median and p99),
//!
//! Throughput on this kind of machine swings by 3x from second to second (shared vCPUs), so
//! the runs are short and interleaved (raw, RPC x1, RPC x8 in turn, many rounds) and the
//! report gives medians and the median of each round's own ratio to raw TCP.
//! Tune with TESSERA_BENCH_MS (per measurement) and TESSERA_BENCH_ROUNDS;
//! TESSERA_BENCH_TLS=1 runs the RPC over TLS (the test certificates in tests/tls-certs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_proto::system::Ping;
use tessera_proto::{Method, Rpc};
use tessera_rpc::{Client, Router, RpcConfig, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

/// Receives a payload and answers with nothing: measures the request direction only, as
/// the raw TCP figure does.
struct Sink;

impl Rpc for Sink {
    const METHOD: Method = Method(0x7e01);
    const BULK: bool = true;
    type Request = ();
    type Reply = u32;
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn raw_tcp_mbps(secs: Duration) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; MIB];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let buf = vec![0xa5u8; MIB];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < secs {
        s.write_all(&buf).await.unwrap();
        sent += MIB as u64;
    }
    s.shutdown().await.unwrap();
    drop(s);
    let received = reader.await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(sent, received);
    sent as f64 / elapsed / 1e6
}

async fn rpc_mbps(client: Arc<Client>, in_flight: usize, secs: Duration) -> f64 {
    let payload = Bytes::from(vec![0x5au8; MIB]);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight {
        let (client, payload) = (client.clone(), payload.clone());
        workers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while start.elapsed() < secs {
                let (n, _) = client
                    .call_with::<Sink>(&(), payload.clone(), Duration::from_secs(10))
                    .await
                    .unwrap();
                assert_eq!(n as usize, MIB);
                sent += MIB as u64;
            }
            sent
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn small_call_latency(client: &Client, calls: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        client.call::<Ping>(&()).await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[calls / 2], samples[calls * 99 / 100])
}

/// The defaults, over TLS with `TESSERA_BENCH_TLS=1`.
fn rpc_config() -> RpcConfig {
    if env_or("TESSERA_BENCH_TLS", 0) == 0 {
        return RpcConfig::default();
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls-certs");
    let files = tessera_rpc::TlsFiles {
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
        ca: dir.join("ca.pem"),
    };
    RpcConfig {
        tls: Some(tessera_rpc::TlsConfig::load(&files).unwrap()),
        ..RpcConfig::default()
    }
}

#[tokio::main]
async fn main() {
    let secs = Duration::from_millis(env_or("TESSERA_BENCH_MS", 1000));
    let rounds = env_or("TESSERA_BENCH_ROUNDS", 11) as usize;
    let secret = Secret::from_bytes(b"benchmark cluster secret", "bench").unwrap();
    let router = Router::new("bench")
        .route::<Sink, _, _>(|call| async move { (call.payload.len() as u32, Bytes::new()) });
    let server = tessera_rpc::serve("127.0.0.1:0", secret.clone(), router, rpc_config())
        .await
        .unwrap();
    let client = Arc::new(Client::new(
        server.local_addr().to_string(),
        secret,
        rpc_config(),
    ));
    client.call::<Ping>(&()).await.unwrap();

    let (mut raw, mut one, mut eight, mut p50, mut p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        raw.push(raw_tcp_mbps(secs).await);
        one.push(rpc_mbps(client.clone(), 1, secs).await);
        eight.push(rpc_mbps(client.clone(), 8, secs).await);
        let (a, b) = small_call_latency(&client, 5_000).await;
        p50.push(a);
        p99.push(b);
        eprintln!(
            "round {}: raw {:.0} MB/s, rpc x1 {:.0} MB/s, rpc x8 {:.0} MB/s, rtt p50 {:.1} us p99 {:.1} us",
            round + 1,
            raw[round],
            one[round],
            eight[round],
            p50[round],
            p99[round]
        );
    }
    let ratio = |v: &[f64]| median(v.iter().zip(&raw).map(|(a, r)| a / r * 100.0).collect());
    let (r1, r8) = (ratio(&one), ratio(&eight));
    println!(
        "| measure (median of {rounds} interleaved rounds, {} ms each) | value | per-round ratio to raw, median |",
        secs.as_millis()
    );
    println!("|---|---|---|");
    println!(
        "| raw TCP write_all, 1 MiB buffers | {:.0} MB/s | 100% |",
        median(raw.clone())
    );
    println!(
        "| RPC, 1 MiB payload, 1 in flight | {:.0} MB/s | {r1:.0}% |",
        median(one)
    );
    println!(
        "| RPC, 1 MiB payload, 8 in flight | {:.0} MB/s | {r8:.0}% |",
        median(eight)
    );
    println!(
        "| small call round trip, median | {:.1} us | |",
        median(p50)
    );
    println!("| small call round trip, p99 | {:.1} us | |", median(p99));
}
