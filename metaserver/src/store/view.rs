//! The namespace's store traits over redb tables: [`WriteView`] inside a write transaction
//! (what `apply` writes through), [`RedbView`] over a read transaction (queries, digests,
//! dumps, snapshot images).

use super::{Bytes, def, storage};
use redb::ReadableTable;
use std::ops::Bound;
use tessera_namespace::{Entry, NamespaceError, Store, StoreRead, Table};

fn get_from(
    t: &impl ReadableTable<Bytes, Bytes>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, NamespaceError> {
    Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
}

pub(super) fn scan_from(
    t: &impl ReadableTable<Bytes, Bytes>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, NamespaceError> {
    if end.is_some_and(|e| e <= start) {
        return Ok(Vec::new());
    }
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let range = t
        .range::<&[u8]>((Bound::Included(start), upper))
        .map_err(storage)?;
    let mut out = Vec::new();
    for item in range.take(limit) {
        let (k, v) = item.map_err(storage)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

/// The namespace tables of one redb transaction, indexed like `Table::ALL`: over a write
/// transaction's tables (`WriteView`, what `apply` writes through) or a read
/// transaction's ([`RedbView`]).
pub struct View<T> {
    pub(super) tables: Vec<T>,
}

/// The open tables of a write transaction.
pub(super) type WriteView<'txn> = View<redb::Table<'txn, Bytes, Bytes>>;

/// A read-only snapshot of the namespace; owns its read transaction, so it is `Send` and may
/// outlive later applies.
pub type RedbView = View<redb::ReadOnlyTable<Bytes, Bytes>>;

impl<'txn> WriteView<'txn> {
    pub(super) fn open(
        txn: &'txn redb::WriteTransaction,
    ) -> Result<WriteView<'txn>, NamespaceError> {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(def(table)).map_err(storage)?);
        }
        Ok(View { tables })
    }
}

impl RedbView {
    /// Opens every namespace table of `txn`.
    pub(super) fn open(txn: &redb::ReadTransaction) -> Result<RedbView, NamespaceError> {
        let mut tables = Vec::with_capacity(Table::ALL.len());
        for table in Table::ALL {
            tables.push(txn.open_table(def(table)).map_err(storage)?);
        }
        Ok(View { tables })
    }
}

impl<T> std::fmt::Debug for View<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").finish_non_exhaustive()
    }
}

impl<T: ReadableTable<Bytes, Bytes>> StoreRead for View<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, NamespaceError> {
        get_from(&self.tables[table as usize], key)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, NamespaceError> {
        scan_from(&self.tables[table as usize], start, end, limit)
    }
}

impl Store for WriteView<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), NamespaceError> {
        self.tables[table as usize]
            .insert(key, value)
            .map_err(storage)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), NamespaceError> {
        self.tables[table as usize].remove(key).map_err(storage)?;
        Ok(())
    }
}
