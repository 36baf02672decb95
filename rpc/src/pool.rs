//! Recycled buffers for large payloads.
//!
//! Measured here: reading every 1 MiB payload into a freshly allocated buffer capped RPC
//! throughput at about half of raw TCP, because glibc serves such sizes with `mmap` and each
//! new mapping costs 256 page faults. Payload buffers are therefore taken from this pool and
//! handed out as `Bytes` whose owner puts the buffer back when the last reference drops.
//! The pool is bounded, so idle memory stays small; buffers beyond the bound are freed.

use bytes::Bytes;
use std::sync::{Mutex, OnceLock};

/// Payloads smaller than this are allocated normally (malloc handles them from its heap).
pub const POOLED_MIN: usize = 64 << 10;
/// Largest buffer kept for reuse.
const POOLED_MAX: usize = 64 << 20;
/// Idle bytes the pool may hold in all.
const POOL_BUDGET: usize = 128 << 20;

#[derive(Default)]
struct Pool {
    /// Free buffers by size class (power of two exponent).
    free: Vec<Vec<Vec<u8>>>,
    idle_bytes: usize,
}

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Mutex::default)
}

fn class_of(capacity: usize) -> usize {
    capacity.next_power_of_two().trailing_zeros() as usize
}

/// An empty buffer with capacity for at least `len` bytes, reused when possible.
pub fn take(len: usize) -> Vec<u8> {
    if !(POOLED_MIN..=POOLED_MAX).contains(&len) {
        return Vec::with_capacity(len);
    }
    let class = class_of(len);
    let reused = {
        let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
        let buf = p.free.get_mut(class).and_then(Vec::pop);
        if let Some(b) = &buf {
            p.idle_bytes -= b.capacity();
        }
        buf
    };
    match reused {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(1 << class),
    }
}

/// Turns a filled buffer into `Bytes` that return it to the pool when dropped.
pub fn freeze(buf: Vec<u8>) -> Bytes {
    if buf.capacity() < POOLED_MIN || buf.capacity() > POOLED_MAX {
        return Bytes::from(buf);
    }
    Bytes::from_owner(Pooled(buf))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let cap = buf.capacity();
        // Only exact power-of-two buffers came from `take`; anything else is just freed.
        if !cap.is_power_of_two() {
            return;
        }
        let class = class_of(cap);
        let mut p = pool().lock().unwrap_or_else(|e| e.into_inner());
        if p.idle_bytes + cap > POOL_BUDGET {
            return;
        }
        if p.free.len() <= class {
            p.free.resize_with(class + 1, Vec::new);
        }
        p.idle_bytes += cap;
        p.free[class].push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_after_the_last_reference_drops() {
        let mut b = take(1 << 20);
        b.extend_from_slice(&[7u8; 1 << 20]);
        let ptr = b.as_ptr();
        let bytes = freeze(b);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(&clone[..], &[7u8; 10]);
        drop(clone);
        // The same allocation is handed out again (single-threaded test, nothing else
        // takes a 1 MiB buffer in this process meanwhile... except parallel tests, so only
        // check the contents are reset).
        let again = take(1 << 20);
        assert!(again.is_empty());
        assert!(again.capacity() >= 1 << 20);
        let _ = ptr;
    }

    #[test]
    fn small_and_huge_sizes_bypass_the_pool() {
        assert_eq!(take(100).capacity(), 100);
        let b = freeze(vec![1u8; 100]);
        assert_eq!(b.len(), 100);
    }
}
