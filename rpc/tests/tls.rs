//! TLS on real sockets: calls work over mutual TLS, and every mismatch (a certificate from
//! another CA on either side, a plain client, a plain server) is refused before any handler
//! runs, with a message that says what to fix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use bytes::Bytes;
use common::*;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tessera_rpc::{AuthError, Client, RpcConfig, RpcError, ServerHandle, TlsConfig, TlsFiles};

const LONG: Duration = Duration::from_secs(10);

fn tls(cert: &str, key: &str, ca: &str) -> RpcConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls-certs");
    let files = TlsFiles {
        cert: dir.join(cert),
        key: dir.join(key),
        ca: dir.join(ca),
    };
    RpcConfig {
        tls: Some(TlsConfig::load(&files).unwrap()),
        ..RpcConfig::default()
    }
}

fn cluster_tls() -> RpcConfig {
    tls("node.pem", "node.key", "ca.pem")
}

fn client_with(server: &ServerHandle, config: RpcConfig) -> Client {
    Client::new(
        server.local_addr().to_string(),
        secret(CLUSTER_SECRET),
        config,
    )
}

/// The call's error, which must be a refused handshake; its message.
async fn refused(c: &Client) -> (AuthError, String) {
    let r = c.call_with::<Echo>(&echo(1, 0), no_payload(), LONG).await;
    match r {
        Err(RpcError::Auth(e)) => {
            let msg = e.to_string();
            (e, msg)
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_and_large_payloads_go_over_mutual_tls() {
    let (server, obs) = start(cluster_tls()).await;
    let c = client_with(&server, cluster_tls());
    // Large enough to span many TLS records and the bulk lane.
    let payload = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for id in 0..3 {
        let (got, back) = c
            .call_with::<Echo>(&echo(id, 0), payload.clone(), LONG)
            .await
            .unwrap();
        assert_eq!(got, id);
        assert_eq!(back, payload);
    }
    assert_eq!(obs.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn client_that_does_not_trust_the_servers_ca_is_refused() {
    let (server, obs) = start(cluster_tls()).await;
    let c = client_with(&server, tls("other.pem", "other.key", "other-ca.pem"));
    let (e, msg) = refused(&c).await;
    assert!(matches!(e, AuthError::Tls { .. }), "{e:?}");
    assert!(
        msg.contains("not signed by the CA given with --tls-ca"),
        "{msg}"
    );
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    // The client trusts the server, but its own certificate is not from the cluster's CA.
    let (server, obs) = start(cluster_tls()).await;
    let c = client_with(&server, tls("other.pem", "other.key", "ca.pem"));
    let (e, msg) = refused(&c).await;
    assert!(matches!(e, AuthError::Tls { .. }), "{e:?}");
    assert!(
        msg.contains("does not trust this node's certificate"),
        "{msg}"
    );
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn plain_client_is_told_that_tls_is_required() {
    let (server, obs) = start(cluster_tls()).await;
    let c = client_with(&server, RpcConfig::default());
    let (e, msg) = refused(&c).await;
    assert!(matches!(e, AuthError::TlsRequired { .. }), "{e:?}");
    assert!(
        msg.contains("requires TLS") && msg.contains("--tls-ca"),
        "{msg}"
    );
    assert!(!RpcError::Auth(e).is_retryable());
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_client_to_a_plain_server_is_refused() {
    let (server, obs) = start(RpcConfig::default()).await;
    let c = client_with(&server, cluster_tls());
    let (e, msg) = refused(&c).await;
    assert!(matches!(e, AuthError::Tls { .. }), "{e:?}");
    // The plain server answers the TLS hello with an alert: refused at once, not retried.
    assert!(msg.contains("ProtocolVersion"), "{msg}");
    assert!(msg.contains("may run without TLS"), "{msg}");
    assert_eq!(wait_for(&server.stats().auth_failures, 1).await, 1);
    assert_eq!(obs.calls.load(Ordering::SeqCst), 0);
}

/// Regression (fault_failover over TLS): a leader killed while a client was in its TLS
/// handshake gave a final "TLS handshake failed: Connection reset" and an EIO in the mount;
/// a connection cut mid-handshake must be retryable like a failed connect.
#[tokio::test]
async fn a_server_that_dies_mid_handshake_is_a_retryable_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        }
    });
    let c = Client::new(addr.to_string(), secret(CLUSTER_SECRET), cluster_tls());
    let e = c
        .call_with::<Echo>(&echo(1, 0), no_payload(), LONG)
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(matches!(e, RpcError::ConnectionClosed { .. }), "{e:?}");
}
