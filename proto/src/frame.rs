//! The fixed 32-byte frame header that starts every message on a Tessera connection.
//!
//! Layout (all integers big-endian, see `docs/formats.md`):
//!
//! | offset | size | field        |
//! |--------|------|--------------|
//! | 0      | 4    | magic `TSRA` |
//! | 4      | 1    | version      |
//! | 5      | 1    | kind         |
//! | 6      | 2    | flags        |
//! | 8      | 2    | method       |
//! | 10     | 2    | status       |
//! | 12     | 8    | request id   |
//! | 20     | 4    | deadline ms  |
//! | 24     | 4    | body length  |
//! | 28     | 4    | payload len  |
//!
//! The header is validated completely (magic, version, kind, flags, status, both lengths
//! against [`FrameLimits`]) before a reader allocates anything for the body or payload, so a
//! hostile length field can never size an allocation.

use crate::method::Method;
use crate::status::Status;
use thiserror::Error;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"TSRA";
/// Wire protocol version spoken by this build. A peer with another version is refused.
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 32;

/// Default cap on a postcard body: namespace replies (readdir pages) stay far below it.
pub const DEFAULT_MAX_BODY: u32 = 4 << 20;
/// Default cap on a raw payload: one shard of a 64 MiB stripe at k=1, with room to spare.
pub const DEFAULT_MAX_PAYLOAD: u32 = 64 << 20;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A call: method, deadline, body and payload.
    Request = 1,
    /// The answer to the request with the same id: status, body and payload.
    Response = 2,
    /// The caller gave up on the request with this id; the callee should stop working on it.
    Cancel = 3,
}

impl FrameKind {
    fn from_u8(v: u8) -> Result<Self, FrameError> {
        match v {
            1 => Ok(Self::Request),
            2 => Ok(Self::Response),
            3 => Ok(Self::Cancel),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

/// Flag bits defined by this protocol version. No flags are defined yet; a frame that sets
/// any bit is refused rather than silently misread.
pub const KNOWN_FLAGS: u16 = 0;

/// Size limits a reader enforces before allocating. Configurable per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted body in bytes.
    pub max_body: u32,
    /// Largest accepted payload in bytes.
    pub max_payload: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Request, response or cancel.
    pub kind: FrameKind,
    /// Flag bits; always a subset of [`KNOWN_FLAGS`] after decoding.
    pub flags: u16,
    /// Method number (requests; echoed in responses).
    pub method: Method,
    /// Outcome of a request (responses only; [`Status::Ok`] elsewhere).
    pub status: Status,
    /// Matches a response or cancel to its request on the same connection.
    pub request_id: u64,
    /// How long the caller will wait, in milliseconds from sending; 0 means no deadline.
    pub deadline_ms: u32,
    /// Length of the postcard body that follows the header.
    pub body_len: u32,
    /// Length of the raw payload that follows the body.
    pub payload_len: u32,
}

/// Why a header was refused. Each case is distinct so tests and logs can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Fewer bytes than a header; `got` is how many there were.
    #[error("truncated frame header: got {got} of {HEADER_LEN} bytes")]
    Truncated {
        /// Bytes available.
        got: usize,
    },
    /// The first four bytes are not `TSRA`: not a Tessera peer, or a desynchronised stream.
    #[error("bad frame magic {0:02x?}: peer is not speaking the Tessera protocol")]
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// The kind byte is not request, response or cancel.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flag bits this version does not define.
    #[error("unknown frame flags {0:#06x}")]
    UnknownFlags(u16),
    /// A status code this version does not define.
    #[error("unknown response status {0}")]
    UnknownStatus(u16),
    /// Body longer than the configured limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// Declared length.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// Payload longer than the configured limit.
    #[error("frame payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Declared length.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// A cancel frame must carry nothing but the id.
    #[error("cancel frame carries a body or payload")]
    CancelWithContent,
}

impl FrameHeader {
    /// A request header.
    pub fn request(method: Method, request_id: u64, deadline_ms: u32) -> Self {
        Self {
            kind: FrameKind::Request,
            flags: 0,
            method,
            status: Status::Ok,
            request_id,
            deadline_ms,
            body_len: 0,
            payload_len: 0,
        }
    }

    /// A response header answering `request_id`.
    pub fn response(method: Method, request_id: u64, status: Status) -> Self {
        Self {
            kind: FrameKind::Response,
            status,
            ..Self::request(method, request_id, 0)
        }
    }

    /// A cancel header for `request_id`.
    pub fn cancel(method: Method, request_id: u64) -> Self {
        Self {
            kind: FrameKind::Cancel,
            ..Self::request(method, request_id, 0)
        }
    }

    /// Encodes the header into its 32 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = PROTOCOL_VERSION;
        b[5] = self.kind as u8;
        b[6..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..10].copy_from_slice(&self.method.0.to_be_bytes());
        b[10..12].copy_from_slice(&(self.status as u16).to_be_bytes());
        b[12..20].copy_from_slice(&self.request_id.to_be_bytes());
        b[20..24].copy_from_slice(&self.deadline_ms.to_be_bytes());
        b[24..28].copy_from_slice(&self.body_len.to_be_bytes());
        b[28..32].copy_from_slice(&self.payload_len.to_be_bytes());
        b
    }

    /// Decodes and validates a header from the start of `bytes`.
    ///
    /// Never panics and never allocates; every malformed input maps to a [`FrameError`].
    pub fn decode(bytes: &[u8], limits: &FrameLimits) -> Result<Self, FrameError> {
        let Some(b) = bytes.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated { got: bytes.len() });
        };
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if b[4] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion(b[4]));
        }
        let kind = FrameKind::from_u8(b[5])?;
        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let flags = be16(6);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(flags));
        }
        let status_raw = be16(10);
        let status = Status::from_u16(status_raw).ok_or(FrameError::UnknownStatus(status_raw))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&b[12..20]);
        let body_len = be32(24);
        let payload_len = be32(28);
        if body_len > limits.max_body {
            return Err(FrameError::BodyTooLarge {
                len: body_len,
                max: limits.max_body,
            });
        }
        if payload_len > limits.max_payload {
            return Err(FrameError::PayloadTooLarge {
                len: payload_len,
                max: limits.max_payload,
            });
        }
        if kind == FrameKind::Cancel && (body_len != 0 || payload_len != 0) {
            return Err(FrameError::CancelWithContent);
        }
        Ok(Self {
            kind,
            flags,
            method: Method(be16(8)),
            status,
            request_id: u64::from_be_bytes(id),
            deadline_ms: be32(20),
            body_len,
            payload_len,
        })
    }

    /// Total bytes the frame occupies on the wire, header included.
    pub fn wire_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.body_len) + u64::from(self.payload_len)
    }
}

/// A whole frame parsed from a contiguous buffer (the synchronous counterpart of the async
/// reader in `tessera-rpc`; used by tests and the fuzz target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFrame<'a> {
    /// The validated header.
    pub header: FrameHeader,
    /// The body bytes, exactly `header.body_len` long.
    pub body: &'a [u8],
    /// The payload bytes, exactly `header.payload_len` long.
    pub payload: &'a [u8],
}

/// Parses one frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds a valid header but not yet the whole frame, and the
/// frame plus the number of bytes it used otherwise.
pub fn parse_frame<'a>(
    buf: &'a [u8],
    limits: &FrameLimits,
) -> Result<Option<(ParsedFrame<'a>, usize)>, FrameError> {
    let header = FrameHeader::decode(buf, limits)?;
    let body_end = HEADER_LEN + header.body_len as usize;
    let end = body_end + header.payload_len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let frame = ParsedFrame {
        header,
        body: &buf[HEADER_LEN..body_end],
        payload: &buf[body_end..end],
    };
    Ok(Some((frame, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FrameHeader {
        FrameHeader {
            body_len: 7,
            payload_len: 9,
            ..FrameHeader::request(Method(0x0201), 42, 1500)
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        let d = FrameHeader::decode(&h.encode(), &FrameLimits::default()).unwrap();
        assert_eq!(h, d);
    }

    #[test]
    fn distinct_errors_for_each_malformation() {
        let limits = FrameLimits::default();
        let good = sample().encode();

        assert_eq!(
            FrameHeader::decode(&good[..31], &limits),
            Err(FrameError::Truncated { got: 31 })
        );
        assert_eq!(
            FrameHeader::decode(&[], &limits),
            Err(FrameError::Truncated { got: 0 })
        );

        let mut b = good;
        b[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::BadMagic(_))
        ));

        let mut b = good;
        b[4] = 2;
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::UnsupportedVersion(2))
        );

        let mut b = good;
        b[5] = 9;
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::UnknownKind(9))
        );

        let mut b = good;
        b[7] = 1;
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::UnknownFlags(1))
        );

        let mut b = good;
        b[10..12].copy_from_slice(&999u16.to_be_bytes());
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::UnknownStatus(999))
        );

        let mut b = good;
        b[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::BodyTooLarge {
                len: u32::MAX,
                max: limits.max_body
            })
        );

        let mut b = good;
        b[28..32].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            FrameHeader::decode(&b, &limits),
            Err(FrameError::PayloadTooLarge {
                len: u32::MAX,
                max: limits.max_payload
            })
        );

        let mut c = FrameHeader::cancel(Method(1), 5);
        c.body_len = 1;
        assert_eq!(
            FrameHeader::decode(&c.encode(), &limits),
            Err(FrameError::CancelWithContent)
        );
    }

    #[test]
    fn parse_waits_for_whole_frame() {
        let h = sample();
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(b"bodybod");
        assert_eq!(parse_frame(&buf, &FrameLimits::default()), Ok(None));
        buf.extend_from_slice(b"payloadpa");
        buf.extend_from_slice(b"next");
        let (f, used) = parse_frame(&buf, &FrameLimits::default()).unwrap().unwrap();
        assert_eq!(used, buf.len() - 4);
        assert_eq!(f.body, b"bodybod");
        assert_eq!(f.payload, b"payloadpa");
    }
}
