//! Method numbers: the one registry of every RPC in the protocol.
//!
//! Numbers are grouped by service so a glance at a log line tells which process a call was
//! meant for. A number is never reused for a different message once released.

use std::fmt;

/// A method number as carried in the frame header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(pub u16);

impl Method {
    /// Liveness and identity check answered by every Tessera server.
    pub const PING: Method = Method(0x0001);

    /// Store a shard on a chunkserver; the shard bytes are the payload.
    pub const PUT_SHARD: Method = Method(0x0201);
    /// Read a whole shard or a byte range of it; the bytes are the reply payload.
    pub const GET_SHARD: Method = Method(0x0202);
    /// Remove a shard from a chunkserver.
    pub const DELETE_SHARD: Method = Method(0x0203);
    /// Length and age of one stored shard.
    pub const STAT_SHARD: Method = Method(0x0204);
    /// One page of a chunkserver's shard inventory (optionally only shards older than a grace).
    pub const LIST_SHARDS: Method = Method(0x0205);
    /// Rebuild a lost shard from the other shards of its stripe and store it (repair).
    pub const REBUILD_SHARD: Method = Method(0x0206);

    /// Propose a namespace change (metadata leader).
    pub const META_WRITE: Method = Method(0x0101);
    /// Linearizable namespace read (metadata leader).
    pub const META_READ: Method = Method(0x0102);
    /// Role, term and log position of one metaserver.
    pub const META_STATUS: Method = Method(0x0103);
    /// Digest of one metaserver's namespace state.
    pub const META_DIGEST: Method = Method(0x0104);
    /// Chunkservers known to the metadata leader.
    pub const LIST_CHUNKSERVERS: Method = Method(0x0105);
    /// Placement of a new stripe's shards.
    pub const PLACE_STRIPE: Method = Method(0x0106);
    /// Placements of several new stripes' shards in one call (one per flush).
    pub const PLACE_STRIPES: Method = Method(0x010B);
    /// Stripe health counts (metadata leader).
    pub const CLUSTER_HEALTH: Method = Method(0x0107);
    /// Damaged shards found by an admin tool, for the repair scheduler (metadata leader).
    pub const REPORT_SHARDS: Method = Method(0x0108);
    /// A mount's list of chunkservers it cannot reach; the reply carries the write settings
    /// (metadata leader).
    pub const REPORT_REACHABILITY: Method = Method(0x010C);
    /// Add or remove a metaserver, or move the leadership (metadata leader).
    pub const CHANGE_MEMBERSHIP: Method = Method(0x0109);
    /// Move every shard off a chunkserver before it is decommissioned (metadata leader).
    pub const DRAIN_CHUNKSERVER: Method = Method(0x010A);
    /// Start a rebalance now and report its progress (metadata leader).
    pub const REBALANCE: Method = Method(0x010D);
    /// A metadata backup image of the whole namespace (metadata leader; image in the payload).
    pub const META_DUMP: Method = Method(0x0110);
    /// Restore a backup image into an empty namespace (metadata leader; image in the payload).
    pub const META_LOAD: Method = Method(0x0111);
    /// A mount's long poll for capability recalls (metadata leader).
    pub const WAIT_RECALL: Method = Method(0x0112);

    /// Raft AppendEntries between metaservers (body: the Raft library's own types, postcard;
    /// they never leave `metaserver/src/raft/`).
    pub const RAFT_APPEND: Method = Method(0x0301);
    /// Raft RequestVote.
    pub const RAFT_VOTE: Method = Method(0x0302);
    /// Raft pre-vote (a vote that changes no term, so a flapping node cannot inflate terms).
    pub const RAFT_PRE_VOTE: Method = Method(0x0303);
    /// Raft snapshot installation; the snapshot image is the payload.
    pub const RAFT_SNAPSHOT: Method = Method(0x0304);
    /// Raft leadership transfer notice.
    pub const RAFT_TRANSFER_LEADER: Method = Method(0x0305);

    /// A chunkserver announces itself (id, address, space) to the metadata leader.
    pub const REGISTER_CHUNKSERVER: Method = Method(0x0401);
    /// A chunkserver's periodic report (space, health, damaged shards) to the metadata leader.
    pub const CHUNK_HEARTBEAT: Method = Method(0x0402);

    /// Human-readable name for logs; unknown numbers print as hex.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PING => "ping",
            Self::PUT_SHARD => "put-shard",
            Self::GET_SHARD => "get-shard",
            Self::DELETE_SHARD => "delete-shard",
            Self::STAT_SHARD => "stat-shard",
            Self::LIST_SHARDS => "list-shards",
            Self::REBUILD_SHARD => "rebuild-shard",
            Self::META_WRITE => "meta-write",
            Self::META_READ => "meta-read",
            Self::META_STATUS => "meta-status",
            Self::META_DIGEST => "meta-digest",
            Self::LIST_CHUNKSERVERS => "list-chunkservers",
            Self::PLACE_STRIPE => "place-stripe",
            Self::PLACE_STRIPES => "place-stripes",
            Self::CLUSTER_HEALTH => "cluster-health",
            Self::REPORT_SHARDS => "report-shards",
            Self::REPORT_REACHABILITY => "report-reachability",
            Self::CHANGE_MEMBERSHIP => "change-membership",
            Self::DRAIN_CHUNKSERVER => "drain-chunkserver",
            Self::REBALANCE => "rebalance",
            Self::META_DUMP => "meta-dump",
            Self::META_LOAD => "meta-load",
            Self::WAIT_RECALL => "wait-recall",
            Self::RAFT_APPEND => "raft-append",
            Self::RAFT_VOTE => "raft-vote",
            Self::RAFT_PRE_VOTE => "raft-pre-vote",
            Self::RAFT_SNAPSHOT => "raft-snapshot",
            Self::RAFT_TRANSFER_LEADER => "raft-transfer-leader",
            Self::REGISTER_CHUNKSERVER => "register-chunkserver",
            Self::CHUNK_HEARTBEAT => "chunk-heartbeat",
            _ => return None,
        })
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({:#06x})", self.0),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
