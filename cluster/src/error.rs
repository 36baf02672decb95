//! Why a call to the metadata group gave up, worded for the person who has to fix it.

use tessera_rpc::RpcError;

/// A call that did not get its reply. `E` is the method's own error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError<E> {
    /// No metaserver answered at all.
    #[error(
        "cannot reach any metaserver at {addrs} (tried for {waited_ms} ms): {last}; is the cluster running? check --meta / TESSERA_META"
    )]
    Unreachable {
        /// The configured addresses, comma-separated.
        addrs: String,
        /// How long the call kept trying.
        waited_ms: u64,
        /// The last failure seen.
        last: String,
    },
    /// Metaservers answered, but none served the call as the leader in time.
    #[error(
        "no metadata leader among {addrs} within {waited_ms} ms (last error: {last}); an election may be in progress or a majority of metaservers is down: retry in a few seconds and see `tessera status`"
    )]
    NoLeader {
        /// The configured addresses, comma-separated.
        addrs: String,
        /// How long the call kept trying.
        waited_ms: u64,
        /// The last failure seen.
        last: String,
    },
    /// The server answered with an error that is the caller's to handle.
    #[error("{addr}: {error}")]
    Refused {
        /// The server that answered.
        addr: String,
        /// Its answer.
        error: E,
    },
    /// A transport error that retrying cannot fix (wrong secret, protocol mismatch).
    #[error(transparent)]
    Rpc(RpcError),
    /// The client was given no address to call.
    #[error("no metaserver given: set --meta or TESSERA_META")]
    NoAddress,
}

/// The short cause of a transport failure ("connection refused", not "cannot connect to
/// X: connection refused": the message around it names the addresses already).
pub(crate) fn cause(e: &RpcError) -> String {
    match e {
        RpcError::Connect { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
