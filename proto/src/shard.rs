//! `ShardId`: the BLAKE3 hash of a shard's bytes, which is also its name everywhere: in RPCs,
//! in stripe layouts, in the chunkserver's file names and in logs.
//!
//! It lives in the wire crate because every process names shards the same way; it depends
//! only on `blake3` (to compute an id) and `serde` (to send one, as 32 raw bytes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of a shard: `BLAKE3(shard bytes)`. Displayed as 64 lowercase hex digits, so the
/// byte order and the text order agree (listing pages sort by either).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId(pub [u8; 32]);

impl ShardId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 64;

    /// The id of `data`: one BLAKE3 pass over it.
    pub fn of(data: &[u8]) -> ShardId {
        ShardId(*blake3::hash(data).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first `n` bytes as lowercase hex, e.g. for fan-out directory names.
    pub fn hex_prefix(&self, n: usize) -> String {
        let mut s = String::with_capacity(n * 2);
        for b in &self.0[..n.min(32)] {
            push_hex(&mut s, *b);
        }
        s
    }
}

impl From<blake3::Hash> for ShardId {
    fn from(h: blake3::Hash) -> ShardId {
        ShardId(*h.as_bytes())
    }
}

fn push_hex(s: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.push(char::from(DIGITS[usize::from(b >> 4)]));
    s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex_prefix(32))
    }
}

impl fmt::Debug for ShardId {
    // Short form: ids show up in many log lines and test failures; 8 bytes is plenty to tell
    // them apart by eye, and `Display` gives the full id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardId({}..)", self.hex_prefix(8))
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a shard id (want 64 hex digits): {0:?}")]
pub struct ParseShardIdError(pub String);

impl FromStr for ShardId {
    type Err = ParseShardIdError;

    fn from_str(s: &str) -> Result<ShardId, ParseShardIdError> {
        let bad = || ParseShardIdError(s.chars().take(80).collect());
        let bytes = s.as_bytes();
        if bytes.len() != Self::HEX_LEN {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(bad)?;
            let lo = hex_val(pair[1]).ok_or_else(bad)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(ShardId(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_value() {
        let id = ShardId::of(b"");
        // BLAKE3 of the empty input, from the BLAKE3 test vectors.
        assert_eq!(
            id.to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(id.to_string().parse::<ShardId>().unwrap(), id);
        assert_eq!(
            id.to_string().to_uppercase().parse::<ShardId>().unwrap(),
            id
        );
        assert_eq!(format!("{id:?}"), "ShardId(af1349b9f5f9a1a6..)");
        assert_eq!(id.hex_prefix(2), "af13");
    }

    #[test]
    fn rejects_bad_text() {
        assert!("".parse::<ShardId>().is_err());
        assert!("af".parse::<ShardId>().is_err());
        let mut s = ShardId::of(b"x").to_string();
        s.replace_range(10..11, "g");
        assert!(s.parse::<ShardId>().is_err());
        // A multi-byte char must not panic the parser.
        let s = format!("é{}", &ShardId::of(b"x").to_string()[2..]);
        assert!(s.parse::<ShardId>().is_err());
    }

    #[test]
    fn hex_order_is_byte_order() {
        let mut ids: Vec<ShardId> = (0u32..50).map(|i| ShardId::of(&i.to_le_bytes())).collect();
        let mut texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
        ids.sort();
        texts.sort();
        let sorted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, texts);
    }

    #[test]
    fn serde_round_trip() {
        let id = ShardId::of(b"serde");
        let bytes = postcard::to_allocvec(&id).unwrap();
        assert_eq!(postcard::from_bytes::<ShardId>(&bytes).unwrap(), id);
    }
}
