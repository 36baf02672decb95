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

    /// Human-readable name for logs; unknown numbers print as hex.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PING => "ping",
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
