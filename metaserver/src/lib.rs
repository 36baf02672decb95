//! Tessera metadata service.
//!
//! `namespace` is the replicated state machine as a pure, storage-agnostic core; the Raft
//! adapter, the RPC service and the server entry point wrap it.

mod backup;
pub mod chunk_registry;
pub mod config;
pub mod error;
pub mod health;
mod leader;
mod membership;
pub mod metrics;
pub mod namespace;
pub mod node_id;
pub mod raft;
pub mod read_gate;
pub mod server;
pub mod service;
pub mod upkeep;

pub use error::MetaError;

pub use config::MetaConfig;
pub use server::{ServerError, run};
