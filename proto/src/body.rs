//! Message bodies: postcard encoding, and the trait that ties a method to its types.

use crate::method::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// One remote procedure: its method number and the types of its request and reply bodies.
///
/// Raw payload bytes (shard data) travel beside the body, never inside it.
pub trait Rpc {
    /// Method number on the wire.
    const METHOD: Method;
    /// Whether calls go over the bulk connection because the request or reply carries a
    /// large payload, so they never delay small calls such as heartbeats.
    const BULK: bool = false;
    /// Request body.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// Reply body.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// A body that did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    /// Postcard rejected the bytes (truncated, bad varint, bad enum tag, bad UTF-8, ...).
    #[error("malformed message body: {0}")]
    Malformed(String),
    /// The body decoded but bytes were left over: the peer and we disagree on the type.
    #[error("message body has {0} trailing bytes")]
    TrailingBytes(usize),
    /// Encoding failed (only for types serde cannot express in postcard).
    #[error("cannot encode message body: {0}")]
    Encode(String),
}

/// Encodes a body with postcard.
pub fn encode_body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BodyError> {
    postcard::to_stdvec(value).map_err(|e| BodyError::Encode(e.to_string()))
}

/// Decodes a body, refusing trailing bytes. Never panics; allocations are bounded by the
/// input length (postcard reads lengths from the input and checks them against it).
pub fn decode_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BodyError::TrailingBytes(rest.len()));
    }
    Ok(value)
}
