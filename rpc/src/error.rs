//! Errors of the RPC layer. Each names the peer and, where there is one, the method.

use tessera_proto::{BodyError, FrameError, Method};
use thiserror::Error;

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The peer does not share our cluster secret (checked in both directions).
    #[error(
        "authentication with {peer} failed: it does not share this node's cluster secret \
         (check that --secret-file / TESSERA_SECRET_FILE points at the cluster's secret)"
    )]
    WrongSecret {
        /// Address of the other side.
        peer: String,
    },
    /// The peer did not start with a Tessera handshake (plain frames, another protocol).
    #[error("{peer} did not open with a Tessera handshake (got {got:02x?}); connection refused")]
    NoHandshake {
        /// Address of the other side.
        peer: String,
        /// The first bytes it sent.
        got: [u8; 4],
    },
    /// The peer speaks another handshake version.
    #[error("{peer} speaks handshake version {theirs}, this build speaks {ours}")]
    VersionMismatch {
        /// Address of the other side.
        peer: String,
        /// Its version.
        theirs: u8,
        /// Ours.
        ours: u8,
    },
    /// The handshake did not finish in time.
    #[error("handshake with {peer} did not finish within {ms} ms")]
    Timeout {
        /// Address of the other side.
        peer: String,
        /// The limit.
        ms: u64,
    },
    /// The connection failed during the handshake.
    #[error("connection to {peer} failed during the handshake: {reason}")]
    Io {
        /// Address of the other side.
        peer: String,
        /// The I/O error.
        reason: String,
    },
    /// The TLS handshake failed: a certificate not signed by our CA, no certificate, or a
    /// peer that does not speak TLS. `reason` carries rustls' cause and what to check.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Tls {
        /// Address of the other side.
        peer: String,
        /// The cause and the hint.
        reason: String,
    },
    /// We opened without TLS and the server told us it requires TLS.
    #[error(
        "{peer} requires TLS and this node connected without it: give it --tls-cert, \
         --tls-key and --tls-ca (TESSERA_TLS_CERT, TESSERA_TLS_KEY, TESSERA_TLS_CA) with a \
         certificate signed by the cluster's CA"
    )]
    TlsRequired {
        /// Address of the other side.
        peer: String,
    },
    /// The peer opened with a TLS hello but this server runs without TLS.
    #[error(
        "{peer} opened a TLS connection but this server runs without TLS; refused (start \
         every node with the same --tls-* flags, or none)"
    )]
    PeerWantsTls {
        /// Address of the other side.
        peer: String,
    },
}

/// Why the TLS certificate, key or CA could not be loaded (at start-up: the process does
/// not start). Each names the file.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("TLS {what} file {path}: {cause}")]
    Io {
        /// Which file: certificate, key or CA.
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error (shown in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// The file is not PEM, or holds no item of the kind expected.
    #[error("TLS {what} file {path}: {reason} (expected PEM: {expected})")]
    Pem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
        /// What should be in it.
        expected: &'static str,
    },
    /// The certificates and key parse but rustls refuses them (a key that does not match the
    /// certificate, a CA certificate that is not valid as a trust anchor).
    #[error("TLS {what} {path}: {reason}")]
    Rejected {
        /// Which file(s).
        what: &'static str,
        /// The file(s).
        path: String,
        /// rustls' reason.
        reason: String,
    },
}

/// Why loading or creating the cluster secret failed.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("cluster secret file {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error (shown in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// The secret is too short to be worth anything.
    #[error("cluster secret in {path} is {len} bytes; at least {min} are required")]
    TooShort {
        /// The file.
        path: String,
        /// Its length after trimming whitespace.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RpcError {
    /// No connection could be made (refused, unreachable, bad address).
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// Address called.
        peer: String,
        /// The cause.
        reason: String,
    },
    /// The handshake failed; see the inner error.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No reply within the deadline. The server was told to cancel the work.
    #[error("{method} to {peer} timed out after {ms} ms")]
    Timeout {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
        /// The deadline that passed.
        ms: u64,
    },
    /// The connection broke while the call was in flight; it may or may not have run.
    #[error("connection to {peer} closed: {reason}")]
    ConnectionClosed {
        /// Address called.
        peer: String,
        /// The cause.
        reason: String,
    },
    /// The server has no handler for the method.
    #[error("{peer} has no handler for method {method}")]
    UnknownMethod {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
    },
    /// The server could not decode our request body (version skew or a bug).
    #[error("{peer} could not decode our {method} request")]
    BadRequest {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
    },
    /// The server refused the call (shutting down, overloaded).
    #[error("{peer} is unavailable for {method}")]
    Unavailable {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
    },
    /// The handler crashed; the server log has the details.
    #[error("{peer} failed internally while handling {method}; see its log")]
    Internal {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
    },
    /// The peer sent a frame we refuse.
    #[error("protocol error from {peer}: {source}")]
    Frame {
        /// Address called.
        peer: String,
        /// What was wrong with the frame.
        source: FrameError,
    },
    /// A body did not encode or decode.
    #[error("{method} with {peer}: {source}")]
    Body {
        /// Address called.
        peer: String,
        /// Method called.
        method: Method,
        /// What was wrong.
        source: BodyError,
    },
}

impl RpcError {
    /// Whether trying again (perhaps elsewhere) can help. Auth and protocol errors will not
    /// go away by retrying, so callers must not loop on them.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Timeout { .. }
                | Self::ConnectionClosed { .. }
                | Self::Unavailable { .. }
        )
    }
}
