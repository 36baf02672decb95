//! The paged inventory walk: shards in id order, resuming after a cursor id.
//!
//! The fan-out tree sorts the same way as the ids (lowercase hex), so a page reads only the
//! directories at and after the cursor, and needs no index beside the files themselves.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::layout::{Layout, hex_names};
use super::{ListPage, ShardId, ShardInfo};

/// Up to `limit` shards with ids strictly after `after`.
pub(super) fn list_page(
    layout: &Layout,
    after: Option<&ShardId>,
    limit: usize,
) -> io::Result<ListPage> {
    let mut page = ListPage::default();
    if limit == 0 {
        page.next = after.copied();
        return Ok(page);
    }
    let cursor = after.map(ToString::to_string);
    let c_leaf = cursor.as_ref().map_or("", |c| &c[0..2]);
    let now = SystemTime::now();
    for leaf in hex_names(&layout.shards, 2)? {
        if leaf.as_str() < c_leaf {
            continue;
        }
        let leaf_path = layout.shards.join(&leaf);
        for name in hex_names(&leaf_path, ShardId::HEX_LEN)? {
            if !name.starts_with(&leaf) || cursor.as_ref().is_some_and(|c| &name <= c) {
                continue;
            }
            let Some(age) = age_of(&leaf_path.join(&name), now)? else {
                continue; // deleted since the directory was read
            };
            let Ok(id) = name.parse::<ShardId>() else {
                continue;
            };
            page.shards.push(ShardInfo { id, age });
            if page.shards.len() == limit {
                page.next = Some(id);
                return Ok(page);
            }
        }
    }
    Ok(page)
}

/// Time since the file's mtime (zero if the clock is behind it); `None` if it is gone.
pub(super) fn age_of(path: &Path, now: SystemTime) -> io::Result<Option<std::time::Duration>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(now.duration_since(m.modified()?).unwrap_or_default())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
