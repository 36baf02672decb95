//! Keepalive: a connection notices that its peer stopped answering.
//!
//! A call that times out only withdraws itself; without this, a connection to a server that
//! was black-holed stays open, every later call on it times out too, and after the network
//! heals TCP's retransmit back-off keeps it silent for tens of seconds. So each connection
//! has a watcher: while calls wait (or one was withdrawn unanswered) and nothing has
//! arrived for `keepalive_interval`, or when the connection has been idle for
//! `keepalive_idle`, it sends a ping; if neither the ping's reply nor any other frame arrives within `keepalive_timeout`, the connection is
//! closed, its calls fail at once, and the next call opens a fresh one.
//!
//! Any frame counts as a sign of life, so a busy connection whose replies keep coming is
//! never closed because a ping queued behind a large payload is late.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::system::Ping;
use tessera_proto::{Rpc, encode_body};
use tokio::time::Instant;

use crate::config::RpcConfig;
use crate::conn::Connection;

/// Starts the watcher of `conn`; it ends when the connection is closed or dropped.
pub(crate) fn watch(conn: &Arc<Connection>, config: &RpcConfig) {
    let weak = Arc::downgrade(conn);
    let interval = config.keepalive_interval.max(Duration::from_millis(10));
    let timeout = config.keepalive_timeout.max(interval);
    let idle = config.keepalive_idle.max(interval);
    tokio::spawn(run(weak, interval, timeout, idle));
}

async fn run(weak: Weak<Connection>, interval: Duration, timeout: Duration, idle: Duration) {
    let body: Bytes = match encode_body(&()) {
        Ok(b) => b.into(),
        Err(_) => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(conn) = weak.upgrade() else { return };
        if conn.is_closed() {
            return;
        }
        let quiet = conn.since_rx();
        let waiting = (conn.busy() || conn.owes_reply()) && quiet >= interval;
        if !waiting && quiet < idle {
            continue;
        }
        let sent = Instant::now();
        let answered = conn
            .call(Ping::METHOD, body.clone(), Bytes::new(), sent + timeout)
            .await
            .is_ok();
        // Heard from since the ping went out: alive, if slow to answer the ping itself.
        if answered || conn.since_rx() < sent.elapsed() {
            continue;
        }
        let reason = format!(
            "no reply to a keepalive ping in {} ms; closed so the next call reconnects",
            timeout.as_millis()
        );
        tracing::debug!(peer = %conn.peer(), "{reason}");
        conn.close(reason);
        return;
    }
}
