//! The node id file: binds a data directory to one node id for good, so a directory is never
//! started under another id (which could let two nodes vote with one log).

use crate::raft::types::NodeId;
use std::io::Write;
use std::path::Path;

const FILE: &str = "node.id";
const HEADER: &str = "tessera-meta node id v1";

/// Why the node id check failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    /// The directory belongs to another node.
    #[error(
        "data directory {dir} belongs to metaserver node {found}, not {wanted}; node ids are \
         never reused: start it with --id {found} or use an empty directory"
    )]
    Mismatch {
        /// The directory.
        dir: String,
        /// Id recorded in it.
        found: NodeId,
        /// Id asked for.
        wanted: NodeId,
    },
    /// The file is unreadable or not ours.
    #[error("node id file {path} is damaged or from another program: {reason}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The directory cannot be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Records `id` in a new directory, or checks that an existing one belongs to `id`.
pub fn claim(dir: &Path, id: NodeId) -> Result<(), NodeIdError> {
    let path = dir.join(FILE);
    let shown = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines();
            let damaged = |reason: &str| NodeIdError::Damaged {
                path: shown.clone(),
                reason: reason.into(),
            };
            if lines.next() != Some(HEADER) {
                return Err(damaged("unknown header"));
            }
            let found: NodeId = lines
                .next()
                .and_then(|l| l.strip_prefix("id="))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| damaged("no id line"))?;
            if found != id {
                return Err(NodeIdError::Mismatch {
                    dir: dir.display().to_string(),
                    found,
                    wanted: id,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let io = |source| NodeIdError::Io {
                path: shown.clone(),
                source,
            };
            let tmp = dir.join(format!("{FILE}.tmp"));
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(format!("{HEADER}\nid={id}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(())
        }
        Err(source) => Err(NodeIdError::Io {
            path: shown,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_first_id() {
        let dir = std::env::temp_dir().join(format!("tessera-nodeid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        claim(&dir, 3).unwrap();
        claim(&dir, 3).unwrap();
        assert!(matches!(
            claim(&dir, 4),
            Err(NodeIdError::Mismatch {
                found: 3,
                wanted: 4,
                ..
            })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
