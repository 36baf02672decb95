//! Tessera's metrics: the few primitives every process shares, rendered in the Prometheus
//! text exposition format 0.0.4 and served by a tiny HTTP/1.1 responder.
//!
//! - [`Counter`], [`Gauge`], [`Histogram`]: plain atomics, no locks, cheap enough for every
//!   RPC and every FUSE operation.
//! - [`RecentLatency`]: the last few thousand observations of one latency, for exact p50 and
//!   p99 where the histogram's buckets are too coarse.
//! - [`Encoder`]: writes `# HELP` / `# TYPE` headers and samples with escaped labels.
//! - [`Registry`]: the collectors of one process (each renders its own families) and
//!   optional async hooks run before a scrape (to refresh a cached, costly figure).
//! - [`http::serve`]: `GET /metrics` on `--metrics-addr`.
//!
//! Every metric name starts with `tessera_`, uses base units (seconds, bytes) and counters
//! end in `_total`; `docs/metrics.md` lists them all.

pub mod http;
mod primitives;
mod recent;
mod registry;
mod text;

pub use http::{MetricsServer, serve};
pub use primitives::{Counter, Gauge, Histogram, HistogramSnapshot, LATENCY_BUCKETS};
pub use recent::RecentLatency;
pub use registry::{Registry, ScrapeHook};
pub use text::{Encoder, Kind};
