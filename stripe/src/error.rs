//! Errors of this crate, one enum per concern: coding ([`CodecError`]), storing a stripe
//! ([`PutError`]), reading one ([`ReadError`]) and deleting one ([`DeleteError`]). What went
//! wrong with one shard on one server is a [`ShardFault`], carried with its place in a
//! [`ShardFailure`]; every list of failures names the stripe, the shard index, the shard id
//! and the server, so a log line alone says where to look.

use std::fmt;

use tessera_proto::ShardId;
use tessera_proto::chunk::ChunkError;
use tessera_proto::fs::{ShardPlace, StripeId};
use tessera_proto::proof::ProofError;
use tessera_rpc::RpcError;
use thiserror::Error;

/// Why encoding, reconstructing or checking a stripe failed. These are local verdicts: no
/// server was involved, so retrying the same input gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The erasure code itself is not supported.
    #[error("unsupported erasure code {k}+{m}: need k >= 1 and k + m <= 255")]
    BadCode { k: usize, m: usize },
    /// Zero bytes are never a stripe: the caller records a hole instead.
    #[error("refusing to encode an empty stripe; record a hole instead")]
    Empty,
    /// Shards of this length could not be sent in one RPC payload.
    #[error(
        "{len} bytes in {k} data shards gives {shard_len}-byte shards, over the {max}-byte \
         limit; cut smaller stripes"
    )]
    TooLarge {
        len: u64,
        k: u8,
        shard_len: u64,
        max: u64,
    },
    /// The layout was written for another code than this codec's.
    #[error("layout is coded {k}+{m} but this codec is {codec_k}+{codec_m}")]
    WrongCode {
        k: u8,
        m: u8,
        codec_k: u8,
        codec_m: u8,
    },
    /// The layout contradicts itself (damaged metadata or a bug in its writer).
    #[error(
        "inconsistent stripe layout: {shards} shard places for {k}+{m}, {shard_len}-byte \
         shards, {data_len} data bytes"
    )]
    BadLayout {
        k: u8,
        m: u8,
        shards: usize,
        shard_len: u64,
        data_len: u64,
    },
    /// `reconstruct` was given a vector of the wrong length.
    #[error("got {got} shard slots for a stripe of {want} shards")]
    WrongShardCount { want: usize, got: usize },
    /// Fewer than k of the given shards have the right length and hash.
    #[error(
        "only {usable} of the {need} shards needed are usable; rejected (wrong length or hash): \
         {rejected:?}"
    )]
    TooFewShards {
        usable: usize,
        need: usize,
        rejected: Vec<usize>,
    },
    /// A shard index outside `0..k+m`.
    #[error("shard index {index} is outside a stripe of {total} shards")]
    NoSuchShard { index: usize, total: usize },
    /// Verified inputs rebuilt a shard that does not hash to the layout's id: the layout's
    /// ids do not belong to one encoding (damaged metadata), so nothing rebuilt is trusted.
    #[error(
        "rebuilt shard {index} hashes to {got} but the layout names {want}: the stripe's \
         shard ids are inconsistent"
    )]
    RebuiltMismatch {
        index: usize,
        want: ShardId,
        got: ShardId,
    },
    /// The Reed-Solomon library refused shards this crate built to fit it (a bug here).
    #[error("Reed-Solomon coding failed: {reason}")]
    Library { reason: String },
}

/// What went wrong with one shard on one chunkserver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShardFault {
    /// The caller's directory of servers has no address for this server id.
    #[error("no address is known for chunkserver {server}")]
    NoAddress { server: u64 },
    /// The transport failed: unreachable, timed out, connection lost.
    #[error(transparent)]
    Rpc(RpcError),
    /// The chunkserver answered with a service error (`NoSpace`, `Corrupt`, `NotFound`...).
    #[error(transparent)]
    Chunk(ChunkError),
    /// The reply had another length than asked for.
    #[error("the chunkserver returned {got} bytes where {want} were expected")]
    WrongLength { got: u64, want: u64 },
    /// The returned bytes (a whole shard, or a range with its proof) hash to another root
    /// than the shard's id.
    #[error("the returned bytes hash to {got}, not to the shard's id")]
    WrongHash { got: ShardId },
    /// A range came back with a proof of the wrong shape (or for a shard of another length).
    #[error("the range's proof does not fit the shard: {0}")]
    BadProof(ProofError),
    /// Still unanswered when the read gave up.
    #[error("no answer within {ms} ms")]
    Unanswered { ms: u64 },
    /// The task doing the call ended without a result (it panicked or was cancelled).
    #[error("the call was lost: {reason}")]
    Lost { reason: String },
}

impl ShardFault {
    /// Whether the server is out of space, so the shard should be placed elsewhere.
    pub fn is_no_space(&self) -> bool {
        matches!(self, ShardFault::Chunk(ChunkError::NoSpace { .. }))
    }

    /// Whether the server answered with bytes that failed verification against the shard id
    /// (as opposed to saying it could not serve them): it cannot be trusted with the shard.
    pub fn is_bad_reply(&self) -> bool {
        matches!(
            self,
            ShardFault::WrongLength { .. } | ShardFault::WrongHash { .. } | ShardFault::BadProof(_)
        )
    }

    /// A short name of the fault's kind, for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ShardFault::NoAddress { .. } => "no_address",
            ShardFault::Rpc(_) => "rpc",
            ShardFault::Chunk(_) => "chunk",
            ShardFault::WrongLength { .. } => "length",
            ShardFault::WrongHash { .. } => "hash",
            ShardFault::BadProof(_) => "proof",
            ShardFault::Unanswered { .. } => "unanswered",
            ShardFault::Lost { .. } => "lost",
        }
    }

    /// The fault for bytes that failed [`tessera_proto::proof::verify`].
    pub fn from_proof(e: ProofError) -> ShardFault {
        match e {
            ProofError::WrongLength { got, want } => ShardFault::WrongLength { got, want },
            ProofError::WrongRoot { got } => ShardFault::WrongHash { got },
            other => ShardFault::BadProof(other),
        }
    }
}

/// One shard that could not be stored, read or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFailure {
    /// Position in the stripe: `0..k` data, `k..k+m` parity.
    pub index: usize,
    pub shard: ShardId,
    pub server: u64,
    pub fault: ShardFault,
}

impl fmt::Display for ShardFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shard {} ({:?}) on chunkserver {}: {}",
            self.index, self.shard, self.server, self.fault
        )
    }
}

/// A list of failures shown as `a; b; c`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failures(pub Vec<ShardFailure>);

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no shard failed");
        }
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// Why storing a stripe's shards failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PutError {
    /// The caller passed a target list that does not match the shards.
    #[error("stripe {stripe}: {got} targets given for {want} shards")]
    TargetCount {
        stripe: StripeId,
        want: usize,
        got: usize,
    },
    /// A target names a shard index the stripe does not have.
    #[error("stripe {stripe}: no shard {index} in a stripe of {total} shards")]
    NoSuchShard {
        stripe: StripeId,
        index: usize,
        total: usize,
    },
    /// Two shards of one stripe were aimed at one server, which would lose two shards when
    /// that server dies.
    #[error("stripe {stripe}: chunkserver {server} was given two shards; each needs its own")]
    DuplicateServer { stripe: StripeId, server: u64 },
    /// Some puts failed. The others are stored; `stored` says where, so the caller asks for
    /// other servers for the failed indexes only and retries those with `put_shards_at`.
    #[error(
        "stripe {stripe}: {} of {} shard puts failed ({failures}); place those shards on other \
         servers and retry them",
        failures.0.len(),
        failures.0.len() + stored.len()
    )]
    Failed {
        stripe: StripeId,
        /// The shards that were stored: index and place, in index order.
        stored: Vec<(usize, ShardPlace)>,
        failures: Failures,
    },
}

impl PutError {
    /// The failed shard puts (empty for the argument errors).
    pub fn failures(&self) -> &[ShardFailure] {
        match self {
            PutError::Failed { failures, .. } => &failures.0,
            _ => &[],
        }
    }
}

/// Why a stripe read failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// The requested range is not inside the stripe's data.
    #[error("stripe {stripe}: range {start}..{end} is outside its {data_len} data bytes")]
    BadRange {
        stripe: StripeId,
        start: u64,
        end: u64,
        data_len: u64,
    },
    /// The stripe's layout cannot be decoded (damaged metadata or a bug in its writer).
    #[error("stripe {stripe}: {source}")]
    Layout {
        stripe: StripeId,
        source: CodecError,
    },
    /// Fewer than k shards could be had: the data cannot be rebuilt now. Some listed servers
    /// may come back; until then the stripe is unreadable.
    #[error(
        "stripe {stripe} is unreadable: {usable} usable shards, {need} needed ({failures}); \
         bring the listed chunkservers back"
    )]
    Unavailable {
        stripe: StripeId,
        usable: usize,
        need: usize,
        failures: Failures,
    },
    /// The read's deadline passed before enough shards arrived.
    #[error("stripe {stripe}: read timed out after {ms} ms ({failures})")]
    TimedOut {
        stripe: StripeId,
        ms: u64,
        failures: Failures,
    },
    /// Verified shards did not decode (the layout's ids are inconsistent).
    #[error("stripe {stripe}: {source}")]
    Decode {
        stripe: StripeId,
        source: CodecError,
    },
}

/// Why deleting a stripe's shards did not fully succeed. Shards that were absent already
/// count as deleted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("stripe {stripe}: {} shard deletes failed ({failures}); retry later", failures.0.len())]
pub struct DeleteError {
    pub stripe: StripeId,
    pub failures: Failures,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lists_name_index_shard_and_server() {
        let shard = ShardId::of(b"s");
        let failures = Failures(vec![
            ShardFailure {
                index: 1,
                shard,
                server: 7,
                fault: ShardFault::NoAddress { server: 7 },
            },
            ShardFailure {
                index: 4,
                shard,
                server: 9,
                fault: ShardFault::Unanswered { ms: 2000 },
            },
        ]);
        let err = ReadError::Unavailable {
            stripe: StripeId([3; 32]),
            usable: 3,
            need: 4,
            failures,
        };
        let msg = err.to_string();
        assert!(msg.contains(&StripeId([3; 32]).to_string()), "{msg}");
        assert!(msg.contains("shard 1"), "{msg}");
        assert!(msg.contains("chunkserver 9"), "{msg}");
        assert!(msg.contains("; "), "{msg}");
    }
}
