//! Tessera metadata service.
//!
//! The namespace state machine itself is the pure core in the `tessera-namespace` crate; this
//! crate gives it a persistent store (`store`), replicates it with Raft (`raft`, the only
//! module that names the Raft library), and serves it (`service`) next to the leader's
//! background work.

mod backup;
pub mod chunk_registry;
pub mod config;
pub mod health;
mod leader;
pub mod metrics;
pub mod node_id;
pub mod raft;
pub mod replica;
pub mod server;
pub mod service;
pub mod store;
pub mod upkeep;

pub use config::MetaConfig;
pub use server::{ServerError, run};
