//! Argument checks that need no state: names, symlink targets, xattr names and values.
//!
//! The kernel already rejects most of these before FUSE sees them, but the metaserver also
//! serves tools and other clients, and a '/' inside a stored name would corrupt the tree.

use tessera_proto::fs::{FsError, NAME_MAX, SYMLINK_MAX, XATTR_NAME_MAX, XATTR_VALUE_MAX};

/// A directory entry name: `EINVAL` for "", ".", "..", or a name containing '/' or NUL;
/// `ENAMETOOLONG` past 255 bytes.
pub fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(FsError::Invalid);
    }
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// A symlink target: `ENOENT` when empty (as Linux), `EINVAL` with a NUL, `ENAMETOOLONG` past
/// `PATH_MAX - 1` bytes.
pub fn check_target(target: &[u8]) -> Result<(), FsError> {
    if target.is_empty() {
        return Err(FsError::NotFound);
    }
    if target.contains(&0) {
        return Err(FsError::Invalid);
    }
    if target.len() > SYMLINK_MAX {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// An extended attribute name: `ERANGE` when empty or past 255 bytes (what Linux returns).
pub fn check_xattr_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
        return Err(FsError::OutOfRange);
    }
    Ok(())
}

/// An extended attribute value: `E2BIG` past 64 KiB.
pub fn check_xattr_value(value: &[u8]) -> Result<(), FsError> {
    if value.len() > XATTR_VALUE_MAX {
        return Err(FsError::TooBig);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(check_name(b"a"), Ok(()));
        assert_eq!(check_name(b"..."), Ok(()));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", b"/"] {
            assert_eq!(check_name(bad), Err(FsError::Invalid), "{bad:?}");
        }
        assert_eq!(check_name(&[b'x'; 255]), Ok(()));
        assert_eq!(check_name(&[b'x'; 256]), Err(FsError::NameTooLong));
    }

    #[test]
    fn targets_and_xattrs() {
        assert_eq!(check_target(b""), Err(FsError::NotFound));
        assert_eq!(check_target(&[b'x'; 4095]), Ok(()));
        assert_eq!(check_target(&[b'x'; 4096]), Err(FsError::NameTooLong));
        assert_eq!(check_xattr_name(b""), Err(FsError::OutOfRange));
        assert_eq!(check_xattr_name(&[b'x'; 256]), Err(FsError::OutOfRange));
        assert_eq!(check_xattr_value(&[0; 65537]), Err(FsError::TooBig));
        assert_eq!(check_xattr_value(&[0; 65536]), Ok(()));
    }
}
