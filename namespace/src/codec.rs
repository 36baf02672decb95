//! Bytes of the namespace tables: versioned values and big-endian keys.
//!
//! Every stored value is `[format version][postcard body]` and is read back through
//! [`decode`], the one place where a future format change adds its migration step (as Garage
//! does). Decoding never panics: unknown versions, short input and trailing bytes are errors
//! that name the table and key.

use super::store::Table;
use crate::error::NamespaceError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The value format this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes a value with its version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let out = vec![FORMAT_VERSION];
    // Serialising our own plain structs into a Vec cannot fail: postcard only errors on
    // unsupported serde features (none are used) or a full fixed-size buffer (not this one).
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => unreachable!("postcard cannot fail to encode a plain struct into a Vec"),
    }
}

/// Encodes a value with an explicit version byte: for tables whose records moved to a
/// newer format than [`FORMAT_VERSION`] (see `records::INODE_FORMAT`).
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    match postcard::to_extend(value, vec![version]) {
        Ok(v) => v,
        Err(_) => unreachable!("postcard cannot fail to encode a plain struct into a Vec"),
    }
}

/// Decodes a value written by [`encode`] (of this or an older format version).
pub fn decode<T: DeserializeOwned>(
    table: Table,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, NamespaceError> {
    match split_version(table, key, bytes)? {
        (FORMAT_VERSION, body) => decode_body(table, key, body),
        (found, _) => Err(unknown_version(table, key, found, FORMAT_VERSION)),
    }
}

/// A stored value's format version and body.
pub fn split_version<'b>(
    table: Table,
    key: &[u8],
    bytes: &'b [u8],
) -> Result<(u8, &'b [u8]), NamespaceError> {
    match bytes.split_first() {
        Some((&version, body)) => Ok((version, body)),
        None => Err(corrupt(table, key, "empty value".to_string())),
    }
}

/// Decodes the body of a value (after its version byte), which must be used up exactly.
pub fn decode_body<T: DeserializeOwned>(
    table: Table,
    key: &[u8],
    body: &[u8],
) -> Result<T, NamespaceError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| corrupt(table, key, e.to_string()))?;
    if !rest.is_empty() {
        return Err(corrupt(
            table,
            key,
            format!("{} trailing bytes", rest.len()),
        ));
    }
    Ok(value)
}

/// The error for a value of a version this build cannot read.
pub fn unknown_version(table: Table, key: &[u8], found: u8, supported: u8) -> NamespaceError {
    NamespaceError::UnknownVersion {
        table,
        key: hex(key),
        found,
        supported,
    }
}

pub fn corrupt(table: Table, key: &[u8], reason: String) -> NamespaceError {
    NamespaceError::Corrupt {
        table,
        key: hex(key),
        reason,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a key from big-endian integers and byte strings.
#[derive(Debug, Default)]
pub struct Key(Vec<u8>);

impl Key {
    pub fn new() -> Key {
        Key(Vec::with_capacity(24))
    }

    pub fn u64(mut self, v: u64) -> Key {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Signed times sort correctly as unsigned once the sign bit is flipped.
    pub fn i64(self, v: i64) -> Key {
        self.u64((v as u64) ^ (1 << 63))
    }

    pub fn u8(mut self, v: u8) -> Key {
        self.0.push(v);
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Key {
        self.0.extend_from_slice(v);
        self
    }

    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

/// Reads the big-endian `u64` at `at` in a key scanned from `table`.
pub fn key_u64(table: Table, key: &[u8], at: usize) -> Result<u64, NamespaceError> {
    key.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt(table, key, format!("key too short for a u64 at {at}")))
}

/// The bytes of a key after `at` (names in dentry and xattr keys).
pub fn key_tail(table: Table, key: &[u8], at: usize) -> Result<Vec<u8>, NamespaceError> {
    key.get(at..)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| corrupt(table, key, format!("key shorter than {at} bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = (7u64, b"name".to_vec());
        let bytes = encode(&v);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(
            decode::<(u64, Vec<u8>)>(Table::Inodes, b"k", &bytes).unwrap(),
            v
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let good = encode(&(1u64, 2u64));
        assert!(matches!(
            decode::<(u64, u64)>(Table::Inodes, b"k", &[]),
            Err(NamespaceError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<(u64, u64)>(Table::Inodes, b"k", &good[..2]),
            Err(NamespaceError::Corrupt { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode::<(u64, u64)>(Table::Inodes, b"k", &long),
            Err(NamespaceError::Corrupt { .. })
        ));
        let mut future = good;
        future[0] = 9;
        assert!(matches!(
            decode::<(u64, u64)>(Table::Inodes, b"k", &future),
            Err(NamespaceError::UnknownVersion { found: 9, .. })
        ));
    }

    #[test]
    fn keys_sort_numerically() {
        let a = Key::new().u64(1).bytes(b"zz").done();
        let b = Key::new().u64(256).bytes(b"a").done();
        assert!(a < b);
        assert!(Key::new().i64(-1).done() < Key::new().i64(0).done());
        assert!(Key::new().i64(i64::MIN).done() < Key::new().i64(i64::MAX).done());
        assert_eq!(key_u64(Table::Inodes, &b, 0).unwrap(), 256);
        assert_eq!(key_tail(Table::Inodes, &b, 8).unwrap(), b"a");
        assert!(key_u64(Table::Inodes, &b, 2).is_err());
    }
}
