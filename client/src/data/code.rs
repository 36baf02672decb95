//! Which erasure code and stripe size a file's new data gets. The metadata service decides:
//! a file made under a directory with a layout carries a copy of it (the `tessera.layout`
//! attribute, `namespace/src/layout.rs`); only a file without one is written in this
//! mount's `--ec` and `--stripe-size`. So two mounts with different `--ec` writing under
//! one directory both produce the directory's layout.
//!
//! The attribute is read once per file, at its first flush through this mount (one
//! metadata read), and kept: a file's layout cannot change once it has data.

use std::sync::Arc;

use tessera_proto::fs::{FsError, Ino};
use tessera_proto::layout::{Layout, XATTR_LAYOUT};
use tessera_proto::meta::{Query, Response};
use tessera_stripe::Codec;

use super::DataPath;
use crate::error::ClientError;

/// Files whose code this mount remembers; past this the table starts again.
const REMEMBERED: usize = 100_000;

/// The code and stripe size of one file's new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileCode {
    pub k: u8,
    pub m: u8,
    pub stripe_size: u64,
}

impl DataPath {
    /// This mount's own code (`--ec`, `--stripe-size`): for files without a layout.
    pub(crate) fn default_code(&self) -> FileCode {
        FileCode {
            k: self.cfg.k,
            m: self.cfg.m,
            stripe_size: self.cfg.stripe_size,
        }
    }

    /// The stripe size already known for `ino`, else this mount's: only for deciding when
    /// a write may have completed a stripe (a flush uses [`Self::file_code`]).
    pub(crate) fn stripe_size_hint(&self, ino: Ino) -> u64 {
        self.codes_table()
            .get(&ino)
            .map_or(self.cfg.stripe_size, |c| c.stripe_size)
    }

    /// The code of `ino`'s new data, asking the metadata service the first time.
    pub(crate) async fn file_code(&self, ino: Ino) -> Result<FileCode, ClientError> {
        if let Some(c) = self.codes_table().get(&ino) {
            return Ok(*c);
        }
        let q = Query::GetXattr {
            ino,
            name: XATTR_LAYOUT.to_vec(),
        };
        let reply = self
            .meta
            .read(q)
            .await
            .map_err(|e| ClientError::meta("read the file's layout", e))?;
        let code = match reply {
            Ok(Response::Xattr(v)) => match Layout::from_bytes(&v) {
                Ok(l) => FileCode {
                    k: l.k,
                    m: l.m,
                    stripe_size: l.stripe_size.unwrap_or(self.cfg.stripe_size),
                },
                // The namespace stores only values that parse; one that does not came
                // from a newer version or a damaged image: write, in this mount's code.
                Err(e) => {
                    tracing::warn!(ino, "{e}; writing in this mount's code");
                    self.default_code()
                }
            },
            Err(FsError::NoData) => self.default_code(),
            Ok(other) => return Err(ClientError::unexpected("read the file's layout", &other)),
            Err(e) => return Err(e.into()),
        };
        let mut t = self.codes_table();
        if t.len() >= REMEMBERED {
            t.clear();
        }
        t.insert(ino, code);
        Ok(code)
    }

    /// Shard bytes `data` file bytes of `ino` take in its code (for `fallocate`'s room
    /// check: a file under `ec=1+2` takes three times its size).
    pub async fn shard_bytes_in_file(&self, ino: Ino, data: u64) -> Result<u64, FsError> {
        let c = self.file_code(ino).await?;
        let (k, m) = (u64::from(c.k.max(1)), u64::from(c.m));
        Ok(data.div_ceil(k) * (k + m))
    }

    /// The codec for `code`.
    pub(crate) fn codec_for(&self, code: FileCode) -> Result<Arc<Codec>, ClientError> {
        let (k, m) = (code.k, code.m);
        self.chunks
            .codec(k, m)
            .map_err(|source| ClientError::Code { k, m, source })
    }

    fn codes_table(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Ino, FileCode>> {
        self.codes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
