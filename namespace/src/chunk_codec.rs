//! Chunk records written and read without serde: the bytes are exactly what `codec::encode`
//! writes for a [`ChunkRec`] (postcard: varint counts and integers, a 0/1 option tag, the
//! 32 stripe id bytes as they are), so nothing on disk changes. Records of a file written at
//! random hold thousands of slices and every commit to a chunk reads and rewrites its record;
//! through serde each stripe id byte was a separate visit, which made that the leader's
//! main cost (profiled). Anything but the current format version goes through
//! `codec::decode`.

use super::codec::{FORMAT_VERSION, corrupt, decode};
use super::records::ChunkRec;
use super::store::Table;
use crate::error::NamespaceError;
use tessera_proto::fs::{Slice, StripeId, StripeRef};

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The value stored for a chunk holding `slices`.
pub(crate) fn encode_slices(slices: &[Slice]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + slices.len() * 48);
    out.push(FORMAT_VERSION);
    put_varint(&mut out, slices.len() as u64);
    for s in slices {
        put_varint(&mut out, s.offset);
        put_varint(&mut out, s.len);
        match s.data {
            None => out.push(0),
            Some(r) => {
                out.push(1);
                out.extend_from_slice(&r.stripe.0);
                put_varint(&mut out, r.offset);
            }
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// A postcard u64 varint: at most 10 bytes, no bits past 64.
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn id(&mut self) -> Option<StripeId> {
        let b: [u8; 32] = self.bytes.get(self.at..self.at + 32)?.try_into().ok()?;
        self.at += 32;
        Some(StripeId(b))
    }

    fn slice(&mut self) -> Option<Slice> {
        let offset = self.varint()?;
        let len = self.varint()?;
        let data = match self.byte()? {
            0 => None,
            1 => Some(StripeRef {
                stripe: self.id()?,
                offset: self.varint()?,
            }),
            _ => return None,
        };
        Some(Slice { offset, len, data })
    }
}

/// The slices of a stored chunk record.
pub(crate) fn decode_slices(key: &[u8], bytes: &[u8]) -> Result<Vec<Slice>, NamespaceError> {
    if bytes.first() != Some(&FORMAT_VERSION) {
        return decode::<ChunkRec>(Table::Chunks, key, bytes).map(|r| r.slices);
    }
    let bad = || corrupt(Table::Chunks, key, "malformed chunk record".to_string());
    let mut r = Reader { bytes, at: 1 };
    let n = r.varint().ok_or_else(bad)?;
    // Each slice takes at least 3 bytes: a count past that is corrupt, not a huge allocation.
    if n > (bytes.len() / 3) as u64 {
        return Err(bad());
    }
    let mut slices = Vec::with_capacity(n as usize);
    for _ in 0..n {
        slices.push(r.slice().ok_or_else(bad)?);
    }
    if r.at != bytes.len() {
        return Err(corrupt(
            Table::Chunks,
            key,
            format!("{} trailing bytes", bytes.len() - r.at),
        ));
    }
    Ok(slices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;

    #[test]
    fn same_bytes_as_postcard_and_back() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in [0usize, 1, 2, 100, 1000] {
            let slices: Vec<Slice> = (0..n)
                .map(|_| {
                    let v = next();
                    let big = |v: u64| v >> (v % 64);
                    Slice {
                        offset: big(next()),
                        len: big(next()),
                        data: (v % 4 != 0).then(|| StripeRef {
                            stripe: StripeId(std::array::from_fn(|i| (v >> (i % 8)) as u8)),
                            offset: big(next()),
                        }),
                    }
                })
                .collect();
            let bytes = encode_slices(&slices);
            assert_eq!(
                bytes,
                encode(&ChunkRec {
                    slices: slices.clone()
                })
            );
            assert_eq!(decode_slices(b"k", &bytes).unwrap(), slices);
            // Every truncation and a trailing byte are errors, never panics.
            for cut in 0..bytes.len().min(200) {
                assert!(decode_slices(b"k", &bytes[..cut]).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(decode_slices(b"k", &long).is_err());
        }
    }
}
