//! The bytes of a shard file on disk (format version 1).
//!
//! ```text
//! offset  len  field (all integers little-endian)
//!      0    8  magic "TESSHARD"
//!      8    2  format version (1)
//!     10    2  reserved, 0
//!     12    4  block length in bytes (65536 in version 1)
//!     16    8  data length in bytes
//!     24   32  shard id (BLAKE3 of the data)
//!     56    8  first 8 bytes of BLAKE3(bytes 0..56): catches a damaged header
//!     64  32n  block hash list: the BLAKE3 chaining value of each block, present only when
//!              data length > block length (n = number of blocks); see `verify.rs`
//!  64+32n  len  the shard data
//! ```
//!
//! The file length must be exactly `64 + 32n + data length`, so a torn file is caught before a
//! single data byte is hashed. Decoding dispatches on the version so a later format can add a
//! `v2` arm and keep reading version 1 files.

use super::ShardId;
use super::verify::{BLOCK_LEN, CV_LEN, block_count};
use crate::error::Damage;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// The first 8 bytes of every shard file.
pub const MAGIC: [u8; 8] = *b"TESSHARD";
/// The version this binary writes.
pub const VERSION: u16 = 1;

/// A decoded header: what a shard file claims to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: ShardId,
    pub data_len: u64,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Damaged, foreign or torn: the caller quarantines the file.
    Damaged(Damage),
    /// Written by a newer binary: the caller leaves the file alone.
    Unsupported(u16),
}

impl Header {
    /// Length of the block hash list that follows the header.
    pub fn hash_list_len(&self) -> u64 {
        if self.data_len > BLOCK_LEN as u64 {
            block_count(self.data_len) * CV_LEN as u64
        } else {
            0
        }
    }

    /// Offset of the first data byte in the file.
    pub fn data_offset(&self) -> u64 {
        HEADER_LEN as u64 + self.hash_list_len()
    }

    /// The exact length the file must have, or `None` if the header's length overflows
    /// (only a damaged header can claim that much).
    pub fn file_len(&self) -> Option<u64> {
        self.data_offset().checked_add(self.data_len)
    }

    /// Encodes the header in the current version.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(BLOCK_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.data_len.to_le_bytes());
        b[24..56].copy_from_slice(self.id.as_bytes());
        let sum = header_sum(&b);
        b[56..64].copy_from_slice(&sum);
        b
    }

    /// Decodes a header of any version this binary knows.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        if b[0..8] != MAGIC {
            return Err(HeaderError::Damaged(Damage::BadMagic));
        }
        match u16::from_le_bytes([b[8], b[9]]) {
            1 => decode_v1(b),
            v => Err(HeaderError::Unsupported(v)),
        }
    }
}

fn decode_v1(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
    let damaged = Err(HeaderError::Damaged(Damage::BadHeader));
    if b[56..64] != header_sum(b) {
        return damaged;
    }
    // Version 1 has one block length; a different one here means a bug, not a choice, and
    // the hash-tree code must never see a block length it was not built for.
    let block_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    if block_len as usize != BLOCK_LEN || b[10..12] != [0, 0] {
        return damaged;
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&b[16..24]);
    let mut id = [0u8; 32];
    id.copy_from_slice(&b[24..56]);
    Ok(Header {
        id: ShardId(id),
        data_len: u64::from_le_bytes(len),
    })
}

fn header_sum(b: &[u8; HEADER_LEN]) -> [u8; 8] {
    let h = blake3::hash(&b[0..56]);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[0..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u64) -> Header {
        Header {
            id: ShardId::of(b"h"),
            data_len: len,
        }
    }

    #[test]
    fn round_trip() {
        for len in [0, 1, BLOCK_LEN as u64, BLOCK_LEN as u64 + 1, 4 << 20] {
            let h = header(len);
            assert_eq!(Header::decode(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn layout_lengths() {
        assert_eq!(header(0).data_offset(), 64);
        assert_eq!(header(BLOCK_LEN as u64).data_offset(), 64);
        assert_eq!(header(BLOCK_LEN as u64 + 1).data_offset(), 64 + 64);
        assert_eq!(header(4 << 20).file_len(), Some(64 + 64 * 32 + (4 << 20)));
        assert_eq!(header(u64::MAX).file_len(), None);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let good = header(12345).encode();
        for i in 0..HEADER_LEN * 8 {
            let mut b = good;
            b[i / 8] ^= 1 << (i % 8);
            assert!(Header::decode(&b).is_err(), "bit {i} flip went unnoticed");
        }
    }

    #[test]
    fn newer_version_is_unsupported_not_damaged() {
        let mut b = header(1).encode();
        b[8..10].copy_from_slice(&7u16.to_le_bytes());
        assert_eq!(Header::decode(&b), Err(HeaderError::Unsupported(7)));
        assert_eq!(
            Header::decode(&[0u8; 64]),
            Err(HeaderError::Damaged(Damage::BadMagic))
        );
    }
}
