//! `chattr`/`lsattr`: the inode flags ioctls and the open rules of flagged files.
//!
//! Since Linux 5.13 `FS_IOC_GETFLAGS`/`FS_IOC_SETFLAGS` on a FUSE file reach the daemon as
//! FUSE_IOCTL requests the kernel makes itself (`fuse_fileattr_get`/`_set`), with the flags
//! as a 4-byte integer, or as `struct fsxattr` (`FS_IOC_FSGETXATTR`, which the kernel also
//! asks before every change, and `FS_IOC_FSSETXATTR`, xfs_io's spelling); the kernel has
//! already checked that the caller owns the file and,
//! for a change of the immutable or append-only flag, holds CAP_LINUX_IMMUTABLE. The
//! namespace enforces the flags for every mount (see `namespace/src/flags.rs`); opening for
//! writing is refused here, from the attributes the open returns, because the kernel's
//! `may_open` only knows flags kept in its own inode, which FUSE never fills.

use tessera_proto::fs::{Attr, FsError, INODE_APPEND, INODE_IMMUTABLE};

/// Linux open flags (the same on every architecture Tessera builds for).
pub const O_APPEND: i32 = 0o2000;
pub const O_TRUNC: i32 = 0o1000;
pub const O_EXCL: i32 = 0o200;

/// Linux `CAP_LINUX_IMMUTABLE`.
pub const CAP_LINUX_IMMUTABLE: u32 = 9;

/// What an ioctl asks for, by its type and number (the size bits differ between the
/// 32- and 64-bit spellings of the same request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsIoctl {
    /// `FS_IOC_GETFLAGS`.
    Get,
    /// `FS_IOC_SETFLAGS`.
    Set,
    /// `FS_IOC_FSGETXATTR`.
    GetX,
    /// `FS_IOC_FSSETXATTR`.
    SetX,
}

/// `struct fsxattr`: xflags, extent size, extent count, project id, CoW extent size, and
/// 8 bytes of padding.
const FSXATTR_LEN: usize = 28;
/// `FS_XFLAG_IMMUTABLE` and `FS_XFLAG_APPEND`.
const XFLAG_IMMUTABLE: u32 = 0x8;
const XFLAG_APPEND: u32 = 0x10;

impl FlagsIoctl {
    pub fn of(cmd: u32) -> Option<FlagsIoctl> {
        let (kind, nr) = ((cmd >> 8) & 0xff, cmd & 0xff);
        match (kind, nr) {
            (0x66, 1) => Some(FlagsIoctl::Get),   // 'f' 1
            (0x66, 2) => Some(FlagsIoctl::Set),   // 'f' 2
            (0x58, 31) => Some(FlagsIoctl::GetX), // 'X' 31
            (0x58, 32) => Some(FlagsIoctl::SetX), // 'X' 32
            _ => None,
        }
    }

    /// The inode flags a set request carries (`None` for a get); `EOPNOTSUPP` for an
    /// extended attribute Tessera does not keep.
    pub fn flags_in(self, data: &[u8]) -> Result<Option<u32>, FsError> {
        let word = |at: usize| {
            data.get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_ne_bytes)
                .ok_or(FsError::Invalid)
        };
        match self {
            FlagsIoctl::Get | FlagsIoctl::GetX => Ok(None),
            // A native-endian integer, 4 or 8 bytes.
            FlagsIoctl::Set => word(0).map(Some),
            FlagsIoctl::SetX => {
                let xflags = word(0)?;
                let others = (1..5)
                    .map(|i| word(i * 4))
                    .collect::<Result<Vec<u32>, _>>()?;
                if xflags & !(XFLAG_IMMUTABLE | XFLAG_APPEND) != 0 || others.iter().any(|&v| v != 0)
                {
                    return Err(FsError::NotSupported);
                }
                let mut flags = 0;
                if xflags & XFLAG_IMMUTABLE != 0 {
                    flags |= INODE_IMMUTABLE;
                }
                if xflags & XFLAG_APPEND != 0 {
                    flags |= INODE_APPEND;
                }
                Ok(Some(flags))
            }
        }
    }

    /// The reply carrying `flags`, for a buffer of `out_size` bytes; a set request's reply
    /// carries nothing (the kernel expects no data back from a write-only ioctl and fails
    /// the call with EIO if some comes).
    pub fn flags_out(self, flags: u32, out_size: u32) -> Vec<u8> {
        match self {
            FlagsIoctl::Set | FlagsIoctl::SetX => Vec::new(),
            FlagsIoctl::GetX => {
                let mut xflags = 0u32;
                if flags & INODE_IMMUTABLE != 0 {
                    xflags |= XFLAG_IMMUTABLE;
                }
                if flags & INODE_APPEND != 0 {
                    xflags |= XFLAG_APPEND;
                }
                let mut out = vec![0u8; FSXATTR_LEN.min(out_size as usize)];
                let n = out.len().min(4);
                out[..n].copy_from_slice(&xflags.to_ne_bytes()[..n]);
                out
            }
            FlagsIoctl::Get => {
                let mut out = vec![0u8; (out_size as usize).clamp(4, 8)];
                out[..4].copy_from_slice(&flags.to_ne_bytes());
                out
            }
        }
    }
}

/// Whether a change from `old` to `new` touches the flags that need CAP_LINUX_IMMUTABLE.
pub fn needs_cap(old: u32, new: u32) -> bool {
    (old ^ new) & (INODE_IMMUTABLE | INODE_APPEND) != 0
}

/// `EPERM` for an open the flags forbid (Linux `may_open`): writing an immutable file, or
/// writing an append-only file without O_APPEND, or truncating it.
pub fn check_open(a: &Attr, writes: bool, append: bool, truncate: bool) -> Result<(), FsError> {
    if a.read_only() && (writes || truncate) {
        return Err(FsError::ReadOnly);
    }
    if a.immutable() && (writes || truncate) {
        return Err(FsError::NotPermitted);
    }
    if a.append_only() && ((writes && !append) || truncate) {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::FileKind;

    fn attr(flags: u32) -> Attr {
        Attr {
            ino: 5,
            generation: 1,
            kind: FileKind::Regular,
            perm: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            blocks: 0,
            flags,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    #[test]
    fn both_spellings_of_the_flags_ioctls_are_known() {
        assert_eq!(FlagsIoctl::of(0x8008_6601), Some(FlagsIoctl::Get));
        assert_eq!(FlagsIoctl::of(0x8004_6601), Some(FlagsIoctl::Get));
        assert_eq!(FlagsIoctl::of(0x4008_6602), Some(FlagsIoctl::Set));
        assert_eq!(FlagsIoctl::of(0x4004_6602), Some(FlagsIoctl::Set));
        assert_eq!(FlagsIoctl::of(0x801c_581f), Some(FlagsIoctl::GetX));
        assert_eq!(FlagsIoctl::of(0x401c_5820), Some(FlagsIoctl::SetX));
        assert_eq!(FlagsIoctl::of(0x8008_6602 + 0x100), None);
    }

    #[test]
    fn flags_travel_as_native_integers_or_fsxattr() {
        let set = FlagsIoctl::Set;
        assert_eq!(set.flags_in(&0x30u32.to_ne_bytes()), Ok(Some(0x30)));
        assert_eq!(set.flags_in(&0x10u64.to_ne_bytes()), Ok(Some(0x10)));
        assert_eq!(set.flags_in(&[1, 2]), Err(FsError::Invalid));
        assert_eq!(FlagsIoctl::Get.flags_in(&[]), Ok(None));
        assert_eq!(
            FlagsIoctl::Get.flags_out(0x20, 4),
            0x20u32.to_ne_bytes().to_vec()
        );
        assert_eq!(FlagsIoctl::Get.flags_out(0x20, 8).len(), 8);
        let x = FlagsIoctl::GetX.flags_out(INODE_IMMUTABLE | INODE_APPEND, 28);
        assert_eq!(x.len(), 28);
        assert_eq!(x[..4], 0x18u32.to_ne_bytes());
        assert_eq!(
            FlagsIoctl::SetX.flags_in(&x),
            Ok(Some(INODE_IMMUTABLE | INODE_APPEND))
        );
        assert!(FlagsIoctl::SetX.flags_out(0x10, 28).is_empty());
        assert!(FlagsIoctl::Set.flags_out(0x10, 4).is_empty());
        let mut projid = x.clone();
        projid[12] = 1;
        assert_eq!(
            FlagsIoctl::SetX.flags_in(&projid),
            Err(FsError::NotSupported)
        );
        assert!(needs_cap(0, INODE_APPEND) && !needs_cap(INODE_APPEND, INODE_APPEND));
    }

    #[test]
    fn opens_follow_may_open() {
        let eperm = Err(FsError::NotPermitted);
        assert_eq!(
            check_open(&attr(INODE_IMMUTABLE), false, false, false),
            Ok(())
        );
        assert_eq!(check_open(&attr(INODE_IMMUTABLE), true, true, false), eperm);
        assert_eq!(check_open(&attr(INODE_APPEND), true, true, false), Ok(()));
        assert_eq!(check_open(&attr(INODE_APPEND), true, false, false), eperm);
        assert_eq!(check_open(&attr(INODE_APPEND), true, true, true), eperm);
        assert_eq!(check_open(&attr(0), true, false, true), Ok(()));
    }
}
