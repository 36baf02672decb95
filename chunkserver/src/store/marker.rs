//! The data directory's format marker: `DIR/FORMAT`, one line `tessera-chunk-data <version>`.
//!
//! It lets a binary refuse a directory it does not understand (written by a newer version, or
//! by another program) before it creates, deletes or rescans anything in it: startup deletes
//! leftover temporary files, so opening the wrong directory must fail first. A directory
//! without a marker is adopted only if it is empty or holds nothing but our own entries (a
//! directory created before the marker existed, or a fresh mount point's `lost+found`).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// File name of the marker inside the data directory.
pub const FILE: &str = "FORMAT";
/// What the marker says before the version number.
const MAGIC: &str = "tessera-chunk-data";
/// The layout version this binary writes and reads: the tree in `layout.rs`, shard files as
/// in `format.rs`.
pub const VERSION: u32 = 1;

/// Entries an unmarked directory may hold and still be adopted as ours.
const OURS: &[&str] = &[
    "shards",
    "tmp",
    "quarantine",
    "LOCK",
    "chunkserver.id",
    "chunkserver.id.tmp",
    "FORMAT.tmp",
    "lost+found",
];

fn expected() -> String {
    format!("{MAGIC} {VERSION}")
}

/// Checks the marker of `root` (which must exist), writing it if the directory is adoptable.
pub fn check_or_create(root: &Path) -> Result<()> {
    let path = root.join(FILE);
    match fs::read(&path) {
        Ok(raw) => return check(root, &raw),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read", &path, None, e)),
    }
    let entries = fs::read_dir(root).map_err(|e| Error::io("list", root, None, e))?;
    for entry in entries {
        let name = entry
            .map_err(|e| Error::io("list", root, None, e))?
            .file_name();
        let name = name.to_string_lossy();
        // Shards without a marker were written by a pre-release layout this binary cannot
        // read (two fan-out levels): refuse rather than serve an inventory that looks empty.
        if name == "shards" && !is_empty_dir(&root.join("shards")) {
            return Err(Error::UnknownDataFormat {
                path: root.to_path_buf(),
                found: "no FORMAT marker, shards of a pre-release layout".into(),
                expected: expected(),
            });
        }
        if !OURS.contains(&name.as_ref()) {
            return Err(Error::NotDataDir {
                path: root.to_path_buf(),
                entry: name.into_owned(),
            });
        }
    }
    write(root).map_err(|e| Error::io("write format marker in", root, None, e))
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

fn check(root: &Path, raw: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().next().unwrap_or("").trim();
    if line == expected() {
        return Ok(());
    }
    Err(Error::UnknownDataFormat {
        path: root.to_path_buf(),
        found: line.chars().take(80).collect(),
        expected: expected(),
    })
}

/// Writes the marker durably: temporary file, fsync, rename, directory fsync.
fn write(root: &Path) -> io::Result<()> {
    let tmp = root.join("FORMAT.tmp");
    let mut f = fs::File::create(&tmp)?;
    writeln!(f, "{}", expected())?;
    f.sync_all()?;
    fs::rename(&tmp, root.join(FILE))?;
    fs::File::open(root)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn a_new_directory_gets_a_marker_and_passes_again() {
        let dir = TempDir::new("marker-new");
        check_or_create(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text, "tessera-chunk-data 1\n");
        check_or_create(dir.path()).unwrap();
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let dir = TempDir::new("marker-newer");
        fs::write(dir.path().join(FILE), "tessera-chunk-data 9\n").unwrap();
        let e = check_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(&e, Error::UnknownDataFormat { found, .. } if found == "tessera-chunk-data 9"),
            "{e}"
        );
        assert!(e.to_string().contains("upgrade"), "{e}");
    }

    #[test]
    fn a_foreign_directory_is_refused_and_left_alone() {
        let dir = TempDir::new("marker-foreign");
        fs::write(dir.path().join("thesis.tex"), "x").unwrap();
        let e = check_or_create(dir.path()).unwrap_err();
        assert!(matches!(&e, Error::NotDataDir { entry, .. } if entry == "thesis.tex"));
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn unmarked_shards_are_refused() {
        let dir = TempDir::new("marker-prerelease");
        fs::create_dir_all(dir.path().join("shards/ab/cd")).unwrap();
        let e = check_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, Error::UnknownDataFormat { .. }), "{e}");
    }

    #[test]
    fn an_unmarked_directory_of_ours_is_adopted() {
        let dir = TempDir::new("marker-legacy");
        fs::create_dir(dir.path().join("shards")).unwrap();
        fs::create_dir(dir.path().join("lost+found")).unwrap();
        check_or_create(dir.path()).unwrap();
        assert!(dir.path().join(FILE).exists());
    }
}
