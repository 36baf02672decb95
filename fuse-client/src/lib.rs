//! Tessera's FUSE adapter: the fuser callbacks over the client library (`tessera-client`),
//! and `tessera mount`.
//!
//! - `fs/`: the [`fs::TesseraFs`] callbacks, errno replies (`errno.rs`), file handles,
//!   attribute conversion, background releases and the per-operation metrics.
//! - `mount.rs`: [`mount::run`], the mount process.
//! - `supervise.rs`: `tessera mount --supervise`, a process that holds the FUSE connection
//!   and restarts the serving process; `handover.rs`: what serving processes pass on.

pub mod fs;
pub mod handover;
pub mod mount;
pub mod supervise;
