//! Raft replication of the namespace with openraft 0.10. Every openraft type lives in this
//! folder: `types` (the type configuration), `log_store` (the Raft log in its own redb file),
//! `state_machine` (apply and snapshots over the namespace store), `network` and `server`
//! (Raft messages over the Tessera RPC layer).

pub mod log_store;
pub mod network;
pub mod node;
pub mod server;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod conformance;
