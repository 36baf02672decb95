//! Exact quantiles of the most recent observations.
//!
//! [`crate::Histogram`]'s fixed buckets answer "how many were slower than 1 ms" cheaply, but
//! cannot say whether a median commit takes 300 µs or 900 µs: both fall in one bucket. For
//! the few latencies whose p50 and p99 are a stated target (a Raft commit against the disk's
//! `fdatasync`), this keeps the last [`RecentLatency::CAPACITY`] observations and sorts a copy
//! at scrape time.

use std::sync::Mutex;
use std::time::Duration;

/// A ring of the latest observations in nanoseconds.
#[derive(Debug, Default)]
pub struct RecentLatency {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    samples: Vec<u64>,
    /// Where the next observation goes once the ring is full.
    next: usize,
}

impl RecentLatency {
    /// Observations kept: enough for a stable p99 (40 above it), small enough to sort on
    /// every scrape.
    pub const CAPACITY: usize = 4096;

    /// An empty window (usable in statics).
    pub const fn new() -> Self {
        Self {
            ring: Mutex::new(Ring {
                samples: Vec::new(),
                next: 0,
            }),
        }
    }

    /// Records one observation, replacing the oldest once the window is full.
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.samples.len() < Self::CAPACITY {
            ring.samples.push(ns);
        } else {
            let i = ring.next;
            ring.samples[i] = ns;
            ring.next = (i + 1) % Self::CAPACITY;
        }
    }

    /// The `q` quantiles (each in 0..=1, nearest rank) of the window, in seconds; `None`
    /// before the first observation.
    pub fn quantiles(&self, qs: &[f64]) -> Option<Vec<f64>> {
        let mut sorted = self
            .ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .samples
            .clone();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_unstable();
        let last = sorted.len() - 1;
        Some(
            qs.iter()
                .map(|q| {
                    let rank = (q.clamp(0.0, 1.0) * last as f64).round() as usize;
                    sorted[rank] as f64 / 1e9
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let r = RecentLatency::new();
        assert_eq!(r.quantiles(&[0.5]), None);
        for us in 1..=101 {
            r.observe(Duration::from_micros(us));
        }
        let q = r.quantiles(&[0.0, 0.5, 0.99, 1.0]).unwrap();
        assert_eq!(q, vec![1e-6, 51e-6, 100e-6, 101e-6]);
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let r = RecentLatency::new();
        for _ in 0..RecentLatency::CAPACITY {
            r.observe(Duration::from_secs(1));
        }
        for _ in 0..RecentLatency::CAPACITY {
            r.observe(Duration::from_micros(10));
        }
        assert_eq!(r.quantiles(&[1.0]).unwrap(), vec![10e-6]);
    }
}
