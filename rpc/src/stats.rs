//! Counters a server keeps about itself (read by tests and, later, the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};

/// What a server has done since it started.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections that passed the handshake.
    pub connections_accepted: AtomicU64,
    /// Connections refused by the handshake (wrong secret, no handshake, timeout).
    pub auth_failures: AtomicU64,
    /// Requests answered (any status).
    pub requests_handled: AtomicU64,
    /// Requests abandoned because the caller sent a cancel.
    pub requests_cancelled: AtomicU64,
    /// Connections closed because the peer broke the protocol.
    pub protocol_errors: AtomicU64,
}

impl ServerStats {
    pub(crate) fn inc(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
