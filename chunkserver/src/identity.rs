//! The chunkserver's persistent id: a random nonzero `u64` chosen the first time a data
//! directory is served, kept in `DIR/chunkserver.id`, and reused on every restart.
//!
//! The id names the disk, not the process or its address: the metadata leader records shard
//! locations by it, so the same disk behind a new address is still the same server. The file
//! is versioned text, readable by an operator:
//!
//! ```text
//! tessera-chunkserver-id 1
//! id 3f1c0a9be2d47788
//! ```
//!
//! A damaged file is an error, never silently replaced: a new id would turn a disk full of
//! shards into an unknown server, and the leader would repair everything it holds elsewhere.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use tessera_proto::cluster::ChunkserverId;

use crate::error::{Error, Result};

/// File name inside the data directory.
pub const FILE: &str = "chunkserver.id";
const MAGIC: &str = "tessera-chunkserver-id";
const VERSION: u32 = 1;

/// Reads the id from `dir`, or creates it (durably) if the file does not exist.
pub fn load_or_create(dir: &Path) -> Result<ChunkserverId> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => decode(&text).map_err(|reason| Error::Identity { path, reason }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(dir, &path),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Identity {
            path,
            reason: "not UTF-8 text".into(),
        }),
        Err(e) => Err(Error::io("read", path, None, e)),
    }
}

fn create(dir: &Path, path: &Path) -> Result<ChunkserverId> {
    let id = loop {
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).map_err(|e| Error::Identity {
            path: path.to_path_buf(),
            reason: format!("no randomness to choose a new id: {e}"),
        })?;
        let id = u64::from_le_bytes(raw);
        if id != 0 {
            break id;
        }
    };
    write(dir, path, id).map_err(|e| Error::io("write", path, None, e))?;
    tracing::info!(id = %format!("{id:016x}"), file = %path.display(), "new chunkserver id");
    Ok(id)
}

/// The file's text for `id` in the current version.
fn encode(id: ChunkserverId) -> String {
    format!("{MAGIC} {VERSION}\nid {id:016x}\n")
}

fn decode(text: &str) -> std::result::Result<ChunkserverId, String> {
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("").trim();
    let version = head
        .strip_prefix(MAGIC)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| format!("first line is {head:?}, not \"{MAGIC} <version>\""))?;
    // One arm per version this binary reads; a later format adds an arm here.
    match version {
        1 => decode_v1(lines.next().unwrap_or("").trim()),
        v => Err(format!(
            "written in version {v} by a newer tessera (this one reads version {VERSION}); upgrade"
        )),
    }
}

fn decode_v1(line: &str) -> std::result::Result<ChunkserverId, String> {
    let id = line
        .strip_prefix("id ")
        .filter(|h| h.len() == 16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("second line is {line:?}, not \"id <16 hex digits>\""))?;
    if id == 0 {
        return Err("the id is zero, which is never assigned".into());
    }
    Ok(id)
}

fn write(dir: &Path, path: &Path, id: ChunkserverId) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(encode(id).as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn created_once_then_reused() {
        let dir = TempDir::new("identity");
        let a = load_or_create(dir.path()).unwrap();
        assert_ne!(a, 0);
        assert_eq!(load_or_create(dir.path()).unwrap(), a);
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text, encode(a));
        assert!(!dir.path().join("chunkserver.id.tmp").exists());
    }

    #[test]
    fn decode_known_and_refuse_the_rest() {
        assert_eq!(
            decode("tessera-chunkserver-id 1\nid 00000000000000ff\n"),
            Ok(255)
        );
        for bad in [
            "",
            "garbage",
            "tessera-chunkserver-id 1\n",
            "tessera-chunkserver-id 1\nid 0000000000000000\n",
            "tessera-chunkserver-id 1\nid 12\n",
            "tessera-chunkserver-id 1\nid zzzzzzzzzzzzzzzz\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        let e = decode("tessera-chunkserver-id 2\nid 00000000000000ff\n").unwrap_err();
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_id() {
        let dir = TempDir::new("identity-bad");
        fs::write(dir.path().join(FILE), "tessera-chunkserver-id 1\nid oops\n").unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Identity { .. }), "{e}");
        assert!(e.to_string().contains("restore it"), "{e}");
    }
}
