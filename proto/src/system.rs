//! Methods every Tessera server answers, whatever its role.

use crate::body::Rpc;
use crate::method::Method;
use serde::{Deserialize, Serialize};

/// Liveness and identity check.
#[derive(Debug)]
pub struct Ping;

/// What a server says about itself in reply to a ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// Role of the process: "meta", "chunk", ...
    pub role: String,
    /// The `tessera` version that answered.
    pub version: String,
}

impl Rpc for Ping {
    const METHOD: Method = Method::PING;
    type Request = ();
    type Reply = PingReply;
}
