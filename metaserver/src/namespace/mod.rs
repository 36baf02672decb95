//! The namespace state machine as a pure core.
//!
//! `apply(store, &Command) -> Reply` and `query(store, &Query) -> Reply` are deterministic
//! functions of the tables in a [`Store`]: no clock (the leader stamps `now_ns` into each
//! command), no randomness (inode numbers and session ids come from counters in the state),
//! no I/O beyond the store. The Raft layer wraps [`RedbStore::apply_batch`]; tests drive
//! [`MemStore`] and compare it against an independent model.
//!
//! Layout: `command` (what can be asked), `apply` (dispatch, idempotency), one file per
//! concern for the handlers (`dir`, `rename`, `attr`, `xattr`, `data`, `session`, `lock`,
//! `read`), shared bookkeeping in `nodes` and `state`, bytes in `codec` and `records`,
//! storage in `store`, `overlay` and `redb_store`.

mod apply;
mod attr;
mod chunk_codec;
mod chunk_map;
mod codec;
mod command;
mod data;
mod digest;
mod dir;
pub mod dump;
mod lock;
mod names;
mod nodes;
mod overlay;
mod read;
mod records;
mod redb_store;
mod rename;
mod session;
mod state;
mod store;
mod stripes;
mod xattr;

#[cfg(test)]
mod testkit;

pub use apply::{apply, query};
pub use codec::FORMAT_VERSION;
pub use command::{Command, GcItem, Op, Query, Reply, Response, SYSTEM_SESSION};
pub use digest::digest;
pub use redb_store::{LogPos, RedbStore, RedbView};
pub use session::expired_sessions;
pub use store::{Entry, MemStore, Store, StoreRead, Table, prefix_end, scan_prefix};
pub use stripes::{StripePage, all_stripes, live_stripes};
