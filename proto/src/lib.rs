//! Tessera wire types: frame header, limits, method numbers, status codes and message bodies.
//!
//! This crate does no I/O and depends on no runtime, so every process, every test and the
//! fuzz target decode frames with exactly the same code. The byte layout is documented in
//! `docs/formats.md`.

pub mod backup;
pub mod body;
pub mod chunk;
pub mod cluster;
pub mod frame;
pub mod fs;
pub mod layout;
pub mod meta;
pub mod method;
pub mod proof;
pub mod shard;
pub mod status;
pub mod system;

pub use body::{BodyError, Rpc, decode_body, encode_body};
pub use frame::{FrameError, FrameHeader, FrameKind, FrameLimits, HEADER_LEN};
pub use method::Method;
pub use shard::ShardId;
pub use status::Status;
