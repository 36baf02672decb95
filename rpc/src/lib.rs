//! Tessera's RPC transport, used by every hop: client to metaserver, client to chunkserver,
//! metaserver to metaserver (Raft) and chunkserver to metaserver (heartbeats).
//!
//! - Every connection opens with a mutual challenge-response handshake over the cluster
//!   secret ([`auth`]); no frame from an unauthenticated peer reaches a handler. With a
//!   [`TlsConfig`] in the [`RpcConfig`], every connection is TLS with mutual certificate
//!   checks first ([`tls`] loads the files, `stream` wraps the socket), and the secret
//!   handshake runs inside it.
//! - Frames ([`tessera_proto::frame`]) carry a postcard body and a raw payload that is kept
//!   as `bytes::Bytes` from socket to handler and back.
//! - Many calls share one connection, matched by request id; every call has a deadline and
//!   is cancelled on the server when the caller gives up.
//! - A [`Client`] keeps one connection for small calls and one for bulk payloads, so a
//!   4 MiB shard never delays a heartbeat, and bounds in-flight bytes per connection.

pub mod auth;
mod catch_panic;
pub mod client;
pub mod config;
mod conn;
pub mod error;
mod keepalive;
mod log_limit;
pub mod metrics;
pub mod pool;
pub mod router;
pub mod secret;
pub mod server;
pub mod stats;
mod stream;
pub mod tls;
pub mod wire;

pub use client::{Client, Lane};
pub use config::RpcConfig;
pub use error::{AuthError, RpcError, SecretError, TlsError};
pub use metrics::client_metrics;
pub use router::{Call, RawReply, RawRequest, Router};
pub use secret::Secret;
pub use server::{ServerHandle, serve, serve_listener};
pub use stats::ServerStats;
pub use tls::{TlsConfig, TlsFiles};
