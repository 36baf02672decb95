//! The cluster secret: loaded from a file, never sent over the wire.

use crate::error::SecretError;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// Shortest secret accepted, in bytes after trimming whitespace.
pub const MIN_SECRET_LEN: usize = 16;

const KEY_CONTEXT: &str = "tessera 2026-11 cluster secret to handshake key v1";

/// A 32-byte key derived from the cluster secret file. Debug output never shows it.
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Derives the key from raw secret bytes (surrounding whitespace ignored, so an editor's
    /// trailing newline does not split a cluster).
    pub fn from_bytes(raw: &[u8], origin: &str) -> Result<Self, SecretError> {
        let trimmed = raw.trim_ascii();
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: origin.to_string(),
                len: trimmed.len(),
                min: MIN_SECRET_LEN,
            });
        }
        Ok(Self {
            key: blake3::derive_key(KEY_CONTEXT, trimmed),
        })
    }

    /// Reads the secret from a file.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let raw = std::fs::read(path).map_err(|cause| SecretError::Io {
            path: shown.clone(),
            cause,
        })?;
        Self::from_bytes(&raw, &shown)
    }

    /// Creates a new secret file (mode 0600, refusing to overwrite) holding 32 random bytes in
    /// hex, and returns the secret. Used by dev clusters and `tessera` setup commands.
    pub fn generate_file(path: &Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let io_err = |cause| SecretError::Io {
            path: shown.clone(),
            cause,
        };
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(io_err)?;
        file.write_all(format!("{hex}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err)?;
        Self::from_bytes(hex.as_bytes(), &shown)
    }

    /// The derived handshake key.
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_does_not_change_the_key() {
        let a = Secret::from_bytes(b"0123456789abcdef", "a").unwrap();
        let b = Secret::from_bytes(b"0123456789abcdef\n", "b").unwrap();
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            Secret::from_bytes(b"short", "x"),
            Err(SecretError::TooShort { len: 5, .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = Secret::from_bytes(b"0123456789abcdef", "a").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
