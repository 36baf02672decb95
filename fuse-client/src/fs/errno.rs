//! The one place where errors become errno values for the kernel: an `FsError` (the client
//! library's result, `tessera_client::error` maps every internal failure to one) through
//! the protocol's table, `FsError::errno`.

use fuser::Errno;
use tessera_proto::fs::FsError;

/// The errno the kernel gets for `e`.
/// Every error reply is made through here, so it also counts the error against the
/// operation being answered (see `metrics`).
pub fn errno(e: FsError) -> Errno {
    super::metrics::note_error();
    Errno::from_i32(e.errno())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_errno() {
        assert_eq!(errno(FsError::NotFound), Errno::ENOENT);
        assert_eq!(errno(FsError::NotSupported), Errno::EOPNOTSUPP);
        assert_eq!(errno(FsError::NoData), Errno::ENODATA);
        assert_eq!(errno(FsError::Exists), Errno::EEXIST);
    }
}
