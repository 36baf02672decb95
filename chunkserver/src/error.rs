//! The one error type of the chunkserver crate.
//!
//! Each variant names what went wrong, carries the ids involved, and its message says what the
//! caller can do next. `service.rs` turns them into the chunk service's wire errors in one
//! place (`to_wire`, `tessera_proto::chunk::ChunkError`), recording corrupt shards on the way.

use std::io;
use std::path::PathBuf;

use crate::store::ShardId;

/// Why a stored shard was judged corrupt. Kept as a type (not a string) so tests and the
/// scrub report can tell a torn file from bit rot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file does not start with the shard magic: foreign or overwritten.
    BadMagic,
    /// The header's own checksum does not match its fields.
    BadHeader,
    /// The header names a different shard than the file's name.
    WrongId,
    /// The file is shorter or longer than its header says: torn or truncated.
    BadLength,
    /// The stored block hash list does not hash to the shard id.
    BadHashList,
    /// The shard bytes do not hash to the shard id: bit rot.
    BadData,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Damage::BadMagic => "not a shard file (bad magic)",
            Damage::BadHeader => "header checksum mismatch",
            Damage::WrongId => "header names another shard",
            Damage::BadLength => "file length does not match header (torn or truncated)",
            Damage::BadHashList => "block hash list does not match the id",
            Damage::BadData => "data does not match the id (bit rot)",
        })
    }
}

/// Errors of the shard store and the scrubber.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A put whose bytes do not hash to the id it was sent under. Nothing was stored.
    #[error(
        "refused put of shard {expected}: the bytes hash to {actual}; the sender must recompute the id"
    )]
    WrongHash { expected: ShardId, actual: ShardId },

    /// The stored copy failed verification. It has been moved to quarantine and was not served.
    #[error(
        "shard {id} is corrupt on this server ({damage}); it was quarantined: read it from parity or another server"
    )]
    Corrupt { id: ShardId, damage: Damage },

    /// No shard with this id is stored here.
    #[error("shard {id} is not stored on this server")]
    NotFound { id: ShardId },

    /// The store is full (configured capacity or the disk itself). Nothing was left behind.
    #[error(
        "no space for shard {id} ({needed} bytes): this chunkserver is full; place the shard on another server or free space"
    )]
    NoSpace { id: ShardId, needed: u64 },

    /// A put larger than `MAX_SHARD_LEN`. Nothing was stored.
    #[error(
        "refused put of shard {id}: {len} bytes is over the {max}-byte shard limit; use smaller stripes"
    )]
    TooLarge { id: ShardId, len: u64, max: u64 },

    /// A ranged get outside the shard.
    #[error("range {start}..{end} is outside shard {id} of {len} bytes")]
    BadRange {
        id: ShardId,
        start: u64,
        end: u64,
        len: u64,
    },

    /// A shard file written by a newer format version. Not quarantined: a newer binary can read it.
    #[error(
        "shard {id} is stored in format version {version}, which this binary cannot read; upgrade the chunkserver"
    )]
    UnsupportedFormat { id: ShardId, version: u16 },

    /// Another process holds the data directory.
    #[error(
        "data directory {path} is in use by another chunkserver process; stop it or choose another --data"
    )]
    Locked { path: PathBuf },

    /// An operating system I/O error; `id` is the shard involved, if any.
    #[error("I/O error while trying to {op} {path}{}: {source}", id.map(|i| format!(" (shard {i})")).unwrap_or_default())]
    Io {
        op: &'static str,
        path: PathBuf,
        id: Option<ShardId>,
        #[source]
        source: io::Error,
    },

    /// The data directory's `FORMAT` marker is not one this binary writes or reads.
    #[error(
        "data directory {path} has format marker {found:?}, but this binary reads only {expected:?}; \
         it was written by a newer tessera or another program: upgrade, or choose another --data"
    )]
    UnknownDataFormat {
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The directory holds files that are not ours and has no `FORMAT` marker.
    #[error(
        "{path} is not a tessera chunk data directory: it holds {entry:?} and no FORMAT marker; \
         choose an empty or new directory for --data"
    )]
    NotDataDir { path: PathBuf, entry: String },

    /// The chunkserver id file is damaged or from a newer version.
    #[error(
        "chunkserver id file {path}: {reason}; restore it from a backup (deleting it would make \
         this disk a new, empty server to the cluster)"
    )]
    Identity { path: PathBuf, reason: String },

    /// A startup setting is unusable.
    #[error("{0}")]
    Config(String),

    /// The cluster secret could not be loaded.
    #[error(transparent)]
    Secret(#[from] tessera_rpc::SecretError),

    /// The chunk service could not listen on its address.
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Listen {
        addr: String,
        #[source]
        source: io::Error,
    },
}

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an `Io` error.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        id: Option<ShardId>,
        source: io::Error,
    ) -> Error {
        Error::Io {
            op,
            path: path.into(),
            id,
            source,
        }
    }
}

/// True for the errors that mean "the disk (or quota) is full".
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    // 28 = ENOSPC, 122 = EDQUOT on Linux; `StorageFull` covers ENOSPC on current std, the raw
    // codes cover quota errors and older mappings.
    e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_ids_and_the_next_step() {
        let a = ShardId::of(b"a");
        let b = ShardId::of(b"b");
        let msg = Error::WrongHash {
            expected: a,
            actual: b,
        }
        .to_string();
        assert!(
            msg.contains(&a.to_string()) && msg.contains(&b.to_string()),
            "{msg}"
        );
        let msg = Error::Corrupt {
            id: a,
            damage: Damage::BadData,
        }
        .to_string();
        assert!(
            msg.contains("quarantined") && msg.contains("bit rot"),
            "{msg}"
        );
        let msg = Error::io("open", "/x", Some(a), io::Error::other("boom")).to_string();
        assert!(
            msg.contains("/x") && msg.contains(&a.to_string()) && msg.contains("boom"),
            "{msg}"
        );
        let msg = Error::io("open", "/x", None, io::Error::other("boom")).to_string();
        assert!(!msg.contains("shard"), "{msg}");
    }

    #[test]
    fn enospc_and_quota_are_no_space() {
        assert!(is_no_space(&io::Error::from_raw_os_error(28)));
        assert!(is_no_space(&io::Error::from_raw_os_error(122)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(5)));
    }
}
