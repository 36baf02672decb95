//! Counters a server keeps about itself (read by tests and, later, the metrics endpoint).

use crate::metrics::MethodTable;
use std::sync::atomic::{AtomicU64, Ordering};
use tessera_metrics::Encoder;

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
    /// Connections closed because the peer broke the protocol (or went silent: no frame
    /// within the idle timeout, or a frame not finished within the frame timeout).
    pub protocol_errors: AtomicU64,
    /// Connections closed because a frame was not complete within the frame timeout.
    pub frames_timed_out: AtomicU64,
    /// Per-method calls, errors, latency and bytes.
    pub methods: MethodTable,
}

impl ServerStats {
    pub(crate) fn inc(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Renders the server's families (`tessera_rpc_server_*`) for the metrics endpoint.
    pub fn render(&self, e: &mut Encoder) {
        e.counter(
            "tessera_rpc_server_connections_accepted_total",
            "Connections that passed the handshake.",
            Self::get(&self.connections_accepted),
        );
        e.counter(
            "tessera_rpc_server_auth_failures_total",
            "Connections refused by the handshake (wrong secret, no handshake, timeout).",
            Self::get(&self.auth_failures),
        );
        e.counter(
            "tessera_rpc_server_requests_cancelled_total",
            "Requests abandoned because the caller sent a cancel.",
            Self::get(&self.requests_cancelled),
        );
        e.counter(
            "tessera_rpc_server_protocol_errors_total",
            "Connections closed because the peer broke the protocol.",
            Self::get(&self.protocol_errors),
        );
        e.counter(
            "tessera_rpc_server_frames_timed_out_total",
            "Connections closed because a frame was not complete within the frame timeout.",
            Self::get(&self.frames_timed_out),
        );
        self.methods.render(e, "server");
    }
}
