//! Stalled uploads: 100 authenticated connections each send the header and half of a
//! 48 MiB shard put to one chunkserver, then go silent. The chunkserver's memory stays
//! within its buffer budget (`--buffer-budget`), every one of those connections is closed
//! by the frame deadline (`--frame-timeout-ms`), and a mount on the cluster keeps writing
//! and reading meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tessera_proto::{FrameHeader, Method};
use tessera_rpc::Secret;
use tessera_tests::MetaOptions;
use tessera_tests::chunk::ChunkOptions;
use tessera_tests::fault::noise;
use tessera_tests::mount::{DevCluster, drop_caches};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 100;
const FRAME_PAYLOAD: u32 = 48 << 20;
const BUDGET: u64 = 64 << 20;
const FRAME_TIMEOUT_MS: u64 = 3_000;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Connects, authenticates, sends a put header for a 48 MiB payload and half of it, then
/// waits; returns how long after the header the server closed the connection.
async fn stall(addr: String, secret: Secret, id: u64) -> Result<Duration, String> {
    let mut s = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    tessera_rpc::auth::client_handshake(&mut s, &secret, &addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut header = FrameHeader::request(Method::PUT_SHARD, id, 600_000);
    header.payload_len = FRAME_PAYLOAD;
    s.write_all(&header.encode())
        .await
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let half = vec![0x5au8; (FRAME_PAYLOAD / 2) as usize];
    let (mut rd, mut wr) = s.into_split();
    // The write blocks once the server stops reading; the read ends when it closes.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&half).await;
        // Keep the write half open (no FIN) until the test ends: a silent sender.
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(wr);
    });
    let mut buf = [0u8; 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    writer.abort();
    Ok(sent.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_half_frames_are_bounded_and_cut_off() {
    let mut chunk_opts = vec![ChunkOptions::default(); 6];
    chunk_opts[0].extra_args = vec![
        "--buffer-budget".into(),
        BUDGET.to_string(),
        "--frame-timeout-ms".into(),
        FRAME_TIMEOUT_MS.to_string(),
    ];
    let c = DevCluster::start_custom(
        "fault-stalled",
        (3, &MetaOptions::default()),
        chunk_opts,
        "4+2",
        1,
    )
    .await;
    let victim = &c.chunks[0];
    let pid = victim.process.pid().unwrap();
    let secret = Secret::load(&c.secret_file).unwrap();
    let before = rss_bytes(pid);

    let stalls: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(stall(victim.addr.clone(), secret.clone(), i as u64 + 1)))
        .collect();

    // The mount works meanwhile, and the server's memory is sampled.
    let dir = c.mount(0).path().to_path_buf();
    let started = Instant::now();
    let mut peak = before;
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(8) {
        let data = noise(1 << 20, 900 + n);
        let path = dir.join(format!("f{n}"));
        let p = path.clone();
        let d = data.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(&d).unwrap();
            f.sync_all().unwrap();
        })
        .await
        .unwrap();
        drop_caches();
        let back = tokio::task::spawn_blocking(move || std::fs::read(&path).unwrap())
            .await
            .unwrap();
        assert!(back == data, "f{n} read back wrong");
        peak = peak.max(rss_bytes(pid));
        n += 1;
    }
    let mut closed_after = Vec::new();
    for s in stalls {
        let took = tokio::time::timeout(Duration::from_secs(60), s)
            .await
            .expect("a stalled connection was never closed")
            .unwrap()
            .expect("stall");
        closed_after.push(took);
    }
    peak = peak.max(rss_bytes(pid));
    let grew = peak.saturating_sub(before);
    let latest = closed_after.iter().max().unwrap();
    eprintln!(
        "{n} files written and read meanwhile; chunkserver RSS {} MiB before, peak {} MiB \
         (+{} MiB, budget {} MiB); stalled connections closed {:.1}-{:.1} s after their header",
        before >> 20,
        peak >> 20,
        grew >> 20,
        BUDGET >> 20,
        closed_after.iter().min().unwrap().as_secs_f64(),
        latest.as_secs_f64()
    );
    assert!(n >= 3, "the mount got only {n} files through");
    // The budget, plus the per-connection read buffers (64 KiB each) and allocator slack.
    assert!(
        grew <= BUDGET + (CONNECTIONS as u64 * (64 << 10)) + (16 << 20),
        "chunkserver RSS grew {} MiB",
        grew >> 20
    );
    assert!(
        *latest <= Duration::from_millis(FRAME_TIMEOUT_MS) + Duration::from_secs(5),
        "a stalled connection stayed open {latest:?}"
    );
}
