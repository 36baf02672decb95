//! Tunables of the RPC layer, with the defaults documented in `docs/formats.md`.

use std::time::Duration;
use tessera_proto::FrameLimits;

/// Settings shared by clients and servers.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Largest body and payload a reader accepts.
    pub limits: FrameLimits,
    /// Bytes of requests that may be in flight on one connection (header, body and payload).
    /// Callers wait for room beyond it; a server stops reading the socket, which pushes
    /// back on the sender through TCP. One frame larger than this still goes, alone.
    pub max_inflight_bytes: u32,
    /// Time allowed for the authentication handshake.
    pub handshake_timeout: Duration,
    /// Deadline of calls made without an explicit one.
    pub default_timeout: Duration,
    /// Request payloads larger than this use the bulk connection.
    pub bulk_threshold: usize,
    /// Longest a new connection may take to be accepted (a server that is black-holed
    /// drops SYNs: without this a call would spend its whole deadline connecting).
    pub connect_timeout: Duration,
    /// How often a connection checks that its peer still answers: while calls wait for
    /// replies and nothing has arrived for this long, it sends a ping.
    pub keepalive_interval: Duration,
    /// A ping not answered (and nothing else received) within this closes the connection,
    /// failing its calls at once; the next call opens a new one, so a healed network is
    /// used at once instead of after TCP's retransmit back-off.
    pub keepalive_timeout: Duration,
    /// An idle connection (no calls) pings this often, so the peer's idle deadline does
    /// not close it and a dead peer is noticed before the next call.
    pub keepalive_idle: Duration,
    /// A server closes a connection on which no frame starts for this long (clients ping
    /// idle connections every `keepalive_idle`, so only dead or silent peers reach it).
    pub idle_timeout: Duration,
    /// A server closes a connection whose frame, once its header arrived, is not complete
    /// within this: a peer that stalls half-way through a large frame holds no buffer for
    /// longer.
    pub frame_timeout: Duration,
    /// Bytes of incoming requests a server holds at once, across all its connections
    /// (read and waiting for, or in, their handlers). A large request waits for room before
    /// its body is read, which stops reading that socket (backpressure). Frames of at most
    /// 64 KiB do not count, so metadata calls and pings never queue behind uploads.
    pub max_buffered_bytes: u64,
    /// Local address outgoing connections are made from (`None`: the system's choice).
    /// Servers set it to their listen address so peers see one address per server.
    pub source_ip: Option<std::net::IpAddr>,
    /// TLS for every connection this node opens and accepts (`None`: plain TCP). Either
    /// every node of a cluster has it or none does; the secret handshake runs in both cases
    /// (inside TLS when set).
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            limits: FrameLimits::default(),
            max_inflight_bytes: 64 << 20,
            handshake_timeout: Duration::from_secs(5),
            default_timeout: Duration::from_secs(30),
            bulk_threshold: 64 << 10,
            connect_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(4),
            keepalive_idle: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            frame_timeout: Duration::from_secs(30),
            max_buffered_bytes: 512 << 20,
            source_ip: None,
            tls: None,
        }
    }
}
