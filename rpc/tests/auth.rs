//! Authentication on real sockets: nothing from a peer without the secret reaches a handler.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tessera_proto::{FrameHeader, Rpc, encode_body};
use tessera_rpc::{AuthError, RpcConfig, RpcError, ServerStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const LONG: Duration = Duration::from_secs(10);

/// A complete, valid Echo request frame, as a peer that skipped the handshake would send.
fn echo_frame() -> Vec<u8> {
    let body = encode_body(&echo(1, 0)).unwrap();
    let mut h = FrameHeader::request(Echo::METHOD, 1, 5_000);
    h.body_len = body.len() as u32;
    let mut f = h.encode().to_vec();
    f.extend_from_slice(&body);
    f
}

/// Reads until the server closes; returns what it sent.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "server kept an unauthenticated connection open");
    got
}

#[tokio::test]
async fn right_secret_connects() {
    let (server, obs) = start(RpcConfig::default()).await;
    let c = client(&server, CLUSTER_SECRET);
    let (id, _) = c
        .call_with::<Echo>(&echo(5, 0), no_payload(), LONG)
        .await
        .unwrap();
    assert_eq!(id, 5);
    assert_eq!(obs.calls.load(Ordering::SeqCst), 1);
    assert_eq!(ServerStats::get(&server.stats().auth_failures), 0);
}

#[tokio::test]
async fn wrong_secret_is_refused_on_both_ends_before_any_handler() {
    let (server, obs) = start(RpcConfig::default()).await;
    let c = client(&server, "a different secret entirely");
    for _ in 0..3 {
        let r = c.call_with::<Echo>(&echo(5, 0), no_payload(), LONG).await;
        assert!(
            matches!(r, Err(RpcError::Auth(AuthError::WrongSecret { .. }))),
            "{r:?}"
        );
        assert!(!r.unwrap_err().is_retryable());
    }
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0, "a handler ran");
    assert_eq!(wait_for(&server.stats().auth_failures, 3).await, 3);
    assert_eq!(ServerStats::get(&server.stats().connections_accepted), 0);
}

#[tokio::test]
async fn frames_without_a_handshake_are_refused_before_any_handler() {
    let (server, obs) = start(RpcConfig::default()).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    // Several valid request frames back to back.
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.extend_from_slice(&echo_frame());
    }
    s.write_all(&frames).await.unwrap();
    let reply = read_to_close(&mut s).await;
    assert!(
        reply.is_empty(),
        "server answered a peer without a handshake"
    );
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0, "a handler ran");
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
}

#[tokio::test]
async fn a_peer_that_never_finishes_the_handshake_is_dropped() {
    let config = RpcConfig {
        handshake_timeout: Duration::from_millis(300),
        ..RpcConfig::default()
    };
    let (server, obs) = start(config).await;
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"TSRH").await.unwrap();
    let _ = read_to_close(&mut s).await;
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0);
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
}

/// Forwards one connection to `target`, recording every byte the client sent.
async fn recording_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            rec.lock().await.extend_from_slice(&buf[..n]);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    (addr, recorded)
}

#[tokio::test]
async fn a_replayed_handshake_is_refused() {
    let (server, obs) = start(RpcConfig::default()).await;
    let (proxy, recorded) = recording_proxy(server.local_addr()).await;

    // A legitimate client talks through the recording proxy.
    let legit = tessera_rpc::Client::new(
        proxy.to_string(),
        secret(CLUSTER_SECRET),
        RpcConfig::default(),
    );
    let (id, _) = legit
        .call_with::<Echo>(&echo(11, 0), Bytes::new(), LONG)
        .await
        .unwrap();
    assert_eq!(id, 11);
    assert_eq!(obs.calls.load(Ordering::SeqCst), 1);
    let transcript = recorded.lock().await.clone();
    assert!(transcript.len() > 40 + 32, "transcript too short");

    // An eavesdropper replays exactly those bytes on a fresh connection.
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(&transcript).await.unwrap();
    let reply = read_to_close(&mut s).await;
    // The server answered the hello with a challenge (72 bytes), then refused (1).
    assert_eq!(reply.len(), 73, "{reply:?}");
    assert_eq!(reply[72], 1, "server accepted a replayed proof");
    assert_eq!(
        obs.calls.load(Ordering::SeqCst),
        1,
        "the replayed request ran"
    );
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
}
