//! Stripes on real chunkservers: six `tessera chunk` processes, RS(4,2), shard `i` of every
//! stripe on server `i + 1`. Encode, put, read back bit-exact (whole and in ranges); then
//! with two servers SIGKILLed, a corrupt shard file on disk, a stopped (slow) server, a full
//! server, and three servers dead, which must fail with an error naming the stripe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Range;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_proto::fs::StripeInfo;
use tessera_stripe::{ChunkClient, ChunkClientConfig, Codec, PutError, ReadError, ShardFault};
use tessera_tests::TempDir;
use tessera_tests::chunk::{ChunkOptions, Chunkserver, shard, shard_file};
use tessera_tests::process::write_secret;

const SIZES: [usize; 4] = [1, 4095, (4 << 20) - 1, 4 << 20];

/// Chunkservers and a client. Fields drop in order: processes before their directory.
struct Cluster {
    servers: Vec<Chunkserver>,
    client: ChunkClient,
    codec: Codec,
    _dir: TempDir,
}

impl Cluster {
    async fn start(name: &str, n: usize, opts: impl Fn(usize) -> ChunkOptions) -> Cluster {
        let dir = TempDir::new(name);
        let (path, secret) = write_secret(dir.path());
        let mut servers = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("data-{}", i + 1));
            let name = format!("chunk-{}", i + 1);
            servers.push(Chunkserver::start(&dir, &name, &data, (&path, &secret), &opts(i)).await);
        }
        let config = ChunkClientConfig {
            // Short, so the slow-server test shows the hedge and not the deadline.
            slow_shard: Duration::from_millis(300),
            read_timeout: Duration::from_secs(15),
            ..ChunkClientConfig::default()
        };
        Cluster {
            servers,
            client: ChunkClient::new(secret, config),
            codec: Codec::new(4, 2).unwrap(),
            _dir: dir,
        }
    }

    /// Server id `i + 1` is `servers[i]`.
    fn addr(&self, server: u64) -> Option<String> {
        let i = usize::try_from(server).ok()?.checked_sub(1)?;
        self.servers.get(i).map(|s| s.addr.clone())
    }

    fn targets(&self, ids: &[u64]) -> Vec<(u64, String)> {
        ids.iter()
            .map(|id| (*id, self.addr(*id).unwrap()))
            .collect()
    }

    /// Encodes `data` and puts shard `i` on server `i + 1`.
    async fn store(&self, data: &Bytes) -> StripeInfo {
        let e = self.codec.encode_bytes(data.clone()).unwrap();
        let places = self
            .client
            .put_shards(&e, &self.targets(&[1, 2, 3, 4, 5, 6]))
            .await
            .unwrap();
        e.info(places)
    }

    async fn read(&self, stripe: &StripeInfo, range: Range<u64>) -> Result<Bytes, ReadError> {
        let addrs = |id| self.addr(id);
        self.client.read(stripe, &addrs, range).await
    }

    /// Reads `range` and compares it with `data`.
    async fn check(&self, stripe: &StripeInfo, data: &Bytes, range: Range<u64>) {
        let got = self
            .read(stripe, range.clone())
            .await
            .unwrap_or_else(|e| panic!("read {range:?} of {} bytes: {e}", data.len()));
        let want = &data[range.start as usize..range.end as usize];
        assert!(
            got == want,
            "range {range:?} of {} bytes came back different",
            data.len()
        );
    }

    /// The whole stripe and a spread of ranges: empty, first and last byte, across shard
    /// boundaries, inside each shard, and pseudo-random ones.
    async fn check_ranges(&self, stripe: &StripeInfo, data: &Bytes) {
        let len = data.len() as u64;
        let s = stripe.layout.shard_len;
        let mut ranges = vec![0..len, 0..0, 0..1, len - 1..len, len / 2..len];
        for i in 0..4 {
            let base = (i * s).min(len);
            ranges.push(base..(base + s / 2 + 1).min(len));
            ranges.push(base.saturating_sub(3)..(base + 3).min(len));
        }
        let mut x = len | 1;
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = x % len;
            let b = a + (x >> 32) % (len - a + 1);
            ranges.push(a..b);
        }
        for r in ranges {
            self.check(stripe, data, r).await;
        }
    }
}

fn data(len: usize, seed: u64) -> Bytes {
    shard(len, seed).1
}

#[tokio::test(flavor = "multi_thread")]
async fn stripes_round_trip_bit_exact_in_every_range() {
    let c = Cluster::start("stripe-roundtrip", 6, |_| ChunkOptions::default()).await;
    for (seed, len) in SIZES.into_iter().enumerate() {
        let d = data(len, seed as u64);
        let stripe = c.store(&d).await;
        assert_eq!(stripe.layout.data_len, len as u64);
        c.check_ranges(&stripe, &d).await;
        // Storing equal data again is a no-op with the same id (dedup).
        assert_eq!(c.store(&d).await, stripe);
        let err = c.read(&stripe, 0..len as u64 + 1).await.unwrap_err();
        assert!(matches!(err, ReadError::BadRange { .. }), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dead_servers_are_read_around_through_parity() {
    let mut c = Cluster::start("stripe-two-dead", 6, |_| ChunkOptions::default()).await;
    let mut stored = Vec::new();
    for (seed, len) in SIZES.into_iter().enumerate() {
        let d = data(len, 10 + seed as u64);
        stored.push((c.store(&d).await, d));
    }
    // Servers 1 and 2 hold data shards 0 and 1: the worst pair for reads.
    c.servers[0].kill9();
    c.servers[1].kill9();
    for (stripe, d) in &stored {
        c.check_ranges(stripe, d).await;
    }
    // Repair rebuilds the lost shards bit-exact from the survivors.
    let (stripe, d) = &stored[3];
    let e = c.codec.encode(d).unwrap();
    let addrs = |id| c.addr(id);
    for index in [0, 1] {
        let shard = c.client.rebuild_shard(stripe, &addrs, index).await.unwrap();
        assert!(shard == e.shards[index], "rebuilt shard {index} differs");
    }
}

/// Flips one bit `from_end` bytes before the end of a stored shard's file (the data is at
/// the end, after the header and block hashes).
fn flip_byte(data_dir: &Path, id: &ShardId, from_end: usize) {
    let path = shard_file(data_dir, id);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1 - from_end;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_shard_on_disk_is_read_around() {
    let c = Cluster::start("stripe-corrupt", 6, |_| ChunkOptions::default()).await;
    let (a, b) = (data(4 << 20, 20), data(4 << 20, 21));
    let (sa, sb) = (c.store(&a).await, c.store(&b).await);
    let s = sa.layout.shard_len;

    // A ranged read inside the damaged block of data shard 1: the server refuses it as
    // `Corrupt` (and quarantines the shard); the read reconstructs.
    flip_byte(&c.servers[1].data, &sa.layout.shards[1].shard, 100);
    c.check(&sa, &a, 2 * s - 200..2 * s - 50).await;
    let damaged = sa.layout.shards[1].shard;
    assert_eq!(
        c.servers[1].client().stat(damaged).await,
        Ok(None),
        "quarantined"
    );
    // Now the shard is gone from that server: still read around.
    c.check_ranges(&sa, &a).await;

    // A whole-stripe read, with the damage in data shard 2.
    flip_byte(&c.servers[2].data, &sb.layout.shards[2].shard, 5000);
    c.check(&sb, &b, 0..4 << 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_server_costs_one_slow_interval_not_the_deadline() {
    let c = Cluster::start("stripe-slow", 6, |_| ChunkOptions::default()).await;
    let d = data(4 << 20, 30);
    let stripe = c.store(&d).await;
    let pid = c.servers[0].process.pid().unwrap().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let started = Instant::now();
    c.check(&stripe, &d, 0..4 << 20).await;
    c.check(&stripe, &d, 10..20).await;
    let took = started.elapsed();
    signal("-CONT");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_puts_name_their_targets_and_are_retried_elsewhere() {
    // Server 6 is too small for a 1 MiB shard; server 7 is the spare.
    let c = Cluster::start("stripe-put-fail", 7, |i| ChunkOptions {
        capacity: (i == 5).then_some(64 << 10),
        ..ChunkOptions::default()
    })
    .await;
    let d = data(4 << 20, 40);
    let e = c.codec.encode(&d).unwrap();
    let err = c
        .client
        .put_shards(&e, &c.targets(&[1, 2, 3, 4, 5, 6]))
        .await
        .unwrap_err();
    let PutError::Failed {
        stored, failures, ..
    } = &err
    else {
        panic!("expected Failed, got {err}");
    };
    assert_eq!(failures.0.len(), 1, "{err}");
    assert_eq!((failures.0[0].index, failures.0[0].server), (5, 6));
    assert!(failures.0[0].fault.is_no_space(), "{err}");
    assert!(err.to_string().contains(&e.stripe_id.to_string()), "{err}");
    assert_eq!(stored.len(), 5);

    let retried = c
        .client
        .put_shards_at(&e, &[(5, 7, c.addr(7).unwrap())])
        .await
        .unwrap();
    let mut places: Vec<_> = stored.iter().map(|(_, p)| *p).collect();
    places.extend(retried);
    let stripe = e.info(places);
    c.check(&stripe, &d, 0..4 << 20).await;

    // Two shards on one server is refused before anything is sent.
    let err = c
        .client
        .put_shards(&e, &c.targets(&[1, 1, 3, 4, 5, 7]))
        .await;
    assert!(matches!(
        err,
        Err(PutError::DuplicateServer { server: 1, .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn three_dead_servers_fail_with_an_error_naming_the_stripe() {
    let mut c = Cluster::start("stripe-three-dead", 6, |_| ChunkOptions::default()).await;
    let d = data(4 << 20, 50);
    let stripe = c.store(&d).await;
    for i in [0, 3, 5] {
        c.servers[i].kill9();
    }
    let started = Instant::now();
    let err = c.read(&stripe, 0..100).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ReadError::Unavailable {
                usable: 3,
                need: 4,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&stripe.id.to_string()), "{msg}");
    for server in ["chunkserver 1", "chunkserver 4", "chunkserver 6"] {
        assert!(msg.contains(server), "{msg}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // GC deletes what it can reach and lists the rest.
    let addrs = |id| c.addr(id);
    let err = c.client.delete_shards(&stripe, &addrs).await.unwrap_err();
    let failed: Vec<usize> = err.failures.0.iter().map(|f| f.index).collect();
    assert_eq!(failed, vec![0, 3, 5], "{err}");
    assert!(
        matches!(err.failures.0[0].fault, ShardFault::Rpc(_)),
        "{err}"
    );
    for i in [1, 2, 4] {
        let id = stripe.layout.shards[i].shard;
        assert_eq!(c.servers[i].client().stat(id).await, Ok(None));
    }
}
