//! Harness for integration tests that start real `tessera` processes.
//!
//! Every test in `tests/tests/` builds on these pieces; each cleans up after itself on drop,
//! also when the test panics:
//!
//! - [`bin::tessera_bin`]: the binary under test (`TESSERA_BIN`, else the workspace's debug
//!   build; build it first with `cargo build -p tessera-cli`).
//! - [`ports::free_port`]: a free 127.0.0.1 port.
//! - [`tempdir::TempDir`]: a scratch directory removed on drop.
//! - [`process::TesseraProcess`]: a child `tessera ...` logging to a file, waited on until it
//!   answers a ping, SIGKILLed and reaped on drop; its log tail is printed if the test failed.
//! - [`tmpfs::Tmpfs`]: a size-limited tmpfs mount, unmounted on drop (needs root).
//! - [`fake_meta::FakeMeta`]: an in-process stand-in for the metadata leader's chunkserver
//!   calls (registrations and heartbeats, answered as the leader or as a follower naming
//!   one), recording them, for chunkserver tests that steer who leads.
//! - [`chunk`]: starting a chunkserver and calling its service.
//! - [`mount::DevCluster`]: metaservers, chunkservers and FUSE mounts, unmounted first on drop.
//! - [`scrape`]: reading a process's `/metrics`.
//! - [`tls`]: `TESSERA_TLS=1` runs every cluster above over TLS (test certificates).
//! - [`mount_workload`] records random calls through several mounts into a [`history`];
//!   [`linearize`] (namespace, against [`ns_model`]) and [`close_to_open`] (file contents)
//!   judge it.
//!
//! Drop order matters: declare the `TempDir` first, then mounts, then processes, so
//! processes die before their mounts go and mounts go before their directory is removed
//! (Rust drops locals in reverse order).
//!
//! Process handling is blocking (`std::process`), so call it from `#[tokio::test(flavor =
//! "multi_thread")]` tests: the in-process servers keep running on the other worker threads.

pub mod bin;
#[cfg(test)]
mod checker_tests;
pub mod chunk;
pub mod close_to_open;
pub mod fake_meta;
pub mod fault;
pub mod firewall;
pub mod history;
pub mod linearize;
pub mod meta;
pub mod meta_workload;
pub mod mount;
pub mod mount_workload;
pub mod ns_model;
pub mod ports;
pub mod process;
pub mod scrape;
pub mod script;
pub mod tempdir;
pub mod tls;
pub mod tmpfs;

pub use bin::{tessera_bin, tessera_command};
pub use fake_meta::FakeMeta;
pub use meta::{MetaCluster, MetaOptions};
pub use ports::free_port;
pub use process::TesseraProcess;
pub use tempdir::TempDir;
pub use tmpfs::Tmpfs;

/// How long a started process may take to answer its first ping.
pub const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
