//! Tessera chunkserver: stores, verifies, serves, scrubs and deletes content-addressed shards,
//! and reports its space and damaged shards to the metadata leader.
//!
//! - [`store`]: the shard store trait and its file backend (and, in unit tests only, a
//!   fault-injecting wrapper).
//! - [`scrub`]: the background re-hash of every stored shard.
//! - [`service`]: the RPC handlers of the chunk service.
//! - [`heartbeat`]: registration and heartbeats to the metadata leader.
//! - [`health`], [`space`]: what the heartbeats report.
//! - [`identity`]: the persistent chunkserver id.
//! - [`lie`]: wrong answers on purpose, for the fault suite (debug builds only).
//! - [`run`](run()): the process, as `tessera chunk` starts it.
//! - [`error`]: the crate's one error type.

pub mod config;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod identity;
pub mod lie;
pub mod metrics;
mod run;
pub mod scrub;
pub mod service;
pub mod space;
pub mod store;

#[cfg(test)]
mod testutil;

pub use config::ChunkConfig;
pub use error::{Damage, Error, Result};
pub use run::{run, run_until};
pub use tessera_proto::ShardId;
