//! The client library: everything a mount or an admin tool needs to talk to a Tessera
//! cluster, without FUSE (the adapter is `tessera-fuse-client`).
//!
//! - `meta.rs`: the metadata client ([`MetaClient`]): sessions and sequence numbers over the
//!   cluster client (`tessera-cluster`: leader hints, retries, deadlines).
//! - `ops.rs`: namespace operations with POSIX results ([`Namespace`]), and their caches.
//! - `data/`: the data path ([`DataPath`]): write-back buffers, the flush pipeline (cut,
//!   pack, place, encode, put, commit), reads that resolve slices to stripes.
//! - `error.rs`: [`ClientError`] and the one table that turns it into [`FsError`] (errno).
//!
//! [`FsError`]: tessera_proto::fs::FsError

pub mod cap_cache;
pub mod data;
pub mod error;
pub mod meta;
pub mod ops;

pub use data::{DataConfig, DataPath, InodeData};
pub use error::ClientError;
pub use meta::{MetaClient, MetaClientError, MetaClientOptions, SessionKeeper};
pub use ops::{Caller, Namespace};
pub use tessera_cluster as cluster;
