//! Tessera stripes: how file data becomes erasure-coded shards on chunkservers and back.
//!
//! Used by the FUSE mount (writes and reads), by repair workers on chunkservers (rebuild a
//! lost shard) and by admin tools (check and read stripes); it sits below the servers so
//! none of them depends on the mount.
//!
//! - [`codec`]: [`Codec`] splits up to one stripe of data into `k` data shards (zero-padded
//!   to `ceil(len / k)` bytes), adds `m` Reed-Solomon parity shards, and names each shard by
//!   its BLAKE3 hash ([`tessera_proto::ShardId`]) and the stripe by a hash of the code, the
//!   data length and the shard ids ([`stripe_id`]), so equal data dedups to one stripe. It
//!   rebuilds the data or any single shard from any `k` shards that verify.
//! - [`chunk_client`]: [`ChunkClient`] talks to chunkservers (one multiplexed connection
//!   pair per server, per-call deadlines): parallel puts that succeed only when every shard
//!   is durable, range reads that fetch only the data shards they need and fall back to
//!   parity when a shard is missing, slow or corrupt, and best-effort deletes for GC.
//! - [`is_all_zero`]: hole detection; all-zero ranges are never stored.
//!
//! Nothing here talks to the metadata service: callers bring placements and layouts.

pub mod chunk_client;
pub mod codec;
pub mod error;
pub mod layout;
mod zero;

pub use chunk_client::{ChunkClient, ChunkClientConfig, Health, Quorum};
pub use codec::{Codec, Encoded, stripe_id, stripe_id_of};
pub use error::{CodecError, DeleteError, Failures, PutError, ReadError, ShardFailure, ShardFault};
pub use zero::is_all_zero;
