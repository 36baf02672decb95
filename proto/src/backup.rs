//! Metadata backup and restore (`tessera dump` / `tessera load`).
//!
//! The image itself is opaque here (the metaserver writes and reads it, see
//! `tessera_namespace::dump`); it travels as the RPC payload in both directions.

use crate::body::Rpc;
use crate::meta::ServiceError;
use crate::method::Method;
use serde::{Deserialize, Serialize};

/// Largest image `tessera load` accepts: the image travels through the Raft log as one entry,
/// and Raft messages between metaservers are limited to 4 MiB (`DEFAULT_MAX_BODY`), so the
/// entry must leave room for the framing and a few small entries in the same message.
pub const MAX_LOAD_IMAGE: u64 = 3 << 20;

/// What an image holds.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpSummary {
    /// Inodes, the root included.
    pub inodes: u64,
    /// Stripes (each with its shard ids and chunkserver ids).
    pub stripes: u64,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// Log index the image reflects (dump: the leader's applied index; load: the index of
    /// the load entry).
    pub applied_index: u64,
}

/// Why a load was refused.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The target namespace holds more than an empty root directory.
    #[error(
        "the target namespace is not empty ({what}); load only into a new cluster whose namespace holds just the root directory"
    )]
    NotEmpty {
        /// What was found.
        what: String,
    },
    /// The image does not decode (damaged, truncated, or not a dump).
    #[error("the image is not a usable tessera dump: {reason}")]
    BadImage {
        /// Why.
        reason: String,
    },
    /// The image is larger than [`MAX_LOAD_IMAGE`].
    #[error("the image is {len} bytes; online load accepts at most {max} bytes")]
    TooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
}

/// A consistent image of the whole namespace, from the leader after a read-index
/// confirmation. The image is the reply payload.
#[derive(Debug)]
pub struct MetaDump;

impl Rpc for MetaDump {
    const METHOD: Method = Method::META_DUMP;
    type Request = ();
    type Reply = Result<DumpSummary, ServiceError>;
}

/// Replaces an empty namespace with the image in the request payload, through one Raft
/// entry (leader only).
#[derive(Debug)]
pub struct MetaLoad;

impl Rpc for MetaLoad {
    const METHOD: Method = Method::META_LOAD;
    type Request = ();
    type Reply = Result<Result<DumpSummary, LoadError>, ServiceError>;
}
