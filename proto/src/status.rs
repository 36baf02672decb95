//! Transport-level outcome of a request, carried in the response header.
//!
//! These are failures of the call itself. A service's own errors (ENOENT, `Corrupt`, ...)
//! travel inside the response body as part of the method's typed reply.

/// Outcome of a request as seen by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Status {
    /// The handler ran and its reply is in the body.
    Ok = 0,
    /// The server has no handler for the method number.
    UnknownMethod = 1,
    /// The request body did not decode as the method's request type.
    BadRequest = 2,
    /// The deadline passed before the handler finished; the work was abandoned.
    DeadlineExceeded = 3,
    /// The server is shutting down or refused the work for lack of resources.
    Unavailable = 4,
    /// The handler failed unexpectedly (panicked); see the server log.
    Internal = 5,
}

impl Status {
    /// Decodes a wire status; `None` for codes this version does not define.
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::UnknownMethod,
            2 => Self::BadRequest,
            3 => Self::DeadlineExceeded,
            4 => Self::Unavailable,
            5 => Self::Internal,
            _ => return None,
        })
    }
}
