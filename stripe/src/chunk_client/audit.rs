//! What this process's shard reads found out about the chunkservers: how many reads were
//! checked against their shard ids before use, and which servers sent bytes that failed the
//! check (a "bad reply": flipped bits, another shard's bytes, a stale copy, a short range).
//!
//! A bad reply is logged with the server, its address, the stripe and the shard, counted by
//! server and kind, and queued as a [`BadReply`] for whoever owns the client to report: the
//! mount sends them to the metadata leader ([`ReadAudit::report_every`]), a chunkserver
//! rebuilding a shard returns them with the rebuild. The leader then rebuilds those shards
//! on other servers. The read itself has already gone on from parity.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tessera_metrics::{Counter, Encoder, Kind};
use tessera_proto::ShardId;
use tessera_proto::chunk::BadReply;
use tessera_proto::fs::StripeId;

use crate::error::ShardFault;

/// Most bad replies kept waiting for a report; more are counted but not queued (the reads
/// that find them again queue them again).
const MAX_PENDING: usize = 100_000;

/// Read verification counters and the queue of bad replies. One per [`super::ChunkClient`].
#[derive(Debug, Default)]
pub struct ReadAudit {
    whole: Counter,
    ranged: Counter,
    bytes: Counter,
    reported: Counter,
    /// Bad replies by (server, kind).
    bad: Mutex<BTreeMap<(u64, &'static str), u64>>,
    pending: Mutex<BTreeSet<BadReply>>,
}

/// One bad reply, as the read that caught it saw it.
#[derive(Debug)]
pub(crate) struct Caught<'a> {
    pub server: u64,
    pub addr: Option<&'a str>,
    pub stripe: StripeId,
    pub index: usize,
    pub shard: ShardId,
    pub fault: &'a ShardFault,
}

impl ReadAudit {
    pub fn new() -> ReadAudit {
        ReadAudit::default()
    }

    /// A shard read whose `bytes` bytes were checked against the shard id and matched.
    pub(crate) fn verified(&self, whole: bool, bytes: usize) {
        if whole {
            self.whole.inc();
        } else {
            self.ranged.inc();
        }
        self.bytes.add(bytes as u64);
    }

    /// Records a bad reply (`c.fault` must be one: [`ShardFault::is_bad_reply`]).
    pub(crate) fn bad_reply(&self, c: Caught<'_>) {
        tracing::warn!(
            server = %format!("{:#018x}", c.server),
            addr = c.addr.unwrap_or("?"),
            stripe = %c.stripe,
            index = c.index,
            shard = %c.shard,
            "chunkserver sent bytes that fail verification against the shard id ({}); \
             reading the stripe's other shards and reporting this one for repair",
            c.fault
        );
        let kind = c.fault.kind();
        *lock(&self.bad).entry((c.server, kind)).or_default() += 1;
        let mut pending = lock(&self.pending);
        if pending.len() < MAX_PENDING {
            pending.insert(BadReply {
                server: c.server,
                shard: c.shard,
            });
        }
    }

    /// Bad replies counted so far, all servers and kinds.
    pub fn bad_replies(&self) -> u64 {
        lock(&self.bad).values().sum()
    }

    /// Up to `max` queued bad replies, taken off the queue (give them back with
    /// [`Self::requeue`] if they could not be reported).
    pub fn take(&self, max: usize) -> Vec<BadReply> {
        let mut pending = lock(&self.pending);
        let out: Vec<BadReply> = pending.iter().take(max).copied().collect();
        for b in &out {
            pending.remove(b);
        }
        out
    }

    /// Puts back bad replies whose report failed.
    pub fn requeue(&self, bad: Vec<BadReply>) {
        let mut pending = lock(&self.pending);
        for b in bad {
            if pending.len() >= MAX_PENDING {
                break;
            }
            pending.insert(b);
        }
    }

    /// Counts bad replies that reached the metadata leader.
    pub fn note_reported(&self, n: usize) {
        self.reported.add(n as u64);
    }

    /// Every `every`, hands the queued bad replies (at most 4096 at a time) to `send`, and
    /// queues them again if it fails. Runs until the task is aborted.
    pub async fn report_every<F, Fut>(&self, every: Duration, send: F)
    where
        F: Fn(Vec<BadReply>) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        loop {
            tokio::time::sleep(every).await;
            let bad = self.take(4096);
            if bad.is_empty() {
                continue;
            }
            let n = bad.len();
            match send(bad.clone()).await {
                Ok(()) => {
                    self.note_reported(n);
                    tracing::info!(shards = n, "reported shards that failed verification");
                }
                Err(e) => {
                    tracing::warn!(
                        shards = n,
                        "cannot report shards that failed verification: {e}"
                    );
                    self.requeue(bad);
                }
            }
        }
    }

    /// Renders the `tessera_shard_*` families.
    pub fn render(&self, e: &mut Encoder) {
        let name = "tessera_shard_reads_verified_total";
        e.family(
            name,
            Kind::Counter,
            "Shard reads whose bytes this process checked against the shard id before using \
             them, by how: a whole shard hashed, or a range checked with its proof.",
        );
        e.sample(name, &[("how", "whole")], self.whole.get());
        e.sample(name, &[("how", "range")], self.ranged.get());
        e.counter(
            "tessera_shard_verified_bytes_total",
            "Bytes of those reads (ranges widened to whole 1 KiB chunks).",
            self.bytes.get(),
        );
        let name = "tessera_shard_bad_replies_total";
        e.family(
            name,
            Kind::Counter,
            "Shard reads answered with bytes that failed the check against the shard id, by \
             the chunkserver that sent them and how they failed (length, hash, proof).",
        );
        for ((server, kind), n) in lock(&self.bad).iter() {
            let server = format!("{server:#018x}");
            e.sample(name, &[("server", &server), ("kind", kind)], *n);
        }
        e.counter(
            "tessera_shard_bad_replies_reported_total",
            "Bad replies reported to the metadata leader, which rebuilds those shards on \
             other servers.",
            self.reported.get(),
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update is one insert or add: still consistent after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::proof::ProofError;

    fn catch(a: &ReadAudit, server: u64, shard: u8, fault: ShardFault) {
        a.bad_reply(Caught {
            server,
            addr: Some("127.0.0.1:1"),
            stripe: StripeId([1; 32]),
            index: 0,
            shard: ShardId([shard; 32]),
            fault: &fault,
        });
    }

    #[test]
    fn counts_by_server_and_kind_and_queues_each_shard_once() {
        let a = ReadAudit::new();
        catch(
            &a,
            7,
            1,
            ShardFault::WrongHash {
                got: ShardId([0; 32]),
            },
        );
        catch(&a, 7, 1, ShardFault::WrongLength { got: 1, want: 2 });
        catch(
            &a,
            9,
            2,
            ShardFault::BadProof(ProofError::WrongProofLength { got: 1, want: 2 }),
        );
        assert_eq!(a.bad_replies(), 3);
        let mut e = Encoder::new();
        a.render(&mut e);
        let text = e.finish();
        assert!(
            text.contains(
                r#"tessera_shard_bad_replies_total{server="0x0000000000000007",kind="hash"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kind="proof"} 1"#), "{text}");
        let taken = a.take(10);
        assert_eq!(taken.len(), 2);
        assert!(a.take(10).is_empty());
        a.requeue(taken);
        assert_eq!(a.take(1).len(), 1);
        assert_eq!(a.take(10).len(), 1);
    }
}
