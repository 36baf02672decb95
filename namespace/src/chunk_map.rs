//! The slices of one chunk as disjoint runs, so a commit lays new slices over old ones
//! instead of appending to an ever longer list.
//!
//! Reads resolve every byte to the newest slice covering it. Laying a slice over a chunk
//! trims the parts of older slices it covers (an older slice cut in two leaves two pieces,
//! each naming the stripe), so afterwards no two slices overlap: the record's size is
//! bounded by the number of distinct runs in the chunk, not by the number of writes, and
//! reads see exactly the same bytes. Every slice holds one reference to its stripe, so each
//! dropped piece gives one up and each extra piece of a split takes one.

use std::collections::BTreeMap;
use tessera_proto::fs::{Slice, StripeId, StripeRef};

/// Stripe references a lay-over gained (split pieces) and lost (slices fully covered).
#[derive(Debug, Default)]
pub(crate) struct RefChanges {
    pub gained: Vec<StripeId>,
    pub lost: Vec<Slice>,
}

/// The runs of one chunk by offset, disjoint.
#[derive(Debug, Default)]
pub(crate) struct ChunkMap {
    runs: BTreeMap<u64, Slice>,
}

/// Bytes `from..to` (within the chunk) of `s`, which covers them.
fn piece(s: &Slice, from: u64, to: u64) -> Slice {
    Slice {
        offset: from,
        len: to - from,
        data: s.data.map(|r| StripeRef {
            stripe: r.stripe,
            offset: r.offset + (from - s.offset),
        }),
    }
}

impl ChunkMap {
    /// The map of a stored slice list. Lists written since commits lay slices over are
    /// sorted and disjoint; older ones (in commit order, possibly overlapping) are flattened
    /// by laying each slice over the ones before it, with the reference changes that takes.
    pub(crate) fn from_slices(slices: Vec<Slice>, changes: &mut RefChanges) -> Self {
        let mut map = Self::default();
        if slices.windows(2).all(|w| w[0].end() <= w[1].offset) {
            map.runs = slices.into_iter().map(|s| (s.offset, s)).collect();
        } else {
            for s in slices {
                map.lay(s, changes);
            }
        }
        map
    }

    /// Lays `new` (non-empty) over the runs it overlaps.
    pub(crate) fn lay(&mut self, new: Slice, changes: &mut RefChanges) {
        let (a, b) = (new.offset, new.end());
        // A run starting before `a` that reaches into the new slice keeps its head, and its
        // tail too if it reaches past the new slice (then it is split in two).
        let before = self.runs.range(..a).next_back().map(|(_, s)| *s);
        if let Some(s) = before
            && s.end() > a
        {
            self.runs.insert(s.offset, piece(&s, s.offset, a));
            if s.end() > b {
                self.runs.insert(b, piece(&s, b, s.end()));
                if let Some(r) = s.data {
                    changes.gained.push(r.stripe);
                }
            }
        }
        // Runs starting inside the new slice: dropped, or cut to their part past it.
        let inside: Vec<u64> = self.runs.range(a..b).map(|(k, _)| *k).collect();
        for k in inside {
            let Some(s) = self.runs.remove(&k) else {
                continue;
            };
            if s.end() > b {
                self.runs.insert(b, piece(&s, b, s.end()));
            } else {
                changes.lost.push(s);
            }
        }
        self.runs.insert(a, new);
        // The new run now sits between neighbours it does not overlap.
        debug_assert!(
            self.runs
                .range(..a)
                .next_back()
                .is_none_or(|(_, s)| s.end() <= a)
                && self.runs.range(a + 1..).next().is_none_or(|(k, _)| b <= *k),
            "laying {new:?} left overlapping runs"
        );
    }

    /// A copy of the runs in offset order.
    pub(crate) fn to_slices(&self) -> Vec<Slice> {
        self.runs.values().copied().collect()
    }

    /// The runs in offset order.
    pub(crate) fn into_slices(self) -> Vec<Slice> {
        self.runs.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sl(offset: u64, len: u64, stripe: u8, at: u64) -> Slice {
        Slice {
            offset,
            len,
            data: Some(StripeRef {
                stripe: StripeId([stripe; 32]),
                offset: at,
            }),
        }
    }

    /// The stripe byte each chunk byte `0..n` reads, newest slice first (None: zero).
    fn bytes(slices: &[Slice], n: u64) -> Vec<Option<(u8, u64)>> {
        (0..n)
            .map(|x| {
                slices
                    .iter()
                    .rev()
                    .find(|s| s.offset <= x && x < s.end())
                    .and_then(|s| s.data.map(|r| (r.stripe.0[0], r.offset + x - s.offset)))
            })
            .collect()
    }

    #[test]
    fn laying_over_keeps_every_byte_and_counts_references() {
        let old = vec![sl(0, 10, 1, 0), sl(10, 10, 2, 100), sl(30, 10, 3, 0)];
        let mut ch = RefChanges::default();
        let mut m = ChunkMap::from_slices(old.clone(), &mut ch);
        let mut all = old;
        // Inside one run (split), then across two runs, then covering one whole.
        for new in [sl(2, 3, 4, 0), sl(8, 4, 5, 0), sl(29, 12, 6, 0)] {
            m.lay(new, &mut ch);
            all.push(new);
        }
        let got = m.into_slices();
        assert!(got.windows(2).all(|w| w[0].end() <= w[1].offset));
        assert_eq!(bytes(&got, 45), bytes(&all, 45));
        assert_eq!(ch.gained, vec![StripeId([1; 32])]);
        assert_eq!(
            ch.lost.iter().map(|s| s.offset).collect::<Vec<_>>(),
            vec![30]
        );
    }

    #[test]
    fn overlapping_lists_are_flattened() {
        let old = vec![
            sl(0, 20, 1, 0),
            sl(5, 5, 2, 0),
            sl(0, 3, 3, 0),
            sl(0, 20, 4, 0),
        ];
        let mut ch = RefChanges::default();
        let got = ChunkMap::from_slices(old.clone(), &mut ch).into_slices();
        assert_eq!(bytes(&got, 25), bytes(&old, 25));
        assert_eq!(got.len(), 1);
        // Slice 1 was split (one more reference), then every piece but slice 4 was covered.
        assert_eq!(ch.gained.len(), 1);
        assert_eq!(ch.lost.len(), 4);
    }
}
