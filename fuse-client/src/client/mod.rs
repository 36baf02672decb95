//! The client library: everything a mount or an admin tool needs to talk to a Tessera
//! cluster, usable without FUSE.
//!
//! - `meta.rs`: the metadata client (leader following, idempotent retries, deadlines).
//! - `ops.rs`: namespace operations with POSIX results ([`ops::Namespace`]).
//! - `data/`: the data path: write-back buffers, striping, commits and reads ([`data::DataPath`]).

pub mod data;
pub mod meta;
pub mod ops;
