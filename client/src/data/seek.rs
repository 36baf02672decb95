//! `lseek` SEEK_DATA and SEEK_HOLE from the file's slices, so sparse files are seen and
//! copied as sparse (`cp`, `tar --sparse`, `rsync -S`).
//!
//! Data is what a slice with stored bytes covers, rounded out to whole 4 KiB blocks as ext4
//! reports it; everything else below the size is a hole, and the end of the file counts as
//! one. The caller flushes the handle's buffered bytes first, so the slices are the truth.
//! `stored_in` counts a range's stored bytes from the same resolution (for `fallocate`).

use std::sync::Arc;

use tessera_proto::fs::{CHUNK_SIZE, FsError, Ino};

use super::read::resolve;
use super::{DataPath, InodeData};

/// The unit data is reported in, as ext4 does with 4 KiB blocks.
const BLOCK: u64 = 4096;
/// Chunks (64 MiB each) the first layout read covers; doubled after each read that found
/// no answer, up to [`MAX_CHUNKS_PER_READ`], so a long run of holes costs few reads.
const FIRST_CHUNKS_PER_READ: u64 = 4;
const MAX_CHUNKS_PER_READ: u64 = 1024;

impl DataPath {
    /// The first data byte (`hole` false) or hole byte (`hole` true) at or after `off`.
    /// `NoSuchOffset` (ENXIO) when `off` is at or past the end, or no data follows it.
    pub async fn seek(
        &self,
        ino: Ino,
        data: Option<&Arc<InodeData>>,
        off: u64,
        hole: bool,
    ) -> Result<u64, FsError> {
        let mut from = off;
        let mut chunks = FIRST_CHUNKS_PER_READ;
        loop {
            let start = from / CHUNK_SIZE * CHUNK_SIZE;
            let end = start.saturating_add(chunks * CHUNK_SIZE);
            let layout = self.layout(ino, data, start, end).await?;
            if off >= layout.size {
                return Err(FsError::NoSuchOffset);
            }
            let end = end.min(layout.size);
            let extents = data_extents(
                resolve(&layout, start, end)
                    .iter()
                    .map(|p| (start + p.out_at as u64, start + p.out_at as u64 + p.len())),
                layout.size,
            );
            if let Some(at) = find(&extents, from, end, hole) {
                return Ok(at);
            }
            if end >= layout.size {
                return if hole {
                    Ok(layout.size)
                } else {
                    Err(FsError::NoSuchOffset)
                };
            }
            from = end;
            chunks = (chunks * 2).min(MAX_CHUNKS_PER_READ);
        }
    }
}

impl DataPath {
    /// How many bytes of `off..end` hold stored data (the rest is holes or past the end).
    pub async fn stored_in(
        &self,
        ino: Ino,
        data: Option<&Arc<InodeData>>,
        off: u64,
        end: u64,
    ) -> Result<u64, FsError> {
        if off >= end {
            return Ok(0);
        }
        let layout = self.layout(ino, data, off, end).await?;
        Ok(resolve(&layout, off, end.min(layout.size).max(off))
            .iter()
            .map(|p| p.len())
            .sum())
    }
}

/// Byte ranges of data, rounded out to blocks (the last one capped at `size`), sorted and
/// merged.
fn data_extents(ranges: impl Iterator<Item = (u64, u64)>, size: u64) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges
        .filter(|(a, b)| a < b)
        .map(|(a, b)| {
            (
                a / BLOCK * BLOCK,
                b.div_ceil(BLOCK).saturating_mul(BLOCK).min(size),
            )
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Within `from..end`, given the data `extents` of that range: the first data byte, or
/// the first hole byte; `None` if there is none before `end`.
fn find(extents: &[(u64, u64)], from: u64, end: u64, hole: bool) -> Option<u64> {
    if hole {
        let mut at = from;
        for &(a, b) in extents {
            if a > at {
                break;
            }
            at = at.max(b);
        }
        (at < end).then_some(at)
    } else {
        extents
            .iter()
            .find(|&&(_, b)| b > from)
            .map(|&(a, _)| a.max(from))
            .filter(|&at| at < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_are_rounded_to_blocks_and_merged() {
        let e = data_extents(
            [(5000, 6000), (0, 10), (8192, 8200), (100, 200)].into_iter(),
            9000,
        );
        assert_eq!(e, vec![(0, 9000)]);
        let e = data_extents([(20000, 20001), (0, 1)].into_iter(), 1 << 20);
        assert_eq!(e, vec![(0, 4096), (16384, 20480)]);
    }

    #[test]
    fn data_and_holes_are_found_from_any_offset() {
        let e = [(4096, 8192), (16384, 20480)];
        assert_eq!(find(&e, 0, 30000, false), Some(4096));
        assert_eq!(find(&e, 5000, 30000, false), Some(5000));
        assert_eq!(find(&e, 8192, 30000, false), Some(16384));
        assert_eq!(find(&e, 20480, 30000, false), None);
        assert_eq!(find(&e, 0, 30000, true), Some(0));
        assert_eq!(find(&e, 4096, 30000, true), Some(8192));
        assert_eq!(find(&e, 16384, 30000, true), Some(20480));
        assert_eq!(find(&e, 16384, 20480, true), None);
    }
}
