//! Reads: which slice covers each byte (later slices win), fetched stripe by stripe.

use std::sync::Arc;

use bytes::Bytes;
use tessera_proto::fs::{CHUNK_SIZE, FileLayout, FsError, Ino, StripeId, StripeInfo};
use tessera_proto::meta::{Query, Response};

use super::{DataPath, InodeData};
use crate::error::ClientError;

/// Bytes `stripe_range` of a stripe go to `out_at` in the output.
#[derive(Debug)]
pub(super) struct Piece {
    pub out_at: usize,
    pub stripe: StripeId,
    pub start: u64,
    pub end: u64,
}

impl Piece {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

impl DataPath {
    /// Up to `len` bytes at `off`: short only at the end of the file.
    pub async fn read(
        &self,
        ino: Ino,
        data: Option<&Arc<InodeData>>,
        off: u64,
        len: u32,
    ) -> Result<Bytes, FsError> {
        let want_end = off.saturating_add(u64::from(len));
        // Buffered bytes are looked at before the layout is read: whatever a concurrent
        // flush commits in between is in the snapshot too.
        let (local_end, local) = match data {
            Some(d) => {
                let d = d.lock();
                (d.end(), d.snapshot(off, want_end))
            }
            None => (0, Vec::new()),
        };
        let layout = self.layout(ino, data, off, want_end).await?;
        let size = layout.size.max(local_end);
        let end = want_end.min(size);
        if end <= off {
            return Ok(Bytes::new());
        }
        let mut out = vec![0u8; (end - off) as usize];
        let pieces = resolve(&layout, off, end);
        if !pieces.is_empty() {
            // Only the stripes this read touches (a layout may name thousands).
            let info = |id: &StripeId| -> Option<&StripeInfo> {
                match layout.stripes.binary_search_by(|s| s.id.cmp(id)) {
                    Ok(i) => layout.stripes.get(i),
                    // Layouts list stripes in id order; anything else is searched in full.
                    Err(_) => layout.stripes.iter().find(|s| s.id == *id),
                }
            };
            let mut servers: Vec<u64> = Vec::new();
            for p in &pieces {
                if let Some(s) = info(&p.stripe) {
                    servers.extend(s.layout.shards.iter().map(|p| p.server));
                }
            }
            self.learn_addrs(servers).await?;
            let fetched = futures_util::future::try_join_all(
                pieces
                    .into_iter()
                    .map(|p| self.fetch(ino, info(&p.stripe), p)),
            )
            .await?;
            for (at, b) in fetched {
                let n = b.len().min(out.len() - at);
                out[at..at + n].copy_from_slice(&b[..n]);
            }
        }
        for (at, v) in local {
            let at = (at - off) as usize;
            if at < out.len() {
                let n = v.len().min(out.len() - at);
                out[at..at + n].copy_from_slice(&v[..n]);
            }
        }
        Ok(Bytes::from(out))
    }

    async fn fetch(
        &self,
        ino: Ino,
        info: Option<&StripeInfo>,
        p: Piece,
    ) -> Result<(usize, Bytes), ClientError> {
        let info = info.ok_or(ClientError::MissingStripe {
            ino,
            stripe: p.stripe,
        })?;
        let addrs = |id: u64| self.addr_of(id);
        let bytes = self
            .chunks
            .read(info, &addrs, p.start..p.end)
            .await
            .map_err(|e| ClientError::Read {
                ino,
                source: Box::new(e),
            })?;
        Ok((p.out_at, bytes))
    }

    /// The layout of the chunks `off..end` touches: from the open file's cache, else read
    /// and cached (a layout covers whole chunks, so sequential reads ask once per chunk).
    pub(super) async fn layout(
        &self,
        ino: Ino,
        data: Option<&Arc<InodeData>>,
        off: u64,
        end: u64,
    ) -> Result<Arc<FileLayout>, ClientError> {
        let first = off / CHUNK_SIZE;
        let last = end.saturating_sub(1).max(off) / CHUNK_SIZE;
        let generation = match data.map(|d| d.cached_layout(first, last)) {
            Some(Ok(l)) => return Ok(l),
            Some(Err(g)) => g,
            None => 0,
        };
        let q = Query::Layout { ino, first, last };
        match self
            .meta
            .read(q)
            .await
            .map_err(|e| ClientError::meta("layout", e))??
        {
            Response::Layout(l) => {
                let l = Arc::new(l);
                if let Some(d) = data {
                    d.cache_layout(generation, first, last, l.clone());
                }
                Ok(l)
            }
            other => Err(ClientError::unexpected("layout", &other)),
        }
    }
}

/// The stripe pieces that hold `off..end`, newest slice first for every byte; bytes no
/// data slice covers stay zero.
pub(super) fn resolve(layout: &FileLayout, off: u64, end: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    for chunk in &layout.chunks {
        let base = chunk.index * CHUNK_SIZE;
        let a = off.max(base);
        let b = end.min(base + CHUNK_SIZE);
        if a >= b {
            continue;
        }
        if chunk.slices.windows(2).all(|w| w[0].end() <= w[1].offset) {
            // Disjoint slices in offset order (what the metaserver keeps): find the first
            // one ending past `a` and walk on while they start before `b`.
            let (ca, cb) = (a - base, b - base);
            let first = chunk.slices.partition_point(|s| s.end() <= ca);
            for slice in chunk.slices[first..].iter().take_while(|s| s.offset < cb) {
                let (cs, ce) = (ca.max(slice.offset), cb.min(slice.end()));
                if let Some(r) = slice.data {
                    out.push(Piece {
                        out_at: (base + cs - off) as usize,
                        stripe: r.stripe,
                        start: r.offset + (cs - slice.offset),
                        end: r.offset + (ce - slice.offset),
                    });
                }
            }
            continue;
        }
        // Ranges (within the chunk) not yet claimed by a newer slice.
        let mut open: Vec<(u64, u64)> = vec![(a - base, b - base)];
        for slice in chunk.slices.iter().rev() {
            if open.is_empty() {
                break;
            }
            let mut next = Vec::with_capacity(open.len() + 1);
            for (s, e) in open {
                let (cs, ce) = (s.max(slice.offset), e.min(slice.end()));
                if cs >= ce {
                    next.push((s, e));
                    continue;
                }
                if s < cs {
                    next.push((s, cs));
                }
                if ce < e {
                    next.push((ce, e));
                }
                if let Some(r) = slice.data {
                    out.push(Piece {
                        out_at: (base + cs - off) as usize,
                        stripe: r.stripe,
                        start: r.offset + (cs - slice.offset),
                        end: r.offset + (ce - slice.offset),
                    });
                }
            }
            open = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::{ChunkLayout, Slice, StripeRef};

    fn sref(n: u8, offset: u64) -> Option<StripeRef> {
        Some(StripeRef {
            stripe: StripeId([n; 32]),
            offset,
        })
    }

    #[test]
    fn later_slices_shadow_earlier_ones() {
        let layout = FileLayout {
            size: 100,
            chunks: vec![ChunkLayout {
                index: 0,
                slices: vec![
                    Slice {
                        offset: 0,
                        len: 100,
                        data: sref(1, 0),
                    },
                    Slice {
                        offset: 10,
                        len: 10,
                        data: sref(2, 5),
                    },
                    Slice {
                        offset: 50,
                        len: 10,
                        data: None,
                    },
                ],
            }],
            stripes: vec![],
        };
        let mut got: Vec<(usize, u8, u64, u64)> = resolve(&layout, 5, 70)
            .iter()
            .map(|p| (p.out_at, p.stripe.0[0], p.start, p.end))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (0, 1, 5, 10),
                (5, 2, 5, 15),
                (15, 1, 20, 50),
                (55, 1, 60, 70)
            ]
        );
    }

    #[test]
    fn disjoint_slices_are_found_by_search() {
        let slices: Vec<Slice> = (0..100)
            .map(|i| Slice {
                offset: i * 10,
                len: if i % 3 == 0 { 5 } else { 10 },
                data: if i % 7 == 0 {
                    None
                } else {
                    sref(i as u8, 1000)
                },
            })
            .collect();
        let layout = FileLayout {
            size: 2000,
            chunks: vec![ChunkLayout { index: 0, slices }],
            stripes: vec![],
        };
        // The same answer as the general (newest-first) walk would give: every byte of
        // 95..145 from the one slice covering it, holes and gaps left out.
        let got: Vec<(usize, u8, u64, u64)> = resolve(&layout, 95, 145)
            .iter()
            .map(|p| (p.out_at, p.stripe.0[0], p.start, p.end))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, 10, 1000, 1010),
                (15, 11, 1000, 1010),
                (25, 12, 1000, 1005),
                (35, 13, 1000, 1010)
            ]
        );
    }
}
