//! Tessera's FUSE adapter: the fuser callbacks over the client library (`tessera-client`),
//! and `tessera mount`.
//!
//! - `fs/`: the [`fs::TesseraFs`] callbacks, errno replies (`errno.rs`), file handles,
//!   attribute conversion, background releases and the per-operation metrics.
//! - `mount.rs`: [`mount::run`], the mount process.

pub mod fs;
pub mod mount;
