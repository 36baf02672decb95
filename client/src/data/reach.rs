//! What this mount tells the leader about chunkservers, and what it learns back.
//!
//! Every [`REPORT_EVERY`] the mount sends the servers its own calls found unreachable
//! (`tessera_stripe::Health`), an empty list included: the leader stops placing shards on a
//! server most reporting mounts cannot reach (see `ChunkRegistry`). The reply is the
//! cluster's write rule: how many shards beyond `k` a stripe needs stored before it is
//! committed. Until the first reply the mount assumes one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tessera_proto::meta::ReachabilityReport;

use super::DataPath;

/// How often a mount reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Shards beyond `k` a stripe needs stored, as the leader last said.
#[derive(Debug)]
pub struct WriteRule {
    spare: AtomicU8,
}

impl Default for WriteRule {
    fn default() -> Self {
        Self {
            spare: AtomicU8::new(1),
        }
    }
}

impl WriteRule {
    /// Fewest stored shards a `k + m` stripe may be committed with.
    pub fn min_shards(&self, k: u8, m: u8) -> usize {
        let spare = self.spare.load(Ordering::Relaxed).min(m);
        usize::from(k) + usize::from(spare)
    }
}

impl DataPath {
    /// Reports reachability to the leader every 2 s (`REPORT_EVERY`) and keeps the write rule
    /// current, until the returned handle is aborted.
    pub fn start_reachability(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let reporter = reporter_id();
        tokio::spawn(async move {
            loop {
                let report = ReachabilityReport {
                    reporter,
                    unreachable: me.chunks.health().unreachable_servers(),
                };
                match me.meta.report_reachability(report).await {
                    Ok(settings) => me.rule.spare.store(settings.spare, Ordering::Relaxed),
                    Err(e) => tracing::debug!("reachability report not delivered: {e}"),
                }
                tokio::time::sleep(REPORT_EVERY).await;
            }
        })
    }
}

/// A random id for this mount's reports: the process id and the clock, hashed by the
/// standard library's randomly keyed hasher.
fn reporter_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
