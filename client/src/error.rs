//! The one place where failures of the client library become POSIX errors.
//!
//! Every operation of the library ends in a [`FsError`] (one errno each, see
//! `FsError::errno`); every failure that is not already a POSIX answer is a [`ClientError`]
//! first, and `From<ClientError> for FsError` below is the table that maps it, logging the
//! cause (the caller only sees the errno). Nothing else in the crate turns an error into
//! `EIO` or `ENOSPC`.

use tessera_proto::fs::{FsError, Ino, StripeId};
use tessera_stripe::{CodecError, PutError, ReadError};

use crate::meta::MetaClientError;

/// A failure inside the client library, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A POSIX answer: from the metadata service (`ENOENT`, `EAGAIN` of a commit racing
    /// garbage collection, ...) or from the library's own checks.
    #[error("{0}")]
    Fs(#[from] FsError),
    /// No metadata leader answered in time (or it refused for good).
    #[error("{what}: {source}")]
    Meta {
        what: &'static str,
        source: MetaClientError,
    },
    /// The metadata service answered with a reply of the wrong kind (a bug or version skew).
    #[error("{what}: unexpected reply from the metadata service: {reply}")]
    Unexpected { what: &'static str, reply: String },
    /// The erasure code cannot be set up, or a stripe cannot be encoded.
    #[error("erasure code {k}+{m}: {source}")]
    Code { k: u8, m: u8, source: CodecError },
    /// Fewer chunkservers with room than a stripe needs shards stored.
    #[error(
        "only {have} chunkservers have room for shards of a stripe that needs at least {want}; start more chunkservers, or use a smaller --ec or directory layout (`tessera layout`)"
    )]
    TooFewServers { have: usize, want: usize },
    /// Fewer chunkservers up and reachable from this mount than a stripe needs shards stored.
    #[error(
        "only {up} chunkservers are up and reachable from this mount ({known} known); a stripe needs at least {want}: start or reconnect chunkservers"
    )]
    TooFewUp {
        up: usize,
        known: usize,
        want: usize,
    },
    /// Fewer shards than the write rule needs could be stored, on every server tried.
    #[error("stripe {stripe}: only {stored} shards stored, {need} needed{}; last failures: {last}", if *.out_of_space { " (the servers are full)" } else { "" })]
    PutsFailed {
        stripe: StripeId,
        stored: usize,
        need: usize,
        out_of_space: bool,
        last: String,
    },
    /// A put failed in a way re-placing does not fix.
    #[error("putting the shards of stripe {stripe}: {source}")]
    Put {
        stripe: StripeId,
        source: Box<PutError>,
    },
    /// A layout that names a stripe it does not describe.
    #[error("inode {ino}: the layout names stripe {stripe} without describing it")]
    MissingStripe { ino: Ino, stripe: StripeId },
    /// A stripe range could not be read (not even from parity).
    #[error("reading inode {ino}: {source}")]
    Read { ino: Ino, source: Box<ReadError> },
}

impl ClientError {
    /// A metadata call that gave up.
    pub fn meta(what: &'static str, source: MetaClientError) -> Self {
        Self::Meta { what, source }
    }

    /// A reply of the wrong kind to `what`.
    pub fn unexpected(what: &'static str, reply: &impl std::fmt::Debug) -> Self {
        Self::Unexpected {
            what,
            reply: format!("{reply:?}"),
        }
    }
}

/// The table: which errno each failure is. A lost cluster is `EIO` (never a wedged kernel),
/// a cluster without room is `ENOSPC`.
impl From<ClientError> for FsError {
    fn from(e: ClientError) -> FsError {
        let errno = match &e {
            ClientError::Fs(posix) => return *posix,
            ClientError::TooFewServers { .. } => FsError::NoSpace,
            ClientError::PutsFailed { out_of_space, .. } => {
                if *out_of_space {
                    FsError::NoSpace
                } else {
                    FsError::Io
                }
            }
            ClientError::Meta { .. }
            | ClientError::TooFewUp { .. }
            | ClientError::Unexpected { .. }
            | ClientError::Code { .. }
            | ClientError::Put { .. }
            | ClientError::MissingStripe { .. }
            | ClientError::Read { .. } => FsError::Io,
        };
        tracing::error!("{e}");
        errno
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_answers_pass_through_and_the_rest_is_eio_or_enospc() {
        assert_eq!(
            FsError::from(ClientError::Fs(FsError::WouldBlock)),
            FsError::WouldBlock
        );
        let full = ClientError::TooFewServers { have: 3, want: 6 };
        assert_eq!(FsError::from(full), FsError::NoSpace);
        let stripe = StripeId([7; 32]);
        let e = ClientError::PutsFailed {
            stripe,
            stored: 2,
            need: 5,
            out_of_space: true,
            last: "no space".into(),
        };
        assert!(e.to_string().contains("full"), "{e}");
        assert_eq!(FsError::from(e), FsError::NoSpace);
        let e = ClientError::PutsFailed {
            stripe,
            stored: 4,
            need: 5,
            out_of_space: false,
            last: "timed out".into(),
        };
        assert_eq!(FsError::from(e), FsError::Io);
        let down = ClientError::TooFewUp {
            up: 3,
            known: 6,
            want: 5,
        };
        assert!(
            down.to_string().contains("only 3 chunkservers are up"),
            "{down}"
        );
        assert_eq!(FsError::from(down), FsError::Io);
        let e = ClientError::unexpected("lookup", &"Done");
        assert_eq!(FsError::from(e), FsError::Io);
    }
}
