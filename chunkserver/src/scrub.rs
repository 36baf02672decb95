//! The scrubber: re-reads and re-hashes every stored shard at a bounded rate, so bit rot is
//! found (and the shard repaired elsewhere) before a read needs it.
//!
//! It walks the inventory page by page and reads each shard through the store's verified
//! `get`, so a corrupt shard is quarantined exactly as on a client read, and the scrubber
//! only reports. Reports go to a callback: the heartbeat task will forward them to the
//! metadata leader, which schedules repair. It runs on its own thread, not in tokio's blocking
//! pool, because a pass can take hours and would hold a pool thread that long.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tessera_metrics::{Counter, Gauge};

use crate::error::{Damage, Error, Result};
use crate::store::{ShardId, ShardStore};

/// Scrubber settings.
#[derive(Debug, Clone)]
pub struct ScrubConfig {
    /// Read rate limit in bytes per second; 0 means no limit.
    pub bytes_per_sec: u64,
    /// Shards listed per inventory page.
    pub page_len: usize,
    /// Pause between the end of one pass and the start of the next.
    pub pass_interval: Duration,
}

impl Default for ScrubConfig {
    /// 32 MiB/s re-reads 1 TiB in about 9 hours while leaving most of a disk's bandwidth
    /// to clients; a pass a day is ample against bit rot.
    fn default() -> ScrubConfig {
        ScrubConfig {
            bytes_per_sec: 32 << 20,
            page_len: 256,
            pass_interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the scrubber reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubReport {
    /// The shard failed verification and is now in quarantine: it needs repair.
    Corrupt { id: ShardId, damage: Damage },
    /// The shard was listed but was gone when read. Either it was deleted meanwhile or it was
    /// lost outside the store; the leader tells the two apart by its own records.
    Missing { id: ShardId },
    /// Reading the shard failed with an I/O error. It stays in place; it may be transient.
    Unreadable { id: ShardId, error: String },
    /// A pass over the whole inventory finished.
    PassComplete(PassStats),
}

/// Totals of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassStats {
    pub shards: u64,
    pub bytes: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub unreadable: u64,
    pub elapsed: Duration,
    /// False if the pass was stopped before the end of the inventory.
    pub finished: bool,
}

/// A stop request that wakes a sleeping scrubber at once.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn stop(&self) {
        *self.lock() = true;
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.lock()
    }

    /// Sleeps up to `timeout`; returns true if stopped (at once, if already stopped).
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Running totals of the scrubber, for the metrics endpoint.
#[derive(Debug, Default)]
pub struct ScrubProgress {
    /// Shards verified (whatever the verdict).
    pub shards_checked: Counter,
    /// Shard bytes read and re-hashed.
    pub bytes_checked: Counter,
    /// Shards found corrupt (and quarantined).
    pub corrupt: Counter,
    /// Listed shards that were gone when read.
    pub missing: Counter,
    /// Shards that could not be read (I/O errors).
    pub unreadable: Counter,
    /// Passes that reached the end of the inventory.
    pub passes_completed: Counter,
    /// Shards checked so far in the running pass (or the last one).
    pub pass_shards: Gauge,
    /// 1 while a pass runs.
    pub running: Gauge,
}

/// Re-hashes every shard of a store. See the module docs.
#[derive(Debug)]
pub struct Scrubber<S: ?Sized> {
    store: Arc<S>,
    config: ScrubConfig,
    progress: Arc<ScrubProgress>,
}

/// Clears [`ScrubProgress::running`] however a pass ends.
struct NotRunning<'a>(&'a ScrubProgress);

impl Drop for NotRunning<'_> {
    fn drop(&mut self) {
        self.0.running.set(0);
    }
}

/// Smallest read cost charged per shard, so an inventory of tiny shards is paced too.
const MIN_COST: u64 = 4096;

impl<S: ShardStore + ?Sized> Scrubber<S> {
    pub fn new(store: Arc<S>, config: ScrubConfig) -> Scrubber<S> {
        Scrubber {
            store,
            config,
            progress: Arc::default(),
        }
    }

    /// The scrubber's running totals (shared; they keep counting after `spawn`).
    pub fn progress(&self) -> Arc<ScrubProgress> {
        self.progress.clone()
    }

    /// Runs one pass over the whole inventory, reporting each finding as it is made.
    /// Fails only if the inventory itself cannot be listed.
    pub fn run_pass(&self, stop: &Stop, report: &mut dyn FnMut(ScrubReport)) -> Result<PassStats> {
        let started = Instant::now();
        let mut stats = PassStats::default();
        let mut cost = 0u64;
        let mut cursor = None;
        self.progress.running.set(1);
        self.progress.pass_shards.set(0);
        let _done = NotRunning(&self.progress);
        loop {
            let page = self
                .store
                .list(cursor.as_ref(), self.config.page_len.max(1))?;
            for shard in &page.shards {
                if stop.is_stopped() {
                    stats.elapsed = started.elapsed();
                    return Ok(stats);
                }
                stats.shards += 1;
                let read = self.check(&shard.id, &mut stats, report);
                stats.bytes += read;
                self.progress.shards_checked.inc();
                self.progress.bytes_checked.add(read);
                self.progress.pass_shards.add(1);
                cost += read.max(MIN_COST);
                if self.pace(started, cost, stop) {
                    stats.elapsed = started.elapsed();
                    return Ok(stats);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        stats.elapsed = started.elapsed();
        stats.finished = true;
        self.progress.passes_completed.inc();
        Ok(stats)
    }

    /// Verifies one shard; returns the bytes read.
    fn check(
        &self,
        id: &ShardId,
        stats: &mut PassStats,
        report: &mut dyn FnMut(ScrubReport),
    ) -> u64 {
        match self.store.get(id, None) {
            Ok(bytes) => bytes.len() as u64,
            Err(Error::Corrupt { id, damage }) => {
                stats.corrupt += 1;
                self.progress.corrupt.inc();
                report(ScrubReport::Corrupt { id, damage });
                0
            }
            Err(Error::NotFound { id }) => {
                stats.missing += 1;
                self.progress.missing.inc();
                report(ScrubReport::Missing { id });
                0
            }
            Err(e) => {
                stats.unreadable += 1;
                self.progress.unreadable.inc();
                tracing::warn!(shard = %id, error = %e, "scrub could not read shard");
                report(ScrubReport::Unreadable {
                    id: *id,
                    error: e.to_string(),
                });
                0
            }
        }
    }

    /// Sleeps until `cost` bytes are due at the configured rate; returns true if stopped.
    fn pace(&self, started: Instant, cost: u64, stop: &Stop) -> bool {
        let rate = self.config.bytes_per_sec;
        if rate == 0 {
            return stop.is_stopped();
        }
        let due = Duration::from_secs_f64(cost as f64 / rate as f64);
        match due.checked_sub(started.elapsed()) {
            Some(wait) if !wait.is_zero() => stop.wait(wait),
            _ => stop.is_stopped(),
        }
    }
}

impl<S: ShardStore + ?Sized + 'static> Scrubber<S> {
    /// Runs passes forever on a thread of its own, `pass_interval` apart, until the handle
    /// is stopped or dropped.
    pub fn spawn(
        self,
        mut report: impl FnMut(ScrubReport) + Send + 'static,
    ) -> std::io::Result<ScrubHandle>
    where
        S: Send + Sync,
    {
        let stop = Arc::new(Stop::new());
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("tessera-scrub".into()).spawn(move || {
            loop {
                match self.run_pass(&thread_stop, &mut report) {
                    Ok(stats) if stats.finished => {
                        tracing::info!(?stats, "scrub pass complete");
                        report(ScrubReport::PassComplete(stats));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "scrub pass failed; retrying after the pass interval"),
                }
                if thread_stop.wait(self.config.pass_interval) {
                    return;
                }
            }
        })?;
        Ok(ScrubHandle {
            stop,
            thread: Some(thread),
        })
    }
}

/// A running scrubber. Dropping it stops the scrubber and waits for its thread.
#[derive(Debug)]
pub struct ScrubHandle {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl ScrubHandle {
    /// Stops the scrubber (it finishes the shard it is reading) and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("scrub thread panicked");
        }
    }
}

impl Drop for ScrubHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
#[path = "scrub_tests.rs"]
mod tests;
