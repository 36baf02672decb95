//! Tessera chunkserver: stores, verifies, serves, scrubs and deletes content-addressed shards.
//!
//! - [`store`]: the shard store trait and its backends (files on a local disk; a
//!   fault-injecting wrapper for tests).
//! - [`scrub`]: the background re-hash of every stored shard.
//! - [`error`]: the crate's one error type.
//!
//! The RPC service and the heartbeats to the metadata leader will wrap these.

pub mod error;
pub mod scrub;
pub mod store;

#[cfg(test)]
mod testutil;

pub use error::{Damage, Error, Result};
