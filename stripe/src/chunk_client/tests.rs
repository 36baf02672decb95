//! The read and put logic against in-process chunk services that misbehave on purpose:
//! serve bytes that do not match the id (flipped, truncated, another shard's, with the right
//! proof or another shard's own), stall, lose shards or run full.
//! The real chunkserver is exercised by `tests/stripe_io.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    ByteRange, ChunkError, DeleteOutcome, DeleteShard, GetShard, PutOutcome, PutShard, ShardProof,
};
use tessera_proto::fs::StripeInfo;
use tessera_proto::proof;
use tessera_rpc::{Router, RpcConfig, Secret, ServerHandle};

use super::{ChunkClient, ChunkClientConfig};
use crate::codec::Codec;
use crate::error::{PutError, ReadError, ShardFault};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Honest,
    /// Serves every read with its first byte flipped.
    Lie,
    /// Serves half the bytes asked for.
    Truncate,
    /// Serves another shard's bytes with the right proof.
    Other,
    /// Serves another shard's bytes with that shard's own proof.
    Stale,
    /// Answers nothing (the caller's deadline ends the call).
    Stall,
    /// Has lost every shard.
    Lost,
    /// Refuses puts with `NoSpace`.
    Full,
}

/// An honest answer to a get of `range` (or all) of `data`, as a chunkserver gives it.
fn serve(data: &Bytes, range: Option<ByteRange>) -> (ShardProof, Bytes) {
    let len = data.len() as u64;
    let Some(r) = range.filter(|r| r.start < r.end && r.end <= len) else {
        return (
            ShardProof {
                len,
                cvs: Vec::new(),
            },
            data.clone(),
        );
    };
    let span = proof::span_of(&(r.start..r.end), len);
    let (_, cvs) = proof::prove(data, &span).unwrap();
    (
        ShardProof { len, cvs },
        data.slice(span.start as usize..span.end as usize),
    )
}

struct Fake {
    server: ServerHandle,
    mode: Arc<Mutex<Mode>>,
}

type Store = Arc<Mutex<HashMap<ShardId, Bytes>>>;

async fn fake(secret: &Secret, mode: Mode) -> Fake {
    let store: Store = Arc::default();
    let mode = Arc::new(Mutex::new(mode));
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    let (m1, m2, m3) = (mode.clone(), mode.clone(), mode.clone());
    let router = Router::new("chunk")
        .route::<PutShard, _, _>(move |call| {
            let mode = *m1.lock().unwrap();
            let s = s1.clone();
            async move {
                let id = call.req.id;
                match mode {
                    Mode::Stall => std::future::pending().await,
                    Mode::Full => {
                        let needed = call.payload.len() as u64;
                        (Err(ChunkError::NoSpace { id, needed }), Bytes::new())
                    }
                    _ => {
                        s.lock().unwrap().insert(id, call.payload);
                        (Ok(PutOutcome::Stored), Bytes::new())
                    }
                }
            }
        })
        .route::<GetShard, _, _>(move |call| {
            let mode = *m2.lock().unwrap();
            let store = s2.lock().unwrap().clone();
            async move {
                let id = call.req.id;
                let stored = match (mode, store.get(&id)) {
                    (Mode::Stall, _) => std::future::pending().await,
                    (Mode::Lost, _) | (_, None) => {
                        return (Err(ChunkError::NotFound { id }), Bytes::new());
                    }
                    (_, Some(b)) => b.clone(),
                };
                // Another shard this server holds, for the lies that need one.
                let other = store
                    .iter()
                    .find(|(k, _)| **k != id)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_else(|| Bytes::from(vec![0u8; stored.len()]));
                let (reply, bytes) = serve(&stored, call.req.range);
                let lie = match mode {
                    Mode::Lie => {
                        let mut v = bytes.to_vec();
                        v[0] ^= 1;
                        (reply, Bytes::from(v))
                    }
                    Mode::Truncate => (reply, bytes.slice(..bytes.len() / 2)),
                    // Another shard's bytes (cut or padded to length) under this proof.
                    Mode::Other => {
                        let mut v = serve(&other, call.req.range).1.to_vec();
                        v.resize(bytes.len(), 0);
                        (reply, Bytes::from(v))
                    }
                    // Another shard with its own proof: self-consistent, but not this id.
                    Mode::Stale => serve(&other, call.req.range),
                    _ => (reply, bytes),
                };
                (Ok(lie.0), lie.1)
            }
        })
        .route::<DeleteShard, _, _>(move |call| {
            let stall = *m3.lock().unwrap() == Mode::Stall;
            let gone = !stall && s3.lock().unwrap().remove(&call.req.id).is_some();
            async move {
                if stall {
                    std::future::pending::<()>().await;
                }
                let out = if gone {
                    DeleteOutcome::Deleted
                } else {
                    DeleteOutcome::NotPresent
                };
                (Ok(out), Bytes::new())
            }
        });
    let server = tessera_rpc::serve("127.0.0.1:0", secret.clone(), router, RpcConfig::default())
        .await
        .unwrap();
    Fake { server, mode }
}

struct Setup {
    fakes: Vec<Fake>,
    client: ChunkClient,
    codec: Codec,
}

impl Setup {
    async fn new(n: usize, config: ChunkClientConfig) -> Setup {
        let secret = Secret::from_bytes(&[7u8; 32], "test").unwrap();
        let mut fakes = Vec::new();
        for _ in 0..n {
            fakes.push(fake(&secret, Mode::Honest).await);
        }
        Setup {
            fakes,
            client: ChunkClient::new(secret, config),
            codec: Codec::new(4, 2).unwrap(),
        }
    }

    fn addr(&self, server: u64) -> Option<String> {
        let f = self
            .fakes
            .get(usize::try_from(server).ok()?.checked_sub(1)?)?;
        Some(f.server.local_addr().to_string())
    }

    fn set(&self, server: u64, mode: Mode) {
        *self.fakes[server as usize - 1].mode.lock().unwrap() = mode;
    }

    async fn store(&self, data: &[u8]) -> StripeInfo {
        let e = self.codec.encode(data).unwrap();
        let targets: Vec<(u64, String)> = (1..=6).map(|id| (id, self.addr(id).unwrap())).collect();
        let places = self.client.put_shards(&e, &targets).await.unwrap();
        e.info(places)
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn quick() -> ChunkClientConfig {
    ChunkClientConfig {
        slow_shard: Duration::from_millis(100),
        read_timeout: Duration::from_secs(2),
        put_timeout: Duration::from_millis(500),
        delete_timeout: Duration::from_millis(500),
        ..ChunkClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_shards_that_do_not_verify_are_read_around() {
    let s = Setup::new(6, quick()).await;
    let d = data(100_000);
    let stripe = s.store(&d).await;
    s.set(2, Mode::Lie);
    let addrs = |id| s.addr(id);
    let got = s.client.read(&stripe, &addrs, 0..100_000).await.unwrap();
    assert!(got == d[..], "a lying server's bytes were used");
    let rebuilt = s.client.rebuild_shard(&stripe, &addrs, 0).await.unwrap();
    assert_eq!(ShardId::of(&rebuilt), stripe.layout.shards[0].shard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_from_a_lying_server_are_caught_counted_and_queued() {
    let s = Setup::new(6, quick()).await;
    let d = data(1 << 20);
    let stripe = s.store(&d).await;
    let addrs = |id| s.addr(id);
    // Server 2 holds data shard 1 (bytes 262144..524288 of the stripe).
    let liar = stripe.layout.shards[1];
    for (n, mode) in [Mode::Lie, Mode::Truncate, Mode::Other, Mode::Stale]
        .into_iter()
        .enumerate()
    {
        s.set(2, mode);
        for range in [300_000..300_010, 262_144..266_240, 200_000..600_000] {
            let got = s.client.read(&stripe, &addrs, range.clone()).await.unwrap();
            assert!(
                got == d[range.start as usize..range.end as usize],
                "{mode:?} {range:?}: a lying server's bytes were used"
            );
        }
        assert_eq!(
            s.client.audit().bad_replies(),
            3 * (n as u64 + 1),
            "{mode:?}"
        );
        let queued = s.client.audit().take(10);
        assert_eq!(queued.len(), 1, "{mode:?}");
        assert_eq!((queued[0].server, queued[0].shard), (2, liar.shard));
    }
    // Honest again: ranges are proved and nothing more is caught.
    s.set(2, Mode::Honest);
    let got = s
        .client
        .read(&stripe, &addrs, 300_000..300_010)
        .await
        .unwrap();
    assert!(got == d[300_000..300_010]);
    assert_eq!(s.client.audit().bad_replies(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_without_an_address_are_read_around_up_to_m() {
    let s = Setup::new(6, quick()).await;
    let d = data(50_000);
    let stripe = s.store(&d).await;
    let two_unknown = |id| (id > 2).then(|| s.addr(id)).flatten();
    let got = s
        .client
        .read(&stripe, &two_unknown, 10..40_000)
        .await
        .unwrap();
    assert!(got == d[10..40_000]);
    let three_unknown = |id| (id > 3).then(|| s.addr(id)).flatten();
    let err = s
        .client
        .read(&stripe, &three_unknown, 0..10)
        .await
        .unwrap_err();
    let ReadError::Unavailable { failures, .. } = &err else {
        panic!("expected Unavailable, got {err}");
    };
    assert_eq!(failures.0.len(), 3, "{err}");
    assert!(
        matches!(failures.0[0].fault, ShardFault::NoAddress { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_is_replaced_after_one_slow_interval() {
    let s = Setup::new(6, quick()).await;
    let d = data(1 << 20);
    let stripe = s.store(&d).await;
    s.set(1, Mode::Stall);
    let addrs = |id| s.addr(id);
    for range in [0..1 << 20, 5..500] {
        let started = Instant::now();
        let got = s.client.read(&stripe, &addrs, range.clone()).await.unwrap();
        assert!(got == d[range.start as usize..range.end as usize]);
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "{range:?} took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_stalled_servers_end_at_the_deadline() {
    let s = Setup::new(6, quick()).await;
    let stripe = s.store(&data(4000)).await;
    for id in [1, 2, 3] {
        s.set(id, Mode::Stall);
    }
    let addrs = |id| s.addr(id);
    let started = Instant::now();
    let err = s.client.read(&stripe, &addrs, 0..4000).await.unwrap_err();
    let took = started.elapsed();
    let ReadError::TimedOut { failures, .. } = &err else {
        panic!("expected TimedOut, got {err}");
    };
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let mut stalled: Vec<u64> = failures.0.iter().map(|f| f.server).collect();
    stalled.sort_unstable();
    assert_eq!(stalled, vec![1, 2, 3], "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_shards_and_wrong_layouts_are_reported() {
    let s = Setup::new(6, quick()).await;
    let stripe = s.store(&data(4000)).await;
    for id in [2, 4, 6] {
        s.set(id, Mode::Lost);
    }
    let addrs = |id| s.addr(id);
    let err = s.client.read(&stripe, &addrs, 0..4000).await.unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::Unavailable {
                usable: 3,
                need: 4,
                ..
            }
        ),
        "{err}"
    );
    let mut bad = stripe.clone();
    bad.layout.shards.pop();
    let err = s.client.read(&bad, &addrs, 0..1).await.unwrap_err();
    assert!(matches!(err, ReadError::Layout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_report_each_failed_target_and_deletes_are_best_effort() {
    let s = Setup::new(6, quick()).await;
    let e = s.codec.encode(&data(10_000)).unwrap();
    s.set(2, Mode::Full);
    s.set(5, Mode::Stall);
    let targets: Vec<(u64, String)> = (1..=6).map(|id| (id, s.addr(id).unwrap())).collect();
    let err = s.client.put_shards(&e, &targets).await.unwrap_err();
    let failed: Vec<(usize, bool)> = err
        .failures()
        .iter()
        .map(|f| (f.index, f.fault.is_no_space()))
        .collect();
    assert_eq!(failed, vec![(1, true), (4, false)], "{err}");
    let PutError::Failed { stored, .. } = &err else {
        panic!("{err}");
    };
    let stored: Vec<usize> = stored.iter().map(|(i, _)| *i).collect();
    assert_eq!(stored, vec![0, 2, 3, 5]);
    assert!(matches!(
        s.client.put_shards(&e, &targets[..5]).await,
        Err(PutError::TargetCount {
            want: 6,
            got: 5,
            ..
        })
    ));

    s.set(2, Mode::Honest);
    s.set(5, Mode::Honest);
    let places = s.client.put_shards(&e, &targets).await.unwrap();
    let stripe = e.info(places);
    let addrs = |id| s.addr(id);
    s.set(3, Mode::Stall);
    let err = s.client.delete_shards(&stripe, &addrs).await.unwrap_err();
    assert_eq!(err.failures.0.len(), 1, "{err}");
    assert_eq!(err.failures.0[0].server, 3);
    s.set(3, Mode::Honest);
    s.client.delete_shards(&stripe, &addrs).await.unwrap();
}
