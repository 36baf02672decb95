//! The one client of the metadata group, used by every process that talks to it: the mount
//! (through `tessera-client`'s metadata client), the admin commands and the chunkservers'
//! heartbeats.
//!
//! - [`ClusterClient`] (`client.rs`): the member addresses, which one is believed to lead,
//!   and [`ClusterClient::call`]: call the leader, follow `NotLeader` hints, try every
//!   address, retry with backoff until the [`Retry`] policy gives up. Also the status of
//!   every member ([`ClusterClient::statuses`]) and a quick reachability probe.
//! - [`Retry`] (`retry.rs`): deadlines, per-attempt timeouts, backoff, and whether a
//!   refusal is retried or handed back.
//! - [`LeaderError`] (`refusal.rs`): how a service's error type says "not the leader, try
//!   there", "not now" or "no" (implemented for `ServiceError` and `ClusterError`).
//! - [`CallError`] (`error.rs`): why a call gave up, in one line with what to check.
//!
//! Servers depend on this crate, never on the client library above it.

mod client;
mod error;
mod refusal;
mod retry;

#[cfg(test)]
mod tests;

pub use client::ClusterClient;
pub use error::CallError;
pub use refusal::{LeaderError, Refusal};
pub use retry::Retry;
