//! The chunkserver's `/metrics`: RPC traffic, disk space and shard count, scrub progress,
//! and the verification of what it reads from other servers when rebuilding a shard.

use std::path::PathBuf;
use std::sync::Arc;

use tessera_metrics::{Encoder, MetricsServer, Registry};

use crate::health::Health;
use crate::lie::Liar;
use crate::scrub::ScrubProgress;
use crate::space;
use crate::store::ShardStore;

/// What the endpoint reads.
#[derive(Clone)]
pub struct Sources {
    pub server: Arc<tessera_rpc::ServerStats>,
    pub store: Arc<dyn ShardStore>,
    pub health: Arc<Health>,
    pub scrub: Arc<ScrubProgress>,
    pub data_dir: PathBuf,
    /// The client that reads other servers' shards for rebuilds.
    pub peers: Arc<tessera_stripe::ChunkClient>,
    /// Set only when lying for a fault test (debug builds).
    pub liar: Option<Arc<Liar>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Starts the endpoint on `addr`; it stops when the returned server is dropped.
pub async fn start(addr: &str, sources: Sources) -> std::io::Result<MetricsServer> {
    let registry = Registry::new("chunk");
    let s = sources.clone();
    registry.register(move |e| s.server.render(e));
    registry.register(|e| tessera_rpc::client_metrics().render(e, "client"));
    let s = sources.clone();
    registry.register(move |e| render_space(e, &s));
    let s = sources.clone();
    registry.register(move |e| s.peers.audit().render(e));
    if let Some(liar) = sources.liar.clone() {
        registry.register(move |e| {
            e.counter(
                "tessera_chunk_lies_told_total",
                "Reads answered with wrong bytes on purpose (TESSERA_CHUNK_LIE, debug builds).",
                liar.told(),
            );
        });
    }
    registry.register(move |e| render_scrub(e, &sources.scrub));
    tessera_metrics::serve(addr, registry).await
}

fn render_space(e: &mut Encoder, s: &Sources) {
    let usage = s.store.usage();
    // One statvfs: cheap enough to do on every scrape.
    let sp = space::measure(&s.data_dir, usage, &s.health);
    e.gauge(
        "tessera_chunk_capacity_bytes",
        "Bytes this server may fill with shards: the configured --capacity, capped by what \
         the disk can hold on top of what is stored.",
        sp.capacity,
    );
    e.gauge(
        "tessera_chunk_used_bytes",
        "Bytes of stored shard files (headers and hash lists included, quarantine excluded).",
        sp.used,
    );
    e.gauge(
        "tessera_chunk_shards",
        "Shards stored on this server.",
        sp.shards,
    );
    e.gauge(
        "tessera_chunk_full",
        "1 if the server reports itself full (puts failing or under 1 MiB free).",
        sp.full,
    );
}

fn render_scrub(e: &mut Encoder, p: &ScrubProgress) {
    e.counter(
        "tessera_scrub_shards_checked_total",
        "Shards re-read and verified by the scrubber.",
        p.shards_checked.get(),
    );
    e.counter(
        "tessera_scrub_checked_bytes_total",
        "Shard bytes re-read and re-hashed by the scrubber.",
        p.bytes_checked.get(),
    );
    e.counter(
        "tessera_scrub_corrupt_total",
        "Shards the scrubber found corrupt (quarantined and reported for repair).",
        p.corrupt.get(),
    );
    e.counter(
        "tessera_scrub_missing_total",
        "Listed shards that were gone when the scrubber read them.",
        p.missing.get(),
    );
    e.counter(
        "tessera_scrub_unreadable_total",
        "Shards the scrubber could not read (I/O errors; left in place).",
        p.unreadable.get(),
    );
    e.counter(
        "tessera_scrub_passes_completed_total",
        "Scrub passes that reached the end of the inventory.",
        p.passes_completed.get(),
    );
    e.gauge(
        "tessera_scrub_pass_shards",
        "Shards checked so far in the running scrub pass (or in the last one).",
        p.pass_shards.get(),
    );
    e.gauge(
        "tessera_scrub_running",
        "1 while a scrub pass runs.",
        p.running.get(),
    );
}
