//! Finding the `tessera` binary under test.

use std::path::{Path, PathBuf};

/// The binary under test: `$TESSERA_BIN` if set, else `<target>/debug/tessera` where
/// `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`.
///
/// Cargo cannot build another package's binary for a test, so it must be built first:
/// `cargo build -p tessera-cli` (the CI entry does this before running the tests).
pub fn tessera_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "TESSERA_BIN={} does not exist; build it or unset TESSERA_BIN",
            p.display()
        );
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let p = target.join("debug").join("tessera");
    assert!(
        p.is_file(),
        "{} not found: run `cargo build -p tessera-cli` first (or set TESSERA_BIN)",
        p.display()
    );
    p
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `tessera` as a command, with the TLS environment when the harness runs over TLS
/// (`crate::tls`), so admin commands reach a TLS cluster.
pub fn tessera_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(tessera_bin());
    cmd.envs(crate::tls::env());
    cmd
}
