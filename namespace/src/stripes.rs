//! The stripe table beyond one file's data: walking it for health checks, repair and fsck,
//! moving a repaired shard, and recounting references.

use super::codec::decode;
use super::command::Response;
use super::records::{ChunkRec, StripeRec, StripeState};
use super::state::{OpResult, Tables, TablesMut, keys};
use super::store::{Store, StoreRead, Table};
use crate::error::NamespaceError;
use std::collections::BTreeMap;
use tessera_proto::fs::{FsError, StripeId, StripeInfo, StripeLayout};
use tessera_proto::meta::{RefcountMismatch, StripeEntry};

/// One page of a walk over the stripe table.
#[derive(Debug, Default)]
pub struct StripePage {
    pub stripes: Vec<(StripeId, StripeLayout)>,
    /// Pass as `after` for the next page; `None` once the table is exhausted.
    pub next: Option<StripeId>,
}

/// Live stripes among the next `limit` rows after `after` (exclusive), in id order, with
/// their layouts. Stripes being deleted by GC are skipped: nothing reads them any more.
pub fn live_stripes<S: StoreRead + ?Sized>(
    s: &S,
    after: Option<&StripeId>,
    limit: usize,
) -> Result<StripePage, NamespaceError> {
    scan_stripes(s, after, limit, false)
}

/// Like [`live_stripes`] but including stripes being deleted: every shard place that is
/// still recorded, for GC and the orphan sweep.
pub fn all_stripes<S: StoreRead + ?Sized>(
    s: &S,
    after: Option<&StripeId>,
    limit: usize,
) -> Result<StripePage, NamespaceError> {
    scan_stripes(s, after, limit, true)
}

fn scan_stripes<S: StoreRead + ?Sized>(
    s: &S,
    after: Option<&StripeId>,
    limit: usize,
    deleting_too: bool,
) -> Result<StripePage, NamespaceError> {
    let mut page = StripePage::default();
    let rows = s.scan(Table::Stripes, &start_after(after), None, limit.max(1))?;
    let full = rows.len() >= limit.max(1);
    let mut last = None;
    for (key, value) in rows {
        let rec: StripeRec = decode(Table::Stripes, &key, &value)?;
        let id = stripe_key(&key)?;
        last = Some(id);
        if deleting_too || rec.state == StripeState::Live {
            page.stripes.push((id, rec.layout));
        }
    }
    page.next = if full { last } else { None };
    Ok(page)
}

/// `MoveShard`: records that shard `index` of a stripe now lives on `to`. `ESTALE` unless it
/// is still recorded on `from` (another repair or a GC got there first), `ENOENT` for an
/// unknown stripe, `EINVAL` for a bad index or a move onto a server that already holds
/// another shard of the stripe (the stripe would no longer survive that server's loss).
pub(crate) fn move_shard<S: Store + ?Sized>(
    s: &mut S,
    id: &StripeId,
    index: u32,
    from: u64,
    to: u64,
) -> OpResult<Response> {
    let mut rec = s.stripe(id)?.ok_or(FsError::NotFound)?;
    if rec.state != StripeState::Live {
        return Err(FsError::Stale.into());
    }
    let index = index as usize;
    let Some(place) = rec.layout.shards.get(index) else {
        return Err(FsError::Invalid.into());
    };
    if place.server != from {
        return Err(FsError::Stale.into());
    }
    let elsewhere = rec
        .layout
        .shards
        .iter()
        .enumerate()
        .any(|(i, p)| i != index && p.server == to);
    if elsewhere {
        return Err(FsError::Invalid.into());
    }
    rec.layout.shards[index].server = to;
    s.put_rec(Table::Stripes, &keys::stripe(id), &rec)?;
    Ok(Response::Done)
}

/// `Query::Stripes`: a page of stripe rows, live and deleting, with refcounts.
pub(crate) fn list<S: StoreRead + ?Sized>(
    s: &S,
    after: Option<&StripeId>,
    limit: u32,
) -> OpResult<Response> {
    let mut out = Vec::new();
    for (key, value) in s.scan(Table::Stripes, &start_after(after), None, limit as usize)? {
        let rec: StripeRec = decode(Table::Stripes, &key, &value)?;
        out.push(StripeEntry {
            stripe: StripeInfo {
                id: stripe_key(&key)?,
                layout: rec.layout,
            },
            refcount: rec.refcount,
            deleting: rec.state == StripeState::Deleting,
        });
    }
    Ok(Response::Stripes(out))
}

/// `Query::RefcountCheck`: counts the slices naming each stripe across every file and
/// compares with the stripe rows. Reads the whole chunk and stripe tables: an fsck tool.
pub(crate) fn refcount_check<S: StoreRead + ?Sized>(s: &S, limit: u32) -> OpResult<Response> {
    let mut counted: BTreeMap<StripeId, u64> = BTreeMap::new();
    for (key, value) in s.scan(Table::Chunks, &[], None, usize::MAX)? {
        let chunk: ChunkRec = decode(Table::Chunks, &key, &value)?;
        for r in chunk.slices.iter().filter_map(|sl| sl.data) {
            *counted.entry(r.stripe).or_default() += 1;
        }
    }
    let mut out = Vec::new();
    for (key, value) in s.scan(Table::Stripes, &[], None, usize::MAX)? {
        let rec: StripeRec = decode(Table::Stripes, &key, &value)?;
        let id = stripe_key(&key)?;
        let found = counted.remove(&id).unwrap_or(0);
        if found != rec.refcount {
            out.push(RefcountMismatch {
                stripe: id,
                recorded: Some(rec.refcount),
                counted: found,
            });
        }
    }
    out.extend(
        counted
            .into_iter()
            .map(|(stripe, counted)| RefcountMismatch {
                stripe,
                recorded: None,
                counted,
            }),
    );
    out.truncate(limit as usize);
    Ok(Response::RefcountMismatches(out))
}

/// The smallest stripe-table key after `after`.
fn start_after(after: Option<&StripeId>) -> Vec<u8> {
    match after {
        Some(id) => {
            let mut k = id.0.to_vec();
            k.push(0);
            k
        }
        None => Vec::new(),
    }
}

fn stripe_key(key: &[u8]) -> Result<StripeId, NamespaceError> {
    <[u8; 32]>::try_from(key)
        .map(StripeId)
        .map_err(|_| NamespaceError::Corrupt {
            table: Table::Stripes,
            key: format!("{key:02x?}"),
            reason: "stripe key is not 32 bytes".into(),
        })
}
