//! Per-server health as this process sees it from its own calls.
//!
//! A chunkserver can heartbeat the metadata leader and still be unreachable from here (a
//! firewall, a broken route, a half-dead connection). So every shard call's outcome is
//! recorded by server id: a transport failure (cannot connect, timed out, connection lost,
//! unanswered) marks the server unreachable for a while, doubling with each failure in a
//! row up to [`MAX_QUARANTINE`]; any answer from it clears that at once. While unreachable
//! a server gets no puts from this process (placement excludes it) and no first-choice
//! reads (a read goes to parity at once instead of waiting for it). When the quarantine
//! ends the next call to it is the probe.
//!
//! Reads also learn each server's latency: a read starts fetching parity once a data shard
//! is later than [`Health::hedge_delay`], a high percentile of that server's recent
//! answers, instead of a fixed wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ShardFault;

/// First quarantine of a server that failed a call.
const FIRST_QUARANTINE: Duration = Duration::from_secs(2);
/// Longest quarantine; a server that keeps failing is tried again this often.
pub const MAX_QUARANTINE: Duration = Duration::from_secs(8);
/// Latencies kept per server for the hedge delay.
const SAMPLES: usize = 64;
/// Fewest samples before the learnt delay is trusted over the configured one.
const MIN_SAMPLES: usize = 4;
/// The hedge delay is never shorter than this (a parity read costs `k` shard reads).
const MIN_HEDGE: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Server {
    /// Recent answer times, newest last.
    latencies: VecDeque<Duration>,
    /// Transport failures in a row.
    failures: u32,
    /// Unreachable until then.
    quarantined_until: Option<Instant>,
}

/// Health of every server this process has called.
#[derive(Debug, Default)]
pub struct Health {
    servers: Mutex<HashMap<u64, Server>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Server>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a call to `server` that got an answer after `took` (any answer, even an
    /// error from the service: the server is reachable). `sample`: whether `took` is a read
    /// latency worth learning from.
    pub fn answered(&self, server: u64, took: Duration, sample: bool) {
        let mut servers = self.lock();
        let s = servers.entry(server).or_default();
        if s.failures > 0 || s.quarantined_until.is_some() {
            tracing::info!(server = %format!("{server:#018x}"), "chunkserver answers again");
        }
        s.failures = 0;
        s.quarantined_until = None;
        if sample {
            if s.latencies.len() == SAMPLES {
                s.latencies.pop_front();
            }
            s.latencies.push_back(took);
        }
    }

    /// Records a call to `server` that failed with `fault`; only transport failures count.
    /// Returns whether the server just became unreachable.
    pub fn failed(&self, server: u64, fault: &ShardFault) -> bool {
        if !is_transport(fault) {
            return false;
        }
        let mut servers = self.lock();
        let s = servers.entry(server).or_default();
        let was = s.quarantined_until.is_some_and(|t| t > Instant::now());
        s.failures = s.failures.saturating_add(1);
        let factor = 1u32 << s.failures.min(8).saturating_sub(1);
        let for_ = (FIRST_QUARANTINE * factor).min(MAX_QUARANTINE);
        s.quarantined_until = Some(Instant::now() + for_);
        if !was {
            tracing::warn!(
                server = %format!("{server:#018x}"),
                "chunkserver unreachable from this process ({fault}); no puts or first-choice \
                 reads for {} ms",
                for_.as_millis()
            );
        }
        !was
    }

    /// Whether `server` is in quarantine now.
    pub fn unreachable(&self, server: u64) -> bool {
        self.lock()
            .get(&server)
            .and_then(|s| s.quarantined_until)
            .is_some_and(|t| t > Instant::now())
    }

    /// Every server in quarantine now, by id.
    pub fn unreachable_servers(&self) -> Vec<u64> {
        let now = Instant::now();
        let mut ids: Vec<u64> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.quarantined_until.is_some_and(|t| t > now))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// How long a read waits for a data shard on `server` before fetching parity too: twice
    /// the 95th percentile of its recent answers, between 50 ms (`MIN_HEDGE`) and `ceiling` (the
    /// configured slow-shard wait, also used until enough answers were seen).
    pub fn hedge_delay(&self, server: u64, ceiling: Duration) -> Duration {
        let servers = self.lock();
        let Some(s) = servers
            .get(&server)
            .filter(|s| s.latencies.len() >= MIN_SAMPLES)
        else {
            return ceiling;
        };
        let mut sorted: Vec<Duration> = s.latencies.iter().copied().collect();
        sorted.sort_unstable();
        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
        (p95 * 2).clamp(MIN_HEDGE.min(ceiling), ceiling)
    }
}

/// Faults that say the server could not be reached or did not answer, as opposed to an
/// answer (an error from the service, or bytes that fail verification).
fn is_transport(fault: &ShardFault) -> bool {
    use tessera_rpc::RpcError;
    match fault {
        ShardFault::Rpc(e) => matches!(
            e,
            RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::ConnectionClosed { .. }
        ),
        ShardFault::Unanswered { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_rpc::RpcError;

    fn timeout() -> ShardFault {
        ShardFault::Rpc(RpcError::Timeout {
            peer: "x".into(),
            method: tessera_proto::Method::PING,
            ms: 1,
        })
    }

    #[test]
    fn a_transport_failure_quarantines_and_an_answer_clears() {
        let h = Health::default();
        assert!(!h.unreachable(7));
        assert!(h.failed(7, &timeout()));
        assert!(!h.failed(7, &timeout()), "already unreachable");
        assert!(h.unreachable(7));
        assert_eq!(h.unreachable_servers(), vec![7]);
        h.answered(7, Duration::from_millis(1), false);
        assert!(!h.unreachable(7));
        assert!(h.unreachable_servers().is_empty());
    }

    #[test]
    fn service_errors_and_bad_bytes_are_not_unreachability() {
        let h = Health::default();
        let bad = ShardFault::WrongHash {
            got: tessera_proto::ShardId::of(b"x"),
        };
        assert!(!h.failed(3, &bad));
        assert!(!h.unreachable(3));
    }

    #[test]
    fn hedge_delay_follows_recent_latency_within_bounds() {
        let h = Health::default();
        let ceiling = Duration::from_secs(2);
        assert_eq!(h.hedge_delay(1, ceiling), ceiling, "nothing learnt yet");
        for _ in 0..20 {
            h.answered(1, Duration::from_millis(40), true);
        }
        assert_eq!(h.hedge_delay(1, ceiling), Duration::from_millis(80));
        for _ in 0..20 {
            h.answered(2, Duration::from_millis(1), true);
        }
        assert_eq!(h.hedge_delay(2, ceiling), MIN_HEDGE);
        for _ in 0..64 {
            h.answered(3, Duration::from_secs(5), true);
        }
        assert_eq!(h.hedge_delay(3, ceiling), ceiling);
    }
}
