//! A BLAKE3 digest of the whole namespace state, to compare replicas (and store kinds).
//!
//! It covers every table byte for byte, in table order then key order, with each entry
//! framed by a marker byte and lengths so no two different states hash the same input.

use super::store::{StoreRead, Table};
use crate::error::NamespaceError;

/// Entries read per scan: bounds memory on a large namespace.
const PAGE: usize = 1024;

pub fn digest<S: StoreRead + ?Sized>(store: &S) -> Result<[u8; 32], NamespaceError> {
    let mut h = blake3::Hasher::new();
    for table in Table::ALL {
        h.update(table.name().as_bytes());
        let mut start = Vec::new();
        loop {
            let page = store.scan(table, &start, None, PAGE)?;
            for (k, v) in &page {
                h.update(&[1]);
                h.update(&(k.len() as u64).to_be_bytes());
                h.update(k);
                h.update(&(v.len() as u64).to_be_bytes());
                h.update(v);
            }
            match page.last() {
                Some((last, _)) if page.len() == PAGE => {
                    // The smallest key after `last`.
                    start = last.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        h.update(&[0]);
    }
    Ok(*h.finalize().as_bytes())
}
