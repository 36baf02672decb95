//! Walking the stripe table, for health checks and (later) repair: the layout of every stripe
//! a file may still read.

use super::codec::decode;
use super::records::{StripeRec, StripeState};
use super::store::{StoreRead, Table};
use crate::error::MetaError;
use tessera_proto::fs::{StripeId, StripeLayout};

/// Up to `limit` live stripes after `after` (exclusive), in id order, with their layouts.
/// Stripes being deleted by GC are skipped: nothing reads them any more.
pub fn live_stripes<S: StoreRead + ?Sized>(
    s: &S,
    after: Option<&StripeId>,
    limit: usize,
) -> Result<Vec<(StripeId, StripeLayout)>, MetaError> {
    let start = match after {
        // The smallest key after `after`.
        Some(id) => {
            let mut k = id.0.to_vec();
            k.push(0);
            k
        }
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (key, value) in s.scan(Table::Stripes, &start, None, limit)? {
        let rec: StripeRec = decode(Table::Stripes, &key, &value)?;
        let Ok(id) = <[u8; 32]>::try_from(key.as_slice()) else {
            return Err(MetaError::Corrupt {
                table: Table::Stripes,
                key: format!("{key:02x?}"),
                reason: "stripe key is not 32 bytes".into(),
            });
        };
        if rec.state == StripeState::Live {
            out.push((StripeId(id), rec.layout));
        }
    }
    Ok(out)
}
