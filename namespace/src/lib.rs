//! The namespace state machine as a pure core.
//!
//! `apply(store, &Command) -> Reply` and `query(store, &Query) -> Reply` are deterministic
//! functions of the tables in a [`Store`]: no clock (the leader stamps `now_ns` into each
//! command), no randomness (inode numbers and session ids come from counters in the state),
//! no I/O beyond the store. This crate cannot name a database, Raft or an async runtime: the
//! metaserver supplies the persistent store (redb) and the replication around it; tests drive
//! [`MemStore`] and compare it against an independent model.
//!
//! Layout: `command` (what can be asked), `apply` (dispatch, idempotency), one file per
//! concern for the handlers (`dir`, `rename`, `attr`, `xattr`, `data`, `session`, `lock`,
//! `read`, `trash`, `quota`, `snapshot`), shared bookkeeping in `nodes` and `state`, bytes in `codec` and `records`,
//! storage in `store` and `overlay`, whole-state views in `digest` and `dump`, and the one
//! error type in `error`.

mod acl;
mod apply;
mod attr;
mod audit;
mod caps;
mod caps_read;
mod chunk_codec;
mod chunk_map;
mod codec;
mod command;
mod data;
mod delegate;
mod digest;
mod dir;
pub mod dump;
mod error;
mod flags;
mod layout;
mod lock;
mod names;
mod nodes;
mod overlay;
mod quota;
mod read;
mod records;
mod rename;
mod reserve;
mod session;
mod snapshot;
mod snapshot_copy;
mod state;
mod store;
mod stripes;
mod trash;
mod xattr;

#[cfg(test)]
mod testkit;

pub use apply::{apply, query, replayed};
pub use caps_read::exclusive_in_the_way;
pub use codec::{FORMAT_VERSION, decode, encode};
pub use command::{Command, GcItem, Op, Query, Reply, Response, SYSTEM_SESSION};
pub use digest::digest;
pub use error::{NamespaceError, StorageCause};
pub use reserve::reserved_bytes;
pub use session::expired_sessions;
pub use snapshot_copy::unfinished as unfinished_snapshots;
pub use store::{Entry, MemStore, Store, StoreRead, Table, prefix_end, scan_prefix};
pub use stripes::{StripePage, all_stripes, live_stripes};
pub use trash::{expired as expired_trash, retention_setting as trash_retention_setting};
