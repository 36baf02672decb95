//! Shared setup for the RPC tests: a real server on 127.0.0.1 with a few test methods.
#![allow(dead_code)]

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tessera_proto::{Method, Rpc};
use tessera_rpc::{Client, Router, RpcConfig, Secret, ServerHandle};

pub fn secret(s: &str) -> Secret {
    Secret::from_bytes(s.as_bytes(), "test").unwrap()
}

pub const CLUSTER_SECRET: &str = "correct horse battery staple";

/// Sleeps `delay_ms`, then answers `id` and echoes the payload.
pub struct Echo;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EchoReq {
    pub id: u64,
    pub delay_ms: u64,
}

impl Rpc for Echo {
    const METHOD: Method = Method(0x7f01);
    type Request = EchoReq;
    type Reply = u64;
}

/// Panics inside the handler.
pub struct Boom;

impl Rpc for Boom {
    const METHOD: Method = Method(0x7f02);
    type Request = ();
    type Reply = ();
}

/// What the test server's handlers observed.
#[derive(Default)]
pub struct Observed {
    /// Handler invocations of any method other than ping.
    pub calls: AtomicUsize,
    /// Handlers dropped before they finished (cancelled or timed out on the server).
    pub abandoned: AtomicUsize,
    /// Payload bytes currently held by running handlers, and the most ever held at once.
    pub holding: AtomicUsize,
    pub max_holding: AtomicUsize,
}

struct AbandonGuard(Arc<Observed>, bool);

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub fn router(obs: Arc<Observed>) -> Router {
    let o2 = obs.clone();
    Router::new("test")
        .route::<Echo, _, _>(move |call| {
            let obs = obs.clone();
            async move {
                obs.calls.fetch_add(1, Ordering::SeqCst);
                let len = call.payload.len();
                let now = obs.holding.fetch_add(len, Ordering::SeqCst) + len;
                obs.max_holding.fetch_max(now, Ordering::SeqCst);
                let mut guard = AbandonGuard(obs.clone(), false);
                tokio::time::sleep(Duration::from_millis(call.req.delay_ms)).await;
                guard.1 = true;
                obs.holding.fetch_sub(len, Ordering::SeqCst);
                (call.req.id, call.payload)
            }
        })
        .route::<Boom, _, _>(move |_call| {
            let obs = o2.clone();
            async move {
                obs.calls.fetch_add(1, Ordering::SeqCst);
                panic!("handler exploded on purpose");
            }
        })
}

pub async fn start(config: RpcConfig) -> (ServerHandle, Arc<Observed>) {
    let obs = Arc::new(Observed::default());
    let server = tessera_rpc::serve(
        "127.0.0.1:0",
        secret(CLUSTER_SECRET),
        router(obs.clone()),
        config,
    )
    .await
    .unwrap();
    (server, obs)
}

pub fn client(server: &ServerHandle, secret_text: &str) -> Client {
    Client::new(
        server.local_addr().to_string(),
        secret(secret_text),
        RpcConfig::default(),
    )
}

pub fn echo(id: u64, delay_ms: u64) -> EchoReq {
    EchoReq { id, delay_ms }
}

pub fn no_payload() -> Bytes {
    Bytes::new()
}

/// Waits up to five seconds for a counter to reach `want` (the server records a refusal
/// a moment after the client has already seen it).
pub async fn wait_for(counter: &std::sync::atomic::AtomicU64, want: u64) -> u64 {
    let t = std::time::Instant::now();
    loop {
        let v = counter.load(Ordering::SeqCst);
        if v >= want || t.elapsed() > Duration::from_secs(5) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits up to five seconds for `cond` to hold.
pub async fn wait_until(cond: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !cond() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
