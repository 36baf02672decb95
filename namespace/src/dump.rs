//! Metadata backups: a deterministic image of the namespace that a NEW cluster can load.
//!
//! The image holds the durable namespace (inodes, entries, readdir cookies, xattrs, chunks,
//! stripes with their shard and chunkserver ids, the GC queue, the trash, the quotas and the
//! counters; the file links quotas use are rebuilt from the entries on load) and nothing
//! that belongs to the running cluster: client sessions, open files, locks, remembered
//! replies, and the next session id. Before the tables are written, every session is ended
//! on a private copy of the state (as if every client had unmounted): opens drop to zero and
//! files unlinked while open are freed. So two clusters with the same files give the same
//! bytes, whatever clients they have, and `dump -> load -> dump` is byte-identical.
//!
//! Layout: the line `tessera-dump 1\n`, then postcard of `Image` (tables in a fixed order,
//! rows in key order, values exactly as stored), then the 32-byte BLAKE3 of everything before
//! it. Values keep their own format version byte, so a newer metaserver loads an older dump
//! through the usual `decode` migrations.
//!
//! Loading (`load`) runs as one replicated command on an empty namespace (only the root
//! directory): it replaces the dumped tables and keeps the target's sessions and next
//! session id.

use super::codec::{FORMAT_VERSION, key_u64};
use super::session;
use super::state::{OpError, OpResult, Tables, TablesMut, counter, keys};
use super::store::{MemStore, Store, StoreRead, Table};
use crate::error::NamespaceError;
use serde::{Deserialize, Serialize};
use tessera_proto::backup::DumpSummary;
use tessera_proto::fs::{FsError, ROOT_INO};
use tessera_proto::meta::Response;

/// First bytes of every image: readable by `head -1`.
pub const MAGIC: &[u8] = b"tessera-dump 1\n";

/// Tables that describe the running cluster, not the file system: never in an image.
const VOLATILE: [Table; 8] = [
    Table::Sessions,
    Table::OpenFiles,
    Table::Orphans,
    Table::Locks,
    Table::Requests,
    Table::Caps,
    Table::SessionCaps,
    Table::Delegations,
];

/// Counters that belong to the running cluster.
const VOLATILE_COUNTERS: [&[u8]; 1] = [counter::NEXT_SESSION];

/// Tables an image leaves out because `load` derives them from the others: `file_links`
/// repeats every file name, and would make images of many files half again as large.
const DERIVED: [Table; 1] = [Table::FileLinks];

/// Tables an image holds, in image order.
fn dumped() -> impl Iterator<Item = Table> {
    Table::ALL
        .into_iter()
        .filter(|t| !VOLATILE.contains(t) && !DERIVED.contains(t))
}

#[derive(Serialize, Deserialize, Debug)]
struct ImageTable {
    /// [`Table::name`].
    name: String,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The body of an image.
#[derive(Serialize, Deserialize, Debug)]
struct Image {
    /// The value format version of the metaserver that wrote it.
    format_version: u8,
    tables: Vec<ImageTable>,
}

fn table_named(name: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.name() == name)
}

fn count(img: &Image, table: Table) -> u64 {
    img.tables
        .iter()
        .filter(|t| t.name == table.name())
        .map(|t| t.rows.len() as u64)
        .sum()
}

fn summary(img: &Image, bytes: usize) -> DumpSummary {
    DumpSummary {
        inodes: count(img, Table::Inodes),
        stripes: count(img, Table::Stripes),
        bytes: bytes as u64,
        applied_index: 0,
    }
}

fn fs_to_meta(e: OpError) -> NamespaceError {
    match e {
        OpError::Meta(e) => e,
        OpError::Fs(e) => NamespaceError::BadImage(format!("ending a session for the dump: {e:?}")),
        OpError::Recall(_) => {
            NamespaceError::BadImage("ending a session for the dump met a cap".into())
        }
    }
}

/// The image of `store` (see the module docs) and what it holds.
pub fn dump<S: StoreRead + ?Sized>(store: &S) -> Result<(Vec<u8>, DumpSummary), NamespaceError> {
    let mut copy = MemStore::new();
    for table in Table::ALL {
        for (k, v) in store.scan(table, &[], None, usize::MAX)? {
            copy.put(table, &k, &v)?;
        }
    }
    // As if every client unmounted. Time 0 keeps the result independent of the clock: it
    // only dates GC-queue entries of stripes freed with unlinked-but-open files.
    for (key, _) in copy.scan(Table::Sessions, &[], None, usize::MAX)? {
        let id = key_u64(Table::Sessions, &key, 0)?;
        session::end(&mut copy, id, 0).map_err(fs_to_meta)?;
    }
    let mut tables = Vec::new();
    for table in dumped() {
        let mut rows = copy.scan(table, &[], None, usize::MAX)?;
        if table == Table::Counters {
            rows.retain(|(k, _)| !VOLATILE_COUNTERS.contains(&k.as_slice()));
        }
        tables.push(ImageTable {
            name: table.name().to_string(),
            rows,
        });
    }
    let img = Image {
        format_version: FORMAT_VERSION,
        tables,
    };
    let mut out = MAGIC.to_vec();
    out = postcard::to_extend(&img, out).map_err(|e| NamespaceError::BadImage(e.to_string()))?;
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    let summary = summary(&img, out.len());
    Ok((out, summary))
}

/// Checks an image's framing, checksum and tables and decodes it.
fn decode_image(image: &[u8]) -> Result<Image, String> {
    let Some(body) = image.strip_prefix(MAGIC) else {
        return Err(
            "it does not start with \"tessera-dump 1\" (not a dump, or a newer format)".into(),
        );
    };
    if body.len() < 32 {
        return Err("truncated".into());
    }
    let (body, sum) = image.split_at(image.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err("checksum mismatch (damaged or truncated)".into());
    }
    let img: Image =
        postcard::from_bytes(&body[MAGIC.len()..]).map_err(|e| format!("does not decode: {e}"))?;
    if img.format_version > FORMAT_VERSION {
        return Err(format!(
            "written by a newer tessera (value format {}, this one reads up to {FORMAT_VERSION}); upgrade",
            img.format_version
        ));
    }
    for t in &img.tables {
        match table_named(&t.name) {
            Some(table) if !VOLATILE.contains(&table) => {}
            _ => return Err(format!("unexpected table {:?}", t.name)),
        }
    }
    if count(&img, Table::Inodes) == 0 {
        return Err("it holds no root directory".into());
    }
    Ok(img)
}

/// What an image holds, or why it cannot be loaded.
pub fn inspect(image: &[u8]) -> Result<DumpSummary, String> {
    decode_image(image).map(|img| summary(&img, image.len()))
}

/// `Some(what)` when the namespace holds more than an empty root directory.
pub fn not_empty<S: StoreRead + ?Sized>(s: &S) -> Result<Option<String>, NamespaceError> {
    let inodes = s.scan(Table::Inodes, &[], None, 2)?;
    if inodes.iter().any(|(k, _)| *k != keys::inode(ROOT_INO)) {
        return Ok(Some("it has inodes besides the root directory".into()));
    }
    for (table, what) in [
        (Table::Dentries, "the root directory has entries"),
        (Table::Chunks, "it has file data"),
        (Table::Stripes, "it has stripes"),
        (Table::GcQueue, "it has stripes waiting for GC"),
        (Table::Xattrs, "it has extended attributes"),
    ] {
        if !s.scan(table, &[], None, 1)?.is_empty() {
            return Ok(Some(what.into()));
        }
    }
    Ok(None)
}

/// Replaces an empty namespace with `image` (the `LoadImage` command).
pub(crate) fn load<S: Store + ?Sized>(s: &mut S, image: &[u8]) -> OpResult<Response> {
    let img = decode_image(image).map_err(|_| FsError::Invalid)?;
    if not_empty(s)?.is_some() {
        return Err(FsError::NotEmpty.into());
    }
    // What belongs to the running cluster stays: its sessions may have the root open.
    let root_opens = s.inode(ROOT_INO)?.map_or(0, |r| r.opens);
    let next_session = s.counter(counter::NEXT_SESSION)?;
    for table in dumped().chain(DERIVED) {
        for (k, _) in s.scan(table, &[], None, usize::MAX)? {
            s.delete(table, &k)?;
        }
    }
    for t in &img.tables {
        let table = table_named(&t.name).ok_or(FsError::Invalid)?;
        for (k, v) in &t.rows {
            s.put(table, k, v)?;
        }
    }
    super::quota::rebuild_links(s)?;
    if next_session != 0 {
        s.put_counter(counter::NEXT_SESSION, next_session)?;
    }
    if root_opens != 0 {
        s.update_inode(ROOT_INO, |r| r.opens = root_opens)?;
    }
    if s.inode(ROOT_INO)?.is_none() {
        return Err(FsError::Invalid.into());
    }
    Ok(Response::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Op;
    use crate::digest::digest;
    use crate::testkit::Ns;

    #[test]
    fn dump_load_dump_is_identical_and_sessions_are_left_out() {
        let mut ns = Ns::new();
        let root = ns.root();
        let d = ns.mkdir(root, "d");
        ns.mkdir(d, "e");
        let (first, sum) = dump(&ns.store).unwrap();
        assert_eq!(sum.inodes, 3);
        assert_eq!(inspect(&first).unwrap(), sum);

        let mut fresh = Ns::new();
        let loaded = fresh.sys(Op::LoadImage {
            image: first.clone(),
        });
        assert_eq!(loaded, Ok(Response::Done));
        let (second, _) = dump(&fresh.store).unwrap();
        assert_eq!(first, second);
        assert_eq!(fresh.names(root), vec!["d"]);
        // The fresh namespace's own session survives the load.
        assert!(fresh.store.session(fresh.session).unwrap().is_some());

        // A second load is refused: the namespace is no longer empty.
        assert_eq!(
            fresh.sys(Op::LoadImage {
                image: first.clone()
            }),
            Err(FsError::NotEmpty)
        );
        let before = digest(&fresh.store).unwrap();
        let mut bad = first;
        let n = bad.len();
        bad[n / 2] ^= 1;
        assert!(inspect(&bad).is_err());
        assert_eq!(digest(&fresh.store).unwrap(), before);
    }

    #[test]
    fn a_file_unlinked_while_open_is_left_out_as_if_closed() {
        let unlink = |ns: &mut Ns, root| {
            ns.cmd(Op::Unlink {
                parent: root,
                name: "f".into(),
            })
            .unwrap();
        };
        let mut open = Ns::new();
        let root = open.root();
        let f = open.create(root, "f");
        open.create(root, "g");
        open.cmd(Op::Open { ino: f }).unwrap();
        unlink(&mut open, root);
        assert!(open.store.inode(f).unwrap().is_some(), "kept while open");

        let mut closed = Ns::new();
        let f = closed.create(root, "f");
        closed.create(root, "g");
        closed.cmd(Op::Open { ino: f }).unwrap();
        unlink(&mut closed, root);
        closed.cmd(Op::Release { ino: f }).unwrap();
        assert!(closed.store.inode(f).unwrap().is_none());

        assert_eq!(dump(&open.store).unwrap(), dump(&closed.store).unwrap());
    }
}
