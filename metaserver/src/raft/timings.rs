//! How long each step of a Raft write and read takes on this member, for `/metrics`.
//!
//! A commit as the leader's service sees it (`commit`: from proposing a command to its
//! applied reply) is the sum of steps measured here and there: appending to the log
//! (`log_append`, a non-durable redb commit), the durable flush that a group of appends
//! shares (`log_sync`, which is where the disk's `fdatasync` is paid), the followers' same
//! two steps behind one network round trip (their own figures, and the `raft-append` RPC's
//! latency in the leader's client metrics), and applying the committed batch to the
//! namespace (`apply`). What is left over is scheduling: the hand-offs between the Raft core
//! task, the blocking pool and the syncer thread. `read` is the confirmation a linearizable
//! read waits for (a lease check, or a read-index round when the lease cannot be used).
//!
//! Process-wide statics, like the RPC layer's client metrics: the steps happen in the log
//! store, the state machine and the read gate, which share no owner to hang them on.

use std::time::{Duration, Instant};
use tessera_metrics::{Counter, Encoder, Histogram, Kind, RecentLatency};

/// One step: every observation in a histogram, the latest few thousand for exact quantiles.
#[derive(Debug)]
pub struct Step {
    name: &'static str,
    all: Histogram,
    recent: RecentLatency,
}

impl Step {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            all: Histogram::new(),
            recent: RecentLatency::new(),
        }
    }

    /// Records one run of the step that began at `started`.
    pub fn since(&self, started: Instant) {
        self.observe(started.elapsed());
    }

    fn observe(&self, d: Duration) {
        self.all.observe(d);
        self.recent.observe(d);
    }
}

pub static COMMIT: Step = Step::new("commit");
pub static LOG_APPEND: Step = Step::new("log_append");
pub static LOG_SYNC: Step = Step::new("log_sync");
pub static APPLY: Step = Step::new("apply");
pub static READ: Step = Step::new("read");

const STEPS: [&Step; 5] = [&COMMIT, &LOG_APPEND, &LOG_SYNC, &APPLY, &READ];

/// Reads served under the leader's lease, and those that needed a read-index round.
pub static LEASE_READS: Counter = Counter::new();
pub static READ_INDEX_ROUNDS: Counter = Counter::new();

/// Quantiles shown from the recent window.
const QUANTILES: [(f64, &str); 2] = [(0.5, "0.5"), (0.99, "0.99")];

/// Writes every step's families.
pub fn render(e: &mut Encoder) {
    e.family(
        "tessera_raft_step_seconds",
        Kind::Histogram,
        "Time taken by each step of Raft on this member: commit (propose to applied reply, \
         leader), log_append, log_sync (the durable flush appends share), apply (one batch), \
         read (confirming a linearizable read).",
    );
    for step in STEPS {
        e.histogram(
            "tessera_raft_step_seconds",
            &[("step", step.name)],
            &step.all.snapshot(),
        );
    }
    e.family(
        "tessera_raft_step_recent_seconds",
        Kind::Gauge,
        "Quantiles (0.5, 0.99) of each Raft step over its last 4096 runs on this member.",
    );
    for step in STEPS {
        let qs: Vec<f64> = QUANTILES.iter().map(|(q, _)| *q).collect();
        if let Some(values) = step.recent.quantiles(&qs) {
            for ((_, label), v) in QUANTILES.iter().zip(values) {
                e.sample(
                    "tessera_raft_step_recent_seconds",
                    &[("step", step.name), ("quantile", label)],
                    v,
                );
            }
        }
    }
    e.counter(
        "tessera_raft_lease_reads_total",
        "Linearizable read confirmations served under the leader's lease (no round trip).",
        LEASE_READS.get(),
    );
    e.counter(
        "tessera_raft_read_index_rounds_total",
        "Read-index rounds run because the lease could not be used (expired, or a \
         leadership transfer in progress).",
        READ_INDEX_ROUNDS.get(),
    );
}
