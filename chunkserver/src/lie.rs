//! Lying on purpose, for the fault suite: a chunkserver started with `TESSERA_CHUNK_LIE=MODE`
//! answers every shard read with wrong bytes in a well-formed reply, so tests can check that
//! readers (mounts, and chunkservers reading sources for a rebuild) catch every lie.
//!
//! Modes: `flip` (one bit of the payload flipped, the proof left right), `other` (the same
//! range of another shard stored here, under this shard's proof), `stale` (a shard stored
//! here before this one, preferably of the same length, served with its own proof: what a
//! server with a stale index would send), `truncate` (the first half of the bytes).
//!
//! Only debug builds can lie (`cfg(debug_assertions)`); the tests start `target/debug/tessera`.
//! A release build has no lying code at all: there [`Liar`] is an empty type, and a set
//! `TESSERA_CHUNK_LIE` is ignored with a warning. A cargo feature would do the same, but the
//! tests would then need their own build of the binary, and the feature set would flip between
//! `cargo build -p tessera-cli` and `cargo test --workspace`, rebuilding it each time.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::chunk::ShardProof;

use crate::error::Result;
use crate::store::{ShardId, ShardStore};

/// The environment variable that selects a lying mode.
pub const ENV: &str = "TESSERA_CHUNK_LIE";

pub use imp::Liar;

#[cfg(debug_assertions)]
mod imp {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tessera_metrics::Counter;
    use tessera_proto::proof;

    use super::*;
    use crate::error::Error;

    /// How many recent puts the `stale` mode remembers.
    const RECENT: usize = 4096;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Flip,
        Other,
        Stale,
        Truncate,
    }

    /// A chunkserver's lying mode, and what it has done.
    #[derive(Debug)]
    pub struct Liar {
        mode: Mode,
        /// Shards put here, oldest first, with their lengths.
        recent: Mutex<VecDeque<(ShardId, u64)>>,
        told: Counter,
    }

    impl Liar {
        /// The mode `TESSERA_CHUNK_LIE` names, if it is set.
        pub fn from_env() -> Result<Option<Arc<Liar>>> {
            let Ok(value) = std::env::var(ENV) else {
                return Ok(None);
            };
            let mode = match value.as_str() {
                "flip" => Mode::Flip,
                "other" => Mode::Other,
                "stale" => Mode::Stale,
                "truncate" => Mode::Truncate,
                _ => {
                    return Err(Error::Config(format!(
                        "{ENV}={value:?} is not a lying mode; use flip, other, stale or \
                         truncate, or unset it"
                    )));
                }
            };
            tracing::warn!(mode = %value, "{ENV} is set: this chunkserver answers every read with wrong bytes (fault testing)");
            Ok(Some(Arc::new(Liar {
                mode,
                recent: Mutex::new(VecDeque::new()),
                told: Counter::new(),
            })))
        }

        /// Remembers a put, for the `stale` mode.
        pub fn saw_put(&self, id: ShardId, len: u64) {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back((id, len));
        }

        /// Lies told so far.
        pub fn told(&self) -> u64 {
            self.told.get()
        }

        /// The reply to send instead of `honest`, the true answer to a get of `range` (or the
        /// whole shard) of `id`. Blocking: it may read another shard from `store`.
        pub fn lie(
            &self,
            store: &dyn ShardStore,
            id: &ShardId,
            range: Option<Range<u64>>,
            honest: (ShardProof, Bytes),
        ) -> (ShardProof, Bytes) {
            let (reply, bytes) = honest;
            if bytes.is_empty() {
                return (reply, bytes);
            }
            let span = match &range {
                Some(r) => proof::span_of(r, reply.len),
                None => 0..reply.len,
            };
            let lie = match self.mode {
                Mode::Flip => None,
                Mode::Truncate => Some((reply.clone(), bytes.slice(..bytes.len() / 2))),
                Mode::Other => self.another(store, id, false).and_then(|other| {
                    let (_, theirs) = read(store, &other, range.as_ref(), &span)?;
                    let mut v = theirs.to_vec();
                    v.resize(bytes.len(), 0);
                    Some((reply.clone(), Bytes::from(v)))
                }),
                Mode::Stale => self
                    .another(store, id, true)
                    .and_then(|other| read(store, &other, range.as_ref(), &span)),
            };
            self.told.inc();
            let (reply, lie) = lie.unwrap_or_else(|| (reply, flip(&bytes, id)));
            tracing::info!(shard = %id, ?range, sent = lie.len(), "lied to a reader");
            (reply, lie)
        }

        /// Another shard stored here: for `stale`, the latest put before `id` of its length
        /// (else the latest before it); for `other`, the next id in the inventory.
        fn another(&self, store: &dyn ShardStore, id: &ShardId, stale: bool) -> Option<ShardId> {
            if stale {
                let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                let len = recent.iter().find(|(r, _)| r == id).map(|(_, l)| *l);
                let before: Vec<&(ShardId, u64)> =
                    recent.iter().take_while(|(r, _)| r != id).collect();
                let pick = before
                    .iter()
                    .rev()
                    .find(|(_, l)| Some(*l) == len)
                    .or_else(|| before.last())
                    .map(|(r, _)| *r);
                if pick.is_some() {
                    return pick;
                }
            }
            let next = store.list(Some(id), 1).ok()?.shards.first().map(|s| s.id);
            next.or_else(|| store.list(None, 1).ok()?.shards.first().map(|s| s.id))
                .filter(|o| o != id)
        }
    }

    /// An honest read of `span` of another shard (as much of it as that shard has).
    fn read(
        store: &dyn ShardStore,
        other: &ShardId,
        range: Option<&Range<u64>>,
        span: &Range<u64>,
    ) -> Option<(ShardProof, Bytes)> {
        match range {
            None => {
                let b = store.get(other, None).ok()?;
                Some((
                    ShardProof {
                        len: b.len() as u64,
                        cvs: Vec::new(),
                    },
                    b,
                ))
            }
            Some(_) => {
                let len = store.stat(other).ok()??.len;
                let r = span.start.min(len)..span.end.min(len);
                let p = store.get_proved(other, r).ok()?;
                Some((
                    ShardProof {
                        len: p.len,
                        cvs: p.proof,
                    },
                    p.bytes,
                ))
            }
        }
    }

    /// `bytes` with one bit flipped, at a place that depends on the shard.
    fn flip(bytes: &Bytes, id: &ShardId) -> Bytes {
        let mut v = bytes.to_vec();
        let at = usize::from(id.0[0]) * 131 % v.len();
        v[at] ^= 1 << (id.0[1] % 8);
        Bytes::from(v)
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    use super::*;

    /// No lying in release builds: this type has no values.
    #[derive(Debug)]
    pub enum Liar {}

    impl Liar {
        pub fn from_env() -> Result<Option<Arc<Liar>>> {
            if std::env::var_os(ENV).is_some() {
                tracing::warn!(
                    "{ENV} is set but this is a release build, which cannot lie; ignored"
                );
            }
            Ok(None)
        }

        pub fn saw_put(&self, _: ShardId, _: u64) {
            match *self {}
        }

        pub fn told(&self) -> u64 {
            match *self {}
        }

        pub fn lie(
            &self,
            _: &dyn ShardStore,
            _: &ShardId,
            _: Option<Range<u64>>,
            _: (ShardProof, Bytes),
        ) -> (ShardProof, Bytes) {
            match *self {}
        }
    }
}
