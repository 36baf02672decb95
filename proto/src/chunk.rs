//! The chunk service: what clients, repair workers and the metadata leader's garbage
//! collector ask of a chunkserver.
//!
//! Shard bytes never pass through postcard: a put carries them as the request payload and a
//! get returns them as the reply payload. Every reply is `Result<_, ChunkError>`, so a caller
//! can tell "this server has a bad copy, read parity" (`Corrupt`) from "this server is full,
//! place elsewhere" (`NoSpace`) from a transport failure (an `RpcError`, outside the body).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::body::Rpc;
use crate::fs::StripeInfo;
use crate::method::Method;
use crate::shard::ShardId;

/// Most shards one `ListShards` page returns; a larger `limit` is served as this many.
/// 4096 entries are about 170 KiB of body, far below the frame's body limit.
pub const MAX_LIST_PAGE: u32 = 4096;

/// A half-open byte range `start..end` of a shard's data.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Store a shard. The payload is the shard's bytes; the server checks `BLAKE3(payload) == id`
/// and acknowledges only once the shard is on stable storage. Putting a stored id again is a
/// no-op that answers `AlreadyPresent` (and refreshes the shard's age).
#[derive(Debug)]
pub struct PutShard;

/// Body of a [`PutShard`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutShardRequest {
    pub id: ShardId,
}

/// What a successful put did.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The shard is now stored durably.
    Stored,
    /// It was already stored durably; nothing was written.
    AlreadyPresent,
}

impl Rpc for PutShard {
    const METHOD: Method = Method::PUT_SHARD;
    const BULK: bool = true;
    type Request = PutShardRequest;
    type Reply = Result<PutOutcome, ChunkError>;
}

/// Read a shard, whole or a byte range of it. The server verifies what it reads against its
/// own hash list (a shard that fails is quarantined, never served), and the reply lets the
/// reader check the bytes against the id itself, trusting no server: a whole shard by
/// hashing it, a range by its proof (see [`crate::proof`]).
///
/// For a range, the reply payload holds the range widened to whole 1 KiB chunks
/// ([`crate::proof::span_of`] of the range and the shard length); the reader cuts its range
/// out after checking. For the whole shard it holds the whole shard.
#[derive(Debug)]
pub struct GetShard;

/// Body of a [`GetShard`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetShardRequest {
    pub id: ShardId,
    /// `None` reads the whole shard.
    pub range: Option<ByteRange>,
}

/// Body of a successful [`GetShard`] reply (the bytes are the payload).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardProof {
    /// Length of the whole shard, which gives the shape of its hash tree. A reader that knows
    /// it from the stripe layout uses its own.
    pub len: u64,
    /// The chaining values of the subtrees outside the span, left to right; empty when the
    /// payload is the whole shard.
    pub cvs: Vec<crate::proof::Cv>,
}

impl Rpc for GetShard {
    const METHOD: Method = Method::GET_SHARD;
    const BULK: bool = true;
    type Request = GetShardRequest;
    type Reply = Result<ShardProof, ChunkError>;
}

/// Remove a shard. Idempotent: deleting an absent id answers `NotPresent`, not an error.
#[derive(Debug)]
pub struct DeleteShard;

/// Body of a [`DeleteShard`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteShardRequest {
    pub id: ShardId,
    /// Delete only a shard not put for at least this many milliseconds. Garbage collection
    /// sets it so that a client which has just put the same content (a dedup hit racing the
    /// delete) keeps its shard; the answer is then [`DeleteOutcome::Young`].
    pub min_age_ms: Option<u64>,
}

/// What a successful delete did.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The shard was stored and is now gone.
    Deleted,
    /// No shard with this id was stored.
    NotPresent,
    /// The shard was put more recently than `min_age_ms`; it was kept.
    Young,
}

impl Rpc for DeleteShard {
    const METHOD: Method = Method::DELETE_SHARD;
    type Request = DeleteShardRequest;
    type Reply = Result<DeleteOutcome, ChunkError>;
}

/// Length and age of one shard, from its file header (the data is not re-hashed).
#[derive(Debug)]
pub struct StatShard;

/// Body of a [`StatShard`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatShardRequest {
    pub id: ShardId,
}

/// What [`StatShard`] reports about a stored shard.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStat {
    /// Length of the shard's data in bytes.
    pub len: u64,
    /// Milliseconds since the shard was last put.
    pub age_ms: u64,
}

impl Rpc for StatShard {
    const METHOD: Method = Method::STAT_SHARD;
    type Request = StatShardRequest;
    /// `Ok(None)`: no such shard here.
    type Reply = Result<Option<ShardStat>, ChunkError>;
}

/// One page of the inventory, in id order. With `older_than_ms` set it is a sweep: only
/// shards not put for at least that long are returned, so the metadata side can find uploads
/// whose commit never came.
#[derive(Debug)]
pub struct ListShards;

/// Body of a [`ListShards`] request.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShardsRequest {
    /// Start after this id (`None`: from the beginning).
    pub after: Option<ShardId>,
    /// Most shards wanted; capped at [`MAX_LIST_PAGE`], and 0 is treated as 1.
    pub limit: u32,
    /// Only shards at least this old, in milliseconds.
    pub older_than_ms: Option<u64>,
}

/// One listed shard.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedShard {
    pub id: ShardId,
    /// Milliseconds since the shard was last put.
    pub age_ms: u64,
}

/// One page of [`ListShards`].
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPage {
    pub shards: Vec<ListedShard>,
    /// Pass as `after` for the next page; `None` once the inventory is exhausted. A sweep page
    /// may be empty with `next` set: the server bounds the ids one call scans.
    pub next: Option<ShardId>,
}

impl Rpc for ListShards {
    const METHOD: Method = Method::LIST_SHARDS;
    type Request = ListShardsRequest;
    type Reply = Result<ShardPage, ChunkError>;
}

/// Rebuild one shard of a stripe from the other shards and store it on this chunkserver:
/// the repair step. The metadata leader sends it to the server that is to hold the shard; the
/// shard's bytes flow between chunkservers only. The rebuilt bytes are checked against the
/// shard's id before they are stored.
#[derive(Debug)]
pub struct RebuildShard;

/// Body of a [`RebuildShard`] request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RebuildShardRequest {
    /// The stripe, with the shard places the metadata service records.
    pub stripe: StripeInfo,
    /// Index (in `stripe.layout.shards`) of the shard to rebuild here.
    pub index: u32,
    /// Addresses of the servers to read the other shards from (server id, "host:port").
    /// Servers missing from the list are treated as lost. When the list names the server
    /// that holds shard `index` itself (a rebalance move), the shard is copied from there,
    /// checked against its id, and rebuilt from the others only if that fails.
    pub sources: Vec<(u64, String)>,
}

/// A shard a server answered a read of with bytes that failed the reader's check against
/// the shard id: the server cannot be trusted with that shard.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BadReply {
    pub server: u64,
    pub shard: ShardId,
}

/// What a successful [`RebuildShard`] did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    pub outcome: PutOutcome,
    /// Sources that sent bytes failing verification while this server read the stripe (it
    /// rebuilt from the others): the leader moves those shards off those servers.
    pub bad_replies: Vec<BadReply>,
}

impl Rpc for RebuildShard {
    const METHOD: Method = Method::REBUILD_SHARD;
    type Request = RebuildShardRequest;
    type Reply = Result<Rebuilt, ChunkError>;
}

/// Why a chunk service call failed. Each variant says what the caller should do next.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// The stored copy failed verification; it was quarantined and reported to the metadata
    /// leader. Read the stripe's parity (or another copy) instead.
    #[error("shard {id} is corrupt on this chunkserver ({reason}); read it from parity instead")]
    Corrupt { id: ShardId, reason: String },
    /// No shard with this id is stored here.
    #[error("shard {id} is not stored on this chunkserver")]
    NotFound { id: ShardId },
    /// The chunkserver is full; nothing was stored. Place the shard on another server.
    #[error(
        "no space for shard {id} ({needed} bytes) on this chunkserver; place it on another server"
    )]
    NoSpace { id: ShardId, needed: u64 },
    /// The payload does not hash to the id it was sent under; nothing was stored.
    #[error("refused put of shard {expected}: the bytes hash to {actual}; recompute the id")]
    WrongHash { expected: ShardId, actual: ShardId },
    /// The shard is over the server's size limit; nothing was stored.
    #[error("refused put of shard {id}: {len} bytes is over the {max}-byte limit")]
    TooLarge { id: ShardId, len: u64, max: u64 },
    /// The requested range is not inside the shard.
    #[error("range {start}..{end} is outside shard {id} of {len} bytes")]
    BadRange {
        id: ShardId,
        start: u64,
        end: u64,
        len: u64,
    },
    /// The shard was written by a newer chunkserver version than the one running.
    #[error("shard {id} is in format version {version}, which this chunkserver cannot read")]
    UnsupportedFormat { id: ShardId, version: u16 },
    /// The server's disk failed the operation (not a verdict on the shard). Try another
    /// server; the chunkserver's log has the details.
    #[error("chunkserver I/O error: {message}")]
    Io { message: String },
    /// A rebuild could not gather enough good shards of the stripe (or they disagree).
    #[error("cannot rebuild shard {id}: {reason}")]
    Rebuild { id: ShardId, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_body, encode_body};

    #[test]
    fn replies_round_trip_through_postcard() {
        let id = ShardId::of(b"x");
        let replies: Vec<Result<PutOutcome, ChunkError>> = vec![
            Ok(PutOutcome::Stored),
            Ok(PutOutcome::AlreadyPresent),
            Err(ChunkError::Corrupt {
                id,
                reason: "bit rot".into(),
            }),
            Err(ChunkError::NoSpace { id, needed: 7 }),
            Err(ChunkError::WrongHash {
                expected: id,
                actual: ShardId::of(b"y"),
            }),
            Err(ChunkError::Io {
                message: "EIO".into(),
            }),
        ];
        for r in replies {
            let bytes = encode_body(&r).unwrap();
            assert_eq!(
                decode_body::<Result<PutOutcome, ChunkError>>(&bytes).unwrap(),
                r
            );
        }
        let page = ShardPage {
            shards: vec![ListedShard { id, age_ms: 5 }],
            next: Some(id),
        };
        let bytes = encode_body(&Ok::<_, ChunkError>(page.clone())).unwrap();
        assert_eq!(
            decode_body::<Result<ShardPage, ChunkError>>(&bytes).unwrap(),
            Ok(page)
        );
    }

    #[test]
    fn a_full_list_page_fits_the_default_body_limit() {
        let page = ShardPage {
            shards: vec![
                ListedShard {
                    id: ShardId([0xff; 32]),
                    age_ms: u64::MAX,
                };
                MAX_LIST_PAGE as usize
            ],
            next: Some(ShardId([0xff; 32])),
        };
        let len = encode_body(&Ok::<_, ChunkError>(page)).unwrap().len();
        assert!(len < crate::frame::DEFAULT_MAX_BODY as usize / 8, "{len}");
    }

    #[test]
    fn messages_name_the_shard() {
        let id = ShardId::of(b"z");
        let msg = ChunkError::NotFound { id }.to_string();
        assert!(msg.contains(&id.to_string()), "{msg}");
    }
}
