//! Range proofs: a byte range of a shard checked against the shard's id alone.
//!
//! A shard id is the plain BLAKE3 hash of the shard, and BLAKE3 is a tree hash: the data is
//! cut into 1 KiB chunks, and every parent node hashes the chaining values (CVs) of its two
//! children, the left one always the largest power-of-two number of chunks that leaves
//! something on the right. So a reader holding bytes `span` of a shard of `len` bytes can
//! recompute the root from those bytes plus the CVs of the subtrees that lie wholly outside
//! `span` (at most two per tree level: about 20 for a 1 MiB shard), and compare it with the
//! id it got from the metadata service. This is Bao's verified streaming without Bao's
//! encoding: the tree is BLAKE3's own, so ids did not change.
//!
//! A span must start on a chunk boundary and end on one or at the end of the shard
//! ([`span_of`] widens any range so). The CVs of the outside subtrees are listed left to
//! right, in the order [`root`] meets them; a server builds the list with the same walk that
//! a reader uses to check it, so both sides agree on the order by construction.
//!
//! Uses `blake3::hazmat`, whose functions panic on a misshapen tree: every subtree here comes
//! from splitting the whole shard with [`left_subtree_len`], and [`root`] refuses a span that
//! is not chunk-aligned before it splits anything.

use std::ops::Range;

use blake3::Hasher;
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use thiserror::Error;

use crate::shard::ShardId;

/// BLAKE3's chunk: the smallest piece a proof can cover.
pub const CHUNK_LEN: u64 = 1024;
/// Length of one chaining value.
pub const CV_LEN: usize = 32;

/// One chaining value of a proof.
pub type Cv = ChainingValue;

/// A complete subtree of a shard's BLAKE3 tree: bytes `offset .. offset + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subtree {
    pub offset: u64,
    pub len: u64,
}

impl Subtree {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }

    /// Its two children. Only for a subtree of more than one chunk.
    fn split(self) -> (Subtree, Subtree) {
        let left = left_subtree_len(self.len);
        (
            Subtree {
                offset: self.offset,
                len: left,
            },
            Subtree {
                offset: self.offset + left,
                len: self.len - left,
            },
        )
    }

    fn range(&self) -> Range<usize> {
        self.offset as usize..self.end() as usize
    }
}

/// The chaining value of `bytes` as the subtree that starts at `offset` (never the root).
pub fn subtree_cv(offset: u64, bytes: &[u8]) -> Cv {
    Hasher::new()
        .set_input_offset(offset)
        .update(bytes)
        .finalize_non_root()
}

/// Merges two sibling CVs into their parent's (never the root).
pub fn parent_cv(left: &Cv, right: &Cv) -> Cv {
    merge_subtrees_non_root(left, right, Mode::Hash)
}

/// Merges the root's two children into the root hash.
pub fn root_of(left: &Cv, right: &Cv) -> ShardId {
    ShardId(*merge_subtrees_root(left, right, Mode::Hash).as_bytes())
}

/// `range` of a shard of `len` bytes widened to whole multiples of `align` (a power of two,
/// at least [`CHUNK_LEN`]), the end capped at `len`. `range` must lie within `0..len`; an
/// empty range stays empty.
pub fn widen(range: &Range<u64>, len: u64, align: u64) -> Range<u64> {
    debug_assert!(align.is_power_of_two() && align >= CHUNK_LEN);
    if range.is_empty() {
        return range.clone();
    }
    let start = range.start / align * align;
    let end = range
        .end
        .div_ceil(align)
        .saturating_mul(align)
        .min(len)
        .max(start);
    start..end
}

/// The span a proof of `range` covers: `range` widened to whole chunks.
pub fn span_of(range: &Range<u64>, len: u64) -> Range<u64> {
    widen(range, len, CHUNK_LEN)
}

/// Whether `span` is one a proof can cover in a shard of `len` bytes: non-empty, inside the
/// shard, starting on a chunk boundary and ending on one or at the end.
pub fn is_span(span: &Range<u64>, len: u64) -> bool {
    span.start < span.end
        && span.end <= len
        && span.start.is_multiple_of(CHUNK_LEN)
        && (span.end.is_multiple_of(CHUNK_LEN) || span.end == len)
}

/// What a walk over the tree asks of its caller.
pub trait Subtrees {
    type Error;
    /// The CV of `t`, which lies wholly outside the span: a prover computes it (and adds it
    /// to the proof), a checker takes the next one from the proof.
    fn outside(&mut self, t: Subtree) -> Result<Cv, Self::Error>;
    /// The CV of `t`, which lies wholly inside the span: both sides hash the span's bytes.
    fn inside(&mut self, t: Subtree) -> Result<Cv, Self::Error>;
    /// The hash of the whole shard, when the span is all of it (then there is no proof).
    fn whole(&mut self) -> Result<ShardId, Self::Error>;
}

/// The root hash that `span`'s bytes and the outside subtrees give, visiting the outside
/// subtrees left to right. `None` if `span` is not a span of a `len`-byte shard
/// ([`is_span`]).
pub fn root<S: Subtrees>(
    len: u64,
    span: &Range<u64>,
    s: &mut S,
) -> Result<Option<ShardId>, S::Error> {
    if !is_span(span, len) {
        return Ok(None);
    }
    if span.start == 0 && span.end == len {
        return s.whole().map(Some);
    }
    // Not the whole shard, so it has more than one chunk and the root has two children.
    let (l, r) = Subtree { offset: 0, len }.split();
    let left = node(l, span, s)?;
    let right = node(r, span, s)?;
    Ok(Some(root_of(&left, &right)))
}

fn node<S: Subtrees>(t: Subtree, span: &Range<u64>, s: &mut S) -> Result<Cv, S::Error> {
    if t.end() <= span.start || t.offset >= span.end {
        return s.outside(t);
    }
    if span.start <= t.offset && t.end() <= span.end {
        return s.inside(t);
    }
    // Partly inside: more than one chunk, since the span's ends are chunk boundaries.
    let (l, r) = t.split();
    let left = node(l, span, s)?;
    let right = node(r, span, s)?;
    Ok(parent_cv(&left, &right))
}

/// Why bytes and a proof did not check out against a shard id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The span asked about is not chunk-aligned or not inside the shard (a caller's bug).
    #[error("{start}..{end} is not a chunk-aligned span of a {len}-byte shard")]
    BadSpan { start: u64, end: u64, len: u64 },
    /// Not as many bytes as the span holds.
    #[error("{got} bytes for a span of {want}")]
    WrongLength { got: u64, want: u64 },
    /// Fewer or more chaining values than the span's proof has.
    #[error("the proof has {got} chaining values where {want} were expected")]
    WrongProofLength { got: usize, want: usize },
    /// The bytes and the proof hash to another root.
    #[error("bytes and proof hash to {got}, not to the shard's id")]
    WrongRoot { got: ShardId },
}

/// How many chaining values the proof of `span` holds (0 for a bad span).
pub fn proof_len(len: u64, span: &Range<u64>) -> usize {
    struct Count(usize);
    impl Subtrees for Count {
        type Error = std::convert::Infallible;
        fn outside(&mut self, _: Subtree) -> Result<Cv, Self::Error> {
            self.0 += 1;
            Ok([0; CV_LEN])
        }
        fn inside(&mut self, _: Subtree) -> Result<Cv, Self::Error> {
            Ok([0; CV_LEN])
        }
        fn whole(&mut self) -> Result<ShardId, Self::Error> {
            Ok(ShardId([0; 32]))
        }
    }
    let mut c = Count(0);
    let Ok(_) = root(len, span, &mut c);
    c.0
}

/// Checks that `bytes` are bytes `span` of the shard `id` of `len` bytes, given the CVs of
/// the subtrees outside the span (`proof`, left to right).
pub fn verify(
    id: &ShardId,
    len: u64,
    span: &Range<u64>,
    bytes: &[u8],
    proof: &[Cv],
) -> Result<(), ProofError> {
    if !is_span(span, len) {
        return Err(ProofError::BadSpan {
            start: span.start,
            end: span.end,
            len,
        });
    }
    let want = span.end - span.start;
    if bytes.len() as u64 != want {
        return Err(ProofError::WrongLength {
            got: bytes.len() as u64,
            want,
        });
    }
    let want = proof_len(len, span);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let mut check = Check {
        base: span.start,
        bytes,
        proof: proof.iter(),
    };
    let Ok(Some(got)) = root(len, span, &mut check) else {
        // Counted above: the walk takes exactly `want` CVs.
        return Err(ProofError::WrongProofLength { got: 0, want });
    };
    if got != *id {
        return Err(ProofError::WrongRoot { got });
    }
    Ok(())
}

struct Check<'a> {
    base: u64,
    bytes: &'a [u8],
    proof: std::slice::Iter<'a, Cv>,
}

impl Subtrees for Check<'_> {
    type Error = ();
    fn outside(&mut self, _: Subtree) -> Result<Cv, ()> {
        self.proof.next().copied().ok_or(())
    }
    fn inside(&mut self, t: Subtree) -> Result<Cv, ()> {
        let at = (t.offset - self.base) as usize;
        Ok(subtree_cv(t.offset, &self.bytes[at..at + t.len as usize]))
    }
    fn whole(&mut self) -> Result<ShardId, ()> {
        Ok(ShardId::of(self.bytes))
    }
}

/// Proves `span` of a shard held whole in memory: returns the root the data hashes to (the
/// caller compares it with the id it stores the data under) and the proof. One pass over
/// `data`: every byte is hashed once, inside the span or in an outside subtree.
/// `None` for a bad span.
pub fn prove(data: &[u8], span: &Range<u64>) -> Option<(ShardId, Vec<Cv>)> {
    let mut p = InMemory {
        data,
        proof: Vec::new(),
    };
    let Ok(root) = root(data.len() as u64, span, &mut p);
    root.map(|r| (r, p.proof))
}

struct InMemory<'a> {
    data: &'a [u8],
    proof: Vec<Cv>,
}

impl Subtrees for InMemory<'_> {
    type Error = std::convert::Infallible;
    fn outside(&mut self, t: Subtree) -> Result<Cv, Self::Error> {
        let cv = subtree_cv(t.offset, &self.data[t.range()]);
        self.proof.push(cv);
        Ok(cv)
    }
    fn inside(&mut self, t: Subtree) -> Result<Cv, Self::Error> {
        Ok(subtree_cv(t.offset, &self.data[t.range()]))
    }
    fn whole(&mut self) -> Result<ShardId, Self::Error> {
        Ok(ShardId::of(self.data))
    }
}

#[cfg(test)]
mod tests;
