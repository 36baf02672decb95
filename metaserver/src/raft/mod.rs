//! Raft replication of the namespace with openraft 0.10. Every openraft type lives in this
//! folder, and only here is the library named: `types` (the type configuration), `log_store`
//! (the Raft log in its own redb file), `state_machine` (apply and snapshots over the
//! namespace store), `network` and `server` (Raft messages over the Tessera RPC layer),
//! `node` (configuration and start-up), `read_gate` (lease reads, and read-index rounds shared
//! by concurrent reads when the lease cannot serve), `membership` (adding, removing and
//! transferring members), `timings` (how long each step takes, for `/metrics`).
//!
//! The rest of the metaserver sees [`RaftNode`] (propose, confirm leadership, change the
//! membership, follow the leader), [`RaftStatus`] and [`NotLeader`]: the metaserver's own
//! types, so an openraft upgrade touches only this folder.

mod handle;
pub mod log_store;
mod membership;
pub mod network;
pub mod node;
mod read_gate;
mod refusal;
pub mod server;
pub mod state_machine;
mod status;
pub mod timings;
pub mod types;

pub use handle::RaftNode;
pub use refusal::NotLeader;
pub use status::{RaftStatus, Role};

/// The default log filter of the tessera binary: `info`, with the Raft library's own
/// messages (elections, replication retries) only from `warn` up.
pub const LOG_FILTER: &str = "info,openraft=warn";

#[cfg(test)]
mod conformance;
