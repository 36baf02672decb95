//! The write-back buffer of one inode: disjoint extents of bytes written but not yet
//! committed, plus the extents a flush is storing right now (so reads see them until the
//! commit lands).

use std::collections::BTreeMap;

use bytes::Bytes;

/// Buffered writes of one inode.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Disjoint, non-adjacent extents by file offset.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Bytes in `extents`.
    bytes: u64,
    /// Extents taken by the running flush, visible to reads until its commit is applied.
    pub(crate) flushing: Vec<(u64, Bytes)>,
    /// When the oldest unflushed write arrived (the timer flushes after a while).
    pub(crate) since: Option<tokio::time::Instant>,
    /// A background flush of everything is queued and has not taken the buffer yet.
    pub(crate) flush_queued: bool,
}

impl Dirty {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Separate runs of buffered bytes.
    pub(crate) fn extents(&self) -> usize {
        self.extents.len()
    }

    /// Bytes taken by the running flush.
    pub(crate) fn flushing_bytes(&self) -> u64 {
        self.flushing.iter().map(|(_, b)| b.len() as u64).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.extents.is_empty() && self.flushing.is_empty()
    }

    /// One past the last buffered byte (0 if nothing is buffered).
    pub(crate) fn end(&self) -> u64 {
        let ext = self
            .extents
            .iter()
            .next_back()
            .map(|(s, v)| s + v.len() as u64)
            .unwrap_or(0);
        let fl = self
            .flushing
            .iter()
            .map(|(s, b)| s + b.len() as u64)
            .max()
            .unwrap_or(0);
        ext.max(fl)
    }

    /// 512-byte units of the 4 KiB blocks the buffered bytes touch (an estimate of the
    /// space they will take: blocks already stored are counted again).
    pub(crate) fn st_blocks(&self) -> u64 {
        let runs = self.extents.iter().map(|(s, v)| (*s, v.len() as u64));
        let flushing = self.flushing.iter().map(|(s, b)| (*s, b.len() as u64));
        runs.chain(flushing)
            .filter(|(_, len)| *len > 0)
            .map(|(start, len)| ((start + len).div_ceil(4096) - start / 4096) * 8)
            .sum()
    }

    /// Buffers `data` at `off`, merging with the extents it overlaps or touches.
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.since.is_none() {
            self.since = Some(tokio::time::Instant::now());
        }
        let end = off + data.len() as u64;
        // Extents are disjoint and sorted, so the ones that touch [off, end) are the run that
        // ends with the last extent starting at or before `end`.
        let touching: Vec<u64> = self
            .extents
            .range(..=end)
            .rev()
            .take_while(|(s, v)| *s + v.len() as u64 >= off)
            .map(|(s, _)| *s)
            .collect();
        if let [only] = touching[..] {
            // The common cases, without a new buffer: overwrite inside or append.
            if only <= off {
                let Some(v) = self.extents.get_mut(&only) else {
                    return;
                };
                let old = v.len() as u64;
                let rel = (off - only) as usize;
                if end > only + old {
                    v.resize((end - only) as usize, 0);
                    self.bytes += end - only - old;
                }
                v[rel..rel + data.len()].copy_from_slice(data);
                return;
            }
        }
        let start = touching.last().copied().unwrap_or(off).min(off);
        let mut merged_end = end;
        let mut old_bytes = 0u64;
        let mut olds = Vec::with_capacity(touching.len());
        for s in touching {
            if let Some(v) = self.extents.remove(&s) {
                merged_end = merged_end.max(s + v.len() as u64);
                old_bytes += v.len() as u64;
                olds.push((s, v));
            }
        }
        let mut buf = vec![0u8; (merged_end - start) as usize];
        for (s, v) in olds {
            let at = (s - start) as usize;
            buf[at..at + v.len()].copy_from_slice(&v);
        }
        let at = (off - start) as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        self.bytes = self.bytes - old_bytes + buf.len() as u64;
        self.extents.insert(start, buf);
    }

    /// Forgets buffered bytes at or past `size` (a truncate).
    pub(crate) fn truncate(&mut self, size: u64) {
        let keys: Vec<u64> = self.extents.range(..).map(|(s, _)| *s).collect();
        for s in keys {
            if let Some(v) = self.extents.get_mut(&s) {
                let len = v.len() as u64;
                if s >= size {
                    self.bytes -= len;
                    self.extents.remove(&s);
                } else if s + len > size {
                    v.truncate((size - s) as usize);
                    self.bytes -= s + len - size;
                }
            }
        }
    }

    /// Takes every extent (a full flush).
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Bytes)> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.extents)
            .into_iter()
            .map(|(s, v)| (s, Bytes::from(v)))
            .collect()
    }

    /// Takes only the parts that fill whole stripes (aligned to multiples of `stripe` in the
    /// file), leaving partial stripes to grow: a sequential writer then stores full stripes,
    /// never a short slice followed by its continuation.
    pub(crate) fn take_full_stripes(&mut self, stripe: u64) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        let keys: Vec<u64> = self.extents.keys().copied().collect();
        for s in keys {
            let Some(len) = self.extents.get(&s).map(|v| v.len() as u64) else {
                continue;
            };
            let e = s + len;
            let a = s.div_ceil(stripe) * stripe;
            let b = e / stripe * stripe;
            if b <= a {
                continue;
            }
            let Some(mut v) = self.extents.remove(&s) else {
                continue;
            };
            let right = v.split_off((b - s) as usize);
            let mid = v.split_off((a - s) as usize);
            self.bytes -= mid.len() as u64;
            if !v.is_empty() {
                self.extents.insert(s, v);
            }
            if !right.is_empty() {
                self.extents.insert(b, right);
            }
            out.push((a, Bytes::from(mid)));
        }
        if self.extents.is_empty() {
            self.since = None;
        }
        out
    }

    #[cfg(test)]
    /// Copies every buffered byte inside `off..off + out.len()` over `out`, the running flush
    /// first and newer writes last.
    pub(crate) fn overlay(&self, off: u64, out: &mut [u8]) {
        let end = off + out.len() as u64;
        let mut put = |s: u64, v: &[u8]| {
            let ve = s + v.len() as u64;
            let (a, b) = (s.max(off), ve.min(end));
            if a < b {
                out[(a - off) as usize..(b - off) as usize]
                    .copy_from_slice(&v[(a - s) as usize..(b - s) as usize]);
            }
        };
        for (s, b) in &self.flushing {
            put(*s, b);
        }
        for (s, v) in self.extents.range(..end) {
            put(*s, v);
        }
    }

    /// Copies of the buffered bytes inside `off..end`, in the order to apply them (the
    /// running flush first, newer writes last).
    pub(crate) fn snapshot(&self, off: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut take = |s: u64, v: &[u8]| {
            let (a, b) = (s.max(off), (s + v.len() as u64).min(end));
            if a < b {
                out.push((a, v[(a - s) as usize..(b - s) as usize].to_vec()));
            }
        };
        for (s, b) in &self.flushing {
            take(*s, b);
        }
        for (s, v) in self.extents.range(..end) {
            take(*s, v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::Dirty;

    fn image(d: &Dirty, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        d.overlay(0, &mut out);
        out
    }

    #[test]
    fn writes_merge_like_a_file() {
        let mut d = Dirty::default();
        let mut model = vec![0u8; 64];
        let writes: &[(u64, &[u8])] = &[
            (10, b"abcdef"),
            (20, b"xyz"),
            (16, b"QQQQ"),
            (0, b"0123456789"),
            (30, b"tail"),
            (12, b"--"),
            (29, b"!"),
        ];
        for (off, data) in writes {
            d.write(*off, data);
            model[*off as usize..*off as usize + data.len()].copy_from_slice(data);
            assert_eq!(image(&d, 64), model);
        }
        // [0, 23) and [29, 34): the gap between them is not buffered.
        assert_eq!(d.end(), 34);
        assert_eq!(d.bytes(), 28);
        assert_eq!(d.extents.len(), 2);
    }

    #[test]
    fn full_stripes_are_cut_at_aligned_offsets() {
        let mut d = Dirty::default();
        d.write(3, &[1u8; 30]);
        let taken = d.take_full_stripes(8);
        let spans: Vec<(u64, usize)> = taken.iter().map(|(s, b)| (*s, b.len())).collect();
        assert_eq!(spans, vec![(8, 24)]);
        assert_eq!(d.bytes(), 6);
        let mut out = vec![0u8; 40];
        d.overlay(0, &mut out);
        assert_eq!(&out[3..8], &[1u8; 5]);
        assert_eq!(&out[8..32], &[0u8; 24]);
        assert_eq!(out[32], 1);
    }

    #[test]
    fn truncate_drops_bytes_past_the_size() {
        let mut d = Dirty::default();
        d.write(0, &[7u8; 10]);
        d.write(20, &[7u8; 10]);
        d.truncate(5);
        assert_eq!(d.bytes(), 5);
        assert_eq!(d.end(), 5);
        assert_eq!(d.snapshot(4, 100), vec![(4, vec![7u8])]);
        assert!(d.snapshot(5, 100).is_empty());
    }
}
