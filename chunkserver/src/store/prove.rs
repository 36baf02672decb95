//! Proofs for ranged reads: the bytes of a range plus what a reader needs to check them
//! against the shard id with no trust in this server (see `tessera_proto::proof`).
//!
//! Nothing new is stored for this: the hash list every shard file of more than one block
//! already holds (`verify.rs`) gives the chaining value of every subtree made of whole 64 KiB
//! blocks, and the few subtrees smaller than a block that a proof needs lie beside the range
//! in the blocks read to serve it anyway, so they are hashed from memory. So shard files
//! written before proofs existed serve proofs as they are.
//!
//! The same walk also checks the served bytes: it yields the root that the range's bytes and
//! the proof give, and the caller compares it with the id (after checking the list against
//! the id, so a mismatch is known to be the data's). Every byte read is hashed once, inside
//! the range or in a sibling subtree, which is what the old block check cost.

use std::ops::Range;

use tessera_proto::proof::{self, Cv, Subtree, Subtrees};

use super::ShardId;
use super::verify::{BLOCK_LEN, CV_LEN, list_cv};

/// A shard of more than one block, seen through its hash list and the whole blocks
/// `blocks_from ..` that a read loaded.
pub(super) struct ListedShard<'a> {
    pub len: u64,
    /// The verified hash list.
    pub list: &'a [u8],
    /// Offset of the first byte of `blocks` (a block boundary).
    pub blocks_from: u64,
    pub blocks: &'a [u8],
}

/// A walk's failure: a subtree it needed is neither whole blocks nor in the loaded blocks.
/// Only a bug in the caller's choice of blocks gets here.
#[derive(Debug)]
pub(super) struct NotLoaded(pub Subtree);

impl ListedShard<'_> {
    /// The root that bytes `span` and the proof give, and the proof. `span` must be a proof
    /// span (`proof::span_of`) inside the loaded blocks.
    pub fn prove(&self, span: &Range<u64>) -> Result<(Option<ShardId>, Vec<Cv>), NotLoaded> {
        let mut walk = Walk {
            shard: self,
            proof: Vec::new(),
        };
        let root = proof::root(self.len, span, &mut walk)?;
        Ok((root, walk.proof))
    }

    fn loaded(&self, t: Subtree) -> Result<&[u8], NotLoaded> {
        let at = t.offset.checked_sub(self.blocks_from).ok_or(NotLoaded(t))? as usize;
        self.blocks.get(at..at + t.len as usize).ok_or(NotLoaded(t))
    }

    fn hashed(&self, t: Subtree) -> Result<Cv, NotLoaded> {
        Ok(proof::subtree_cv(t.offset, self.loaded(t)?))
    }
}

struct Walk<'a, 'b> {
    shard: &'b ListedShard<'a>,
    proof: Vec<Cv>,
}

impl Subtrees for Walk<'_, '_> {
    type Error = NotLoaded;

    fn outside(&mut self, t: Subtree) -> Result<Cv, NotLoaded> {
        let s = self.shard;
        let block = BLOCK_LEN as u64;
        // Whole blocks (the last one may be short): straight from the list.
        let cv = if t.offset.is_multiple_of(block) && (t.len >= block || t.end() == s.len) {
            let first = (t.offset / block) as usize * CV_LEN;
            let last = t.end().div_ceil(block) as usize * CV_LEN;
            let part = s.list.get(first..last).ok_or(NotLoaded(t))?;
            list_cv(part, t.len)
        } else {
            s.hashed(t)?
        };
        self.proof.push(cv);
        Ok(cv)
    }

    fn inside(&mut self, t: Subtree) -> Result<Cv, NotLoaded> {
        self.shard.hashed(t)
    }

    fn whole(&mut self) -> Result<ShardId, NotLoaded> {
        let s = self.shard;
        let all = Subtree {
            offset: 0,
            len: s.len,
        };
        Ok(ShardId::of(s.loaded(all)?))
    }
}
