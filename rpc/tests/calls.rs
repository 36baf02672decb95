//! RPC behaviour on real TCP sockets on 127.0.0.1: multiplexing, deadlines, dead peers,
//! large payloads, backpressure and error statuses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::*;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_proto::Method;
use tessera_proto::system::Ping;
use tessera_rpc::{Lane, RpcConfig, RpcError, ServerStats};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn many_concurrent_calls_share_one_connection_and_finish_out_of_order() {
    let (server, obs) = start(RpcConfig::default()).await;
    let client = Arc::new(client(&server, CLUSTER_SECRET));
    let finished = Arc::new(Mutex::new(Vec::new()));

    let mut calls = Vec::new();
    for id in 0..500u64 {
        let (client, finished) = (client.clone(), finished.clone());
        // Later calls sleep less, so replies must overtake each other.
        let delay = 60 - (id % 60);
        calls.push(tokio::spawn(async move {
            let (reply, _) = client
                .call_with::<Echo>(&echo(id, delay), no_payload(), LONG)
                .await
                .unwrap();
            assert_eq!(reply, id, "reply matched to the wrong call");
            finished.lock().unwrap().push(id);
        }));
    }
    for c in calls {
        c.await.unwrap();
    }

    let order = finished.lock().unwrap().clone();
    assert_eq!(order.len(), 500);
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "replies arrived strictly in order: nothing was interleaved"
    );
    assert_eq!(obs.calls.load(Ordering::SeqCst), 500);
    assert_eq!(
        ServerStats::get(&server.stats().connections_accepted),
        1,
        "all small calls must share one connection"
    );
}

#[tokio::test]
async fn a_call_past_its_deadline_times_out_while_others_complete() {
    let (server, obs) = start(RpcConfig::default()).await;
    let client = Arc::new(client(&server, CLUSTER_SECRET));

    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .call_with::<Echo>(&echo(1, 10_000), no_payload(), Duration::from_millis(300))
                .await;
            (r, t.elapsed())
        })
    };
    let mut fast = Vec::new();
    for id in 100..150u64 {
        let client = client.clone();
        fast.push(tokio::spawn(async move {
            client
                .call_with::<Echo>(&echo(id, 20), no_payload(), LONG)
                .await
        }));
    }

    let (slow_result, elapsed) = slow.await.unwrap();
    assert!(
        matches!(slow_result, Err(RpcError::Timeout { .. })),
        "{slow_result:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "timeout took {elapsed:?}");
    for (i, f) in fast.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().unwrap().0, 100 + i as u64);
    }

    // The server drops the abandoned handler (by the cancel frame or its own copy of the
    // deadline, whichever comes first).
    wait_until(|| obs.abandoned.load(Ordering::SeqCst) == 1).await;
    assert_eq!(obs.abandoned.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dropping_a_call_cancels_the_work_on_the_server() {
    let (server, obs) = start(RpcConfig::default()).await;
    let client = client(&server, CLUSTER_SECRET);
    // The call's own deadline is long; the caller walks away after 200 ms.
    let slow = echo(3, 10_000);
    let withdrawn = || {
        tessera_rpc::client_metrics()
            .get(<Echo as tessera_proto::body::Rpc>::METHOD)
            .withdrawn
            .get()
    };
    let withdrawn_before = withdrawn();
    let call = client.call_with::<Echo>(&slow, no_payload(), LONG);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), call)
            .await
            .is_err()
    );
    // Counted as given up on by the client (other tests of this process may add more).
    assert!(withdrawn() > withdrawn_before);
    assert_eq!(wait_for(&server.stats().requests_cancelled, 1).await, 1);
    wait_until(|| obs.abandoned.load(Ordering::SeqCst) == 1).await;
    assert_eq!(obs.abandoned.load(Ordering::SeqCst), 1);
    // The connection is still good.
    let (id, _) = client
        .call_with::<Echo>(&echo(4, 0), no_payload(), LONG)
        .await
        .unwrap();
    assert_eq!(id, 4);
}

#[tokio::test]
async fn dead_peer_gives_connection_error_within_the_deadline() {
    // Nothing listening: refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = tessera_rpc::Client::new(
        format!("127.0.0.1:{port}"),
        secret(CLUSTER_SECRET),
        RpcConfig::default(),
    );
    let t = Instant::now();
    let r = c
        .call_with::<Ping>(&(), no_payload(), Duration::from_secs(2))
        .await;
    assert!(matches!(r, Err(RpcError::Connect { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));

    // A peer that accepts but never answers: the call ends at its deadline.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let c = tessera_rpc::Client::new(
        addr.to_string(),
        secret(CLUSTER_SECRET),
        RpcConfig::default(),
    );
    let t = Instant::now();
    let r = c
        .call_with::<Ping>(&(), no_payload(), Duration::from_millis(400))
        .await;
    let took = t.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    hold.abort();

    // The server dies while a call is in flight: the caller learns at once, not at its
    // deadline.
    let (server, _obs) = start(RpcConfig::default()).await;
    let c = Arc::new(client(&server, CLUSTER_SECRET));
    let c2 = c.clone();
    let t = Instant::now();
    let inflight = tokio::spawn(async move {
        c2.call_with::<Echo>(&echo(1, 10_000), no_payload(), LONG)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.shutdown();
    let r = inflight.await.unwrap();
    assert!(matches!(r, Err(RpcError::ConnectionClosed { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn sixteen_mib_payload_round_trips_bit_exact() {
    let (server, _obs) = start(RpcConfig::default()).await;
    let client = client(&server, CLUSTER_SECRET);
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sent = Bytes::from(data);
    let (id, back) = client
        .call_with::<Echo>(&echo(9, 0), sent.clone(), LONG)
        .await
        .unwrap();
    assert_eq!(id, 9);
    assert_eq!(back.len(), sent.len());
    assert_eq!(blake3::hash(&back), blake3::hash(&sent));
    assert!(back == sent);
}

#[tokio::test]
async fn bulk_payloads_use_their_own_connection() {
    let (server, _obs) = start(RpcConfig::default()).await;
    let client = client(&server, CLUSTER_SECRET);
    client.call::<Ping>(&()).await.unwrap();
    let big = Bytes::from(vec![7u8; 1 << 20]);
    client
        .call_with::<Echo>(&echo(1, 0), big, LONG)
        .await
        .unwrap();
    client.call::<Ping>(&()).await.unwrap();
    assert_eq!(ServerStats::get(&server.stats().connections_accepted), 2);
}

#[tokio::test]
async fn in_flight_bytes_on_the_server_stay_within_the_budget() {
    let budget = 2u32 << 20;
    let config = RpcConfig {
        max_inflight_bytes: budget,
        ..RpcConfig::default()
    };
    let (server, obs) = start(config).await;
    let client = Arc::new(client(&server, CLUSTER_SECRET));
    let mut calls = Vec::new();
    for id in 0..24u64 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let payload = Bytes::from(vec![id as u8; 512 << 10]);
            client.call_with::<Echo>(&echo(id, 30), payload, LONG).await
        }));
    }
    for (id, c) in calls.into_iter().enumerate() {
        let (reply, payload) = c.await.unwrap().unwrap();
        assert_eq!(reply, id as u64);
        assert!(payload.iter().all(|b| *b == id as u8));
    }
    let max = obs.max_holding.load(Ordering::SeqCst);
    assert!(max > 0);
    assert!(
        max <= budget as usize,
        "handlers held {max} payload bytes at once, budget {budget}"
    );
}

#[tokio::test]
async fn unknown_method_bad_body_and_panics_get_distinct_errors() {
    let (server, _obs) = start(RpcConfig::default()).await;
    let client = client(&server, CLUSTER_SECRET);

    let r = client
        .call_raw(
            Method(0x7fff),
            Bytes::new(),
            no_payload(),
            Lane::Small,
            LONG,
        )
        .await;
    assert!(matches!(r, Err(RpcError::UnknownMethod { .. })), "{r:?}");

    let r = client
        .call_raw(
            Method(0x7f01),
            Bytes::from_static(&[0xff; 3]),
            no_payload(),
            Lane::Small,
            LONG,
        )
        .await;
    assert!(matches!(r, Err(RpcError::BadRequest { .. })), "{r:?}");

    let r = client.call::<Boom>(&()).await;
    assert!(matches!(r, Err(RpcError::Internal { .. })), "{r:?}");

    // The connection survives all three.
    let pong = client.call::<Ping>(&()).await.unwrap();
    assert_eq!(pong.role, "test");
    assert_eq!(ServerStats::get(&server.stats().connections_accepted), 1);
}
