//! A per-command write buffer over a read-only store.
//!
//! Commands check their preconditions as they go, and some (rename, truncate) only discover a
//! POSIX error after deciding on earlier steps. Buffering every write and flushing only when
//! the command succeeds makes "a failed command changes nothing" true by construction instead
//! of by careful ordering in every handler.

use super::store::{Entry, Store, StoreRead, Table};
use crate::error::NamespaceError;
use std::collections::BTreeMap;

/// Pending writes of one command; `None` is a delete.
#[derive(Debug)]
pub(crate) struct Overlay<'a, S: ?Sized> {
    base: &'a S,
    writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

/// The writes an overlay collected, to be flushed into the real store.
pub(crate) type Writes = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

impl<'a, S: StoreRead + ?Sized> Overlay<'a, S> {
    pub(crate) fn new(base: &'a S) -> Self {
        Overlay {
            base,
            writes: BTreeMap::new(),
        }
    }

    pub(crate) fn into_writes(self) -> Writes {
        self.writes
    }
}

/// Applies collected writes to the real store.
pub(crate) fn flush<S: Store + ?Sized>(
    store: &mut S,
    writes: Writes,
) -> Result<(), NamespaceError> {
    for ((table, key), value) in writes {
        match value {
            Some(v) => store.put(table, &key, &v)?,
            None => store.delete(table, &key)?,
        }
    }
    Ok(())
}

impl<S: StoreRead + ?Sized> StoreRead for Overlay<'_, S> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, NamespaceError> {
        match self.writes.get(&(table, key.to_vec())) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(table, key),
        }
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, NamespaceError> {
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .writes
            .range((table, start.to_vec())..)
            .take_while(|((t, k), _)| *t == table && end.is_none_or(|e| k.as_slice() < e))
            .map(|((_, k), v)| (k, v))
            .collect();
        // Each pending delete can hide at most one base entry, so fetching that many extra
        // base entries guarantees the first `limit` merged entries are all known.
        let deletes = pending.iter().filter(|(_, v)| v.is_none()).count();
        let base = self
            .base
            .scan(table, start, end, limit.saturating_add(deletes))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (k, v) in pending {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

impl<S: StoreRead + ?Sized> Store for Overlay<'_, S> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), NamespaceError> {
        self.writes
            .insert((table, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), NamespaceError> {
        self.writes.insert((table, key.to_vec()), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn keys(entries: Vec<Entry>) -> Vec<u8> {
        entries.into_iter().map(|(k, _)| k[0]).collect()
    }

    #[test]
    fn scan_merges_puts_and_deletes_under_a_limit() {
        let mut base = MemStore::new();
        for k in 1u8..=6 {
            base.put(Table::Xattrs, &[k], b"base").unwrap();
        }
        let mut o = Overlay::new(&base);
        o.delete(Table::Xattrs, &[1]).unwrap();
        o.delete(Table::Xattrs, &[2]).unwrap();
        o.put(Table::Xattrs, &[4], b"new").unwrap();
        o.put(Table::Xattrs, &[9], b"new").unwrap();
        o.put(Table::Inodes, &[3], b"other table").unwrap();
        assert_eq!(
            keys(o.scan(Table::Xattrs, &[0], None, 2).unwrap()),
            vec![3, 4]
        );
        assert_eq!(
            keys(o.scan(Table::Xattrs, &[0], None, 100).unwrap()),
            vec![3, 4, 5, 6, 9]
        );
        assert_eq!(
            keys(o.scan(Table::Xattrs, &[2], Some(&[6]), 100).unwrap()),
            vec![3, 4, 5]
        );
        assert_eq!(o.get(Table::Xattrs, &[4]).unwrap().unwrap(), b"new");
        assert_eq!(o.get(Table::Xattrs, &[1]).unwrap(), None);
        assert_eq!(o.get(Table::Xattrs, &[5]).unwrap().unwrap(), b"base");
    }

    #[test]
    fn flush_applies_writes() {
        let mut base = MemStore::new();
        base.put(Table::Inodes, &[1], b"a").unwrap();
        let writes = {
            let mut o = Overlay::new(&base);
            o.delete(Table::Inodes, &[1]).unwrap();
            o.put(Table::Inodes, &[2], b"b").unwrap();
            o.into_writes()
        };
        flush(&mut base, writes).unwrap();
        assert_eq!(base.get(Table::Inodes, &[1]).unwrap(), None);
        assert_eq!(base.get(Table::Inodes, &[2]).unwrap().unwrap(), b"b");
    }
}
