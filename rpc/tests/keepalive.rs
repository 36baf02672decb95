//! Keepalive on real sockets: a proxy between client and server that can go silent (it
//! keeps the TCP connections open but forwards nothing, like a black-holed peer). A call
//! waiting on a silent connection fails within the keepalive timeout instead of its own
//! deadline, and once the proxy forwards again the next call works at once on a new
//! connection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera_proto::system::Ping;
use tessera_rpc::{Client, RpcConfig, RpcError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards connections to `target` while `open`; when it is cleared, bytes already in
/// flight are dropped and nothing more passes, but the sockets stay open. Returns the
/// address and the number of connections accepted so far.
async fn proxy(target: String, open: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(outbound) = TcpStream::connect(&target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, open.clone()));
            tokio::spawn(pump(ro, wi, open.clone()));
        }
    });
    (addr, accepted)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    open: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if open.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A client with a quick keepalive (100 ms interval, 500 ms timeout), connected through a
/// proxy that `open` silences, after one answered ping.
struct Proxied {
    client: Client,
    open: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    _server: (tessera_rpc::ServerHandle, Arc<Observed>),
}

async fn through_proxy() -> Proxied {
    let (server, obs) = start(RpcConfig::default()).await;
    let open = Arc::new(AtomicBool::new(true));
    let (addr, accepted) = proxy(server.local_addr().to_string(), open.clone()).await;
    let config = RpcConfig {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(500),
        ..RpcConfig::default()
    };
    let client = Client::new(addr, secret(CLUSTER_SECRET), config);
    client.call::<Ping>(&()).await.unwrap();
    Proxied {
        client,
        open,
        accepted,
        _server: (server, obs),
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_replaced() {
    let Proxied {
        client,
        open,
        _server,
        ..
    } = through_proxy().await;

    open.store(false, Ordering::SeqCst);
    let started = Instant::now();
    let r = client
        .call_with::<Echo>(&echo(1, 0), no_payload(), Duration::from_secs(20))
        .await;
    let took = started.elapsed();
    assert!(
        matches!(r, Err(RpcError::ConnectionClosed { .. })),
        "a call on a silent connection: {r:?}"
    );
    assert!(took < Duration::from_secs(3), "noticed after {took:?}");

    open.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let (reply, _) = client
        .call_with::<Echo>(&echo(2, 0), no_payload(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(reply, 2);
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A caller that reads around a slow server withdraws its call after milliseconds, so no
/// call is left waiting on the silent connection; it must be replaced all the same, or
/// after the network heals the next calls queue behind TCP's retransmit back-off.
#[tokio::test]
async fn a_silent_connection_is_replaced_after_a_withdrawn_call() {
    let Proxied {
        client,
        open,
        accepted,
        _server,
    } = through_proxy().await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    open.store(false, Ordering::SeqCst);
    let r = client
        .call_with::<Echo>(&echo(1, 0), no_payload(), Duration::from_millis(50))
        .await;
    assert!(matches!(r, Err(RpcError::Timeout { .. })), "{r:?}");
    // Interval + timeout and a margin, with no call waiting.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    open.store(true, Ordering::SeqCst);
    let (reply, _) = client
        .call_with::<Echo>(&echo(2, 0), no_payload(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, 2);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the silent connection was kept instead of replaced"
    );
}

#[tokio::test]
async fn a_slow_reply_on_a_live_connection_is_not_cut_off() {
    let (server, _obs) = start(RpcConfig::default()).await;
    let config = RpcConfig {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(300),
        ..RpcConfig::default()
    };
    let client = Client::new(
        server.local_addr().to_string(),
        secret(CLUSTER_SECRET),
        config,
    );
    // The server takes 2 s but answers pings meanwhile: the call must not be failed.
    let (reply, _) = client
        .call_with::<Echo>(&echo(3, 2_000), no_payload(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(reply, 3);
}
