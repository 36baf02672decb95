//! Reading a stripe: the data shards a range needs, with a fallback to parity.
//!
//! The fast path fetches only the pieces of data shards that cover the range, all at once;
//! a piece that covers all the data of its shard is fetched whole and hashed here, smaller
//! pieces are ranged reads checked here with their proofs. When a piece fails (server
//! unknown or unreachable, shard missing or `Corrupt`, bytes that do not verify: a bad
//! reply, logged, counted and queued for a report by [`super::ReadAudit`]) or is slow, the read
//! turns degraded: it fetches whole shards, data first then parity, until `k` verified ones
//! are in, reconstructs the data and cuts the range. Degraded reads keep the fast path's
//! calls running (whichever finishes first wins) and, every `slow_shard` without an answer,
//! start one more shard beyond `k`, so one slow server delays a read by `slow_shard`, not by
//! the whole deadline. A read fails only when fewer than `k` shards can be had, or at its
//! deadline; the error names the stripe and every shard that failed.
//!
//! Rebuilding one shard for repair is the degraded read from the start, without that shard.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::fs::{StripeId, StripeInfo, StripeLayout};
use tessera_rpc::Client;
use tokio::time::{Instant, sleep_until};
use tracing::debug;

use super::audit::Caught;
use super::tasks::Tasks;
use super::{Addrs, ChunkClient, Get};
use crate::codec::{Codec, decode::Verified};
use crate::error::{CodecError, Failures, ReadError, ShardFailure, ShardFault};
use crate::layout::{self, Piece, data_span};

impl ChunkClient {
    /// Bytes `range` of the stripe's data (see the module docs for how). `range` must lie
    /// within `0..data_len`; an empty range reads nothing.
    pub async fn read(
        &self,
        stripe: &StripeInfo,
        addrs: Addrs<'_>,
        range: Range<u64>,
    ) -> Result<Bytes, ReadError> {
        let id = stripe.id;
        let layout = &stripe.layout;
        let codec = self.codec_for(id, layout)?;
        if range.start > range.end || range.end > layout.data_len {
            return Err(ReadError::BadRange {
                stripe: id,
                start: range.start,
                end: range.end,
                data_len: layout.data_len,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let pieces = layout::pieces(layout, &range);
        let mut gather = Gather::new(self, id, layout, addrs, pieces, None);
        match gather.run().await? {
            Gathered::Pieces(mut parts) => {
                if parts.len() == 1 {
                    return Ok(parts.swap_remove(0));
                }
                let mut out = tessera_rpc::pool::take((range.end - range.start) as usize);
                for p in &parts {
                    out.extend_from_slice(p);
                }
                Ok(tessera_rpc::pool::freeze(out))
            }
            Gathered::Shards(chosen) => {
                let data = codec
                    .decode_verified(layout, chosen)
                    .map_err(|source| ReadError::Decode { stripe: id, source })?;
                Ok(data.slice(range.start as usize..range.end as usize))
            }
        }
    }

    /// Rebuilds shard `index` of the stripe from `k` of its other shards, checked against
    /// its id, for repair: the caller then puts it on a new server.
    pub async fn rebuild_shard(
        &self,
        stripe: &StripeInfo,
        addrs: Addrs<'_>,
        index: usize,
    ) -> Result<Bytes, ReadError> {
        let id = stripe.id;
        let layout = &stripe.layout;
        let codec = self.codec_for(id, layout)?;
        let total = layout.shards.len();
        if index >= total {
            return Err(ReadError::Layout {
                stripe: id,
                source: CodecError::NoSuchShard { index, total },
            });
        }
        let mut gather = Gather::new(self, id, layout, addrs, Vec::new(), Some(index));
        match gather.run().await? {
            Gathered::Shards(chosen) => codec
                .rebuild_verified(layout, chosen, index)
                .map_err(|source| ReadError::Decode { stripe: id, source }),
            // With no pieces wanted the fast path is never taken.
            Gathered::Pieces(_) => Err(ReadError::Decode {
                stripe: id,
                source: CodecError::NoSuchShard { index, total },
            }),
        }
    }

    fn codec_for(&self, stripe: StripeId, layout: &StripeLayout) -> Result<Arc<Codec>, ReadError> {
        let bad = |source| ReadError::Layout { stripe, source };
        layout::check(layout).map_err(bad)?;
        self.codec(layout.k, layout.m).map_err(bad)
    }
}

/// What a finished gather has: the fast path's pieces in order, or `k` verified whole
/// shards sorted by index.
enum Gathered {
    Pieces(Vec<Bytes>),
    Shards(Vec<Verified>),
}

/// One call in flight: for shard `index`, the fast path's piece `piece` and/or the whole
/// shard.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    index: usize,
    piece: Option<usize>,
    whole: bool,
    /// When the call started, for the server's latency in [`super::Health`].
    started: Instant,
}

#[derive(Debug, Clone)]
enum Whole {
    Untried,
    InFlight,
    Got(Bytes),
}

struct Gather<'a> {
    client: &'a ChunkClient,
    stripe: StripeId,
    layout: &'a StripeLayout,
    addrs: Addrs<'a>,
    k: usize,
    pieces: Vec<Piece>,
    got: Vec<Option<Bytes>>,
    whole: Vec<Whole>,
    /// Shards that failed once: never asked again in this read.
    failed: Vec<bool>,
    /// Shards whose fast-path call was still out when the read turned degraded: asked for
    /// whole only after every other shard.
    suspect: Vec<bool>,
    /// Never fetched (the shard being rebuilt).
    skip: Option<usize>,
    failures: Vec<ShardFailure>,
    tasks: Tasks<Fetch, Result<Bytes, ShardFault>>,
    degraded: bool,
    /// Whole-shard calls allowed beyond `k`, one more per slow interval.
    extra: usize,
    /// When the read gives up.
    deadline: Instant,
}

/// Least time a call must have been out, when its read is done without it, to count as
/// unanswered (see `Gather::note_stragglers`).
const STRAGGLER_LIMIT: Duration = Duration::from_secs(1);

/// How long a shard call outlives its read's deadline (see `Gather::launch`).
const CALL_GRACE: Duration = Duration::from_millis(100);

impl<'a> Gather<'a> {
    fn new(
        client: &'a ChunkClient,
        stripe: StripeId,
        layout: &'a StripeLayout,
        addrs: Addrs<'a>,
        pieces: Vec<Piece>,
        skip: Option<usize>,
    ) -> Self {
        let n = layout.shards.len();
        Gather {
            client,
            stripe,
            layout,
            addrs,
            k: usize::from(layout.k),
            got: vec![None; pieces.len()],
            pieces,
            whole: vec![Whole::Untried; n],
            failed: vec![false; n],
            suspect: vec![false; n],
            skip,
            failures: Vec::new(),
            tasks: Tasks::new(),
            degraded: false,
            extra: 0,
            deadline: Instant::now() + client.config.read_timeout,
        }
    }

    async fn run(&mut self) -> Result<Gathered, ReadError> {
        let deadline = self.deadline;
        let slow = self.hedge_delay();
        let mut hedge_at = Instant::now() + slow;
        if self.pieces.is_empty() {
            self.degrade();
        } else {
            let mut skipped = false;
            for p in 0..self.pieces.len() {
                let piece = &self.pieces[p];
                // A server this process cannot reach now is not waited for: its shard is
                // read around from the start (and asked for only if nothing else is left).
                if self
                    .client
                    .health
                    .unreachable(self.layout.shards[piece.index].server)
                {
                    self.suspect[piece.index] = true;
                    skipped = true;
                    continue;
                }
                let span = data_span(self.layout, piece.index);
                // A piece with all of its shard's data is fetched whole (padding is at most
                // one shard): then it is verified here and can feed a reconstruction.
                let whole = piece.shard.start == 0 && piece.shard.end == span.end - span.start;
                let fetch = Fetch {
                    index: piece.index,
                    piece: Some(p),
                    whole,
                    started: Instant::now(),
                };
                self.launch(fetch);
            }
            if skipped {
                debug!(stripe = %self.stripe, "a data shard's server is unreachable; reading parity");
                self.degrade();
            }
        }
        loop {
            if let Some(done) = self.finished() {
                self.note_stragglers(slow);
                return Ok(done);
            }
            if !self.can_finish() || self.tasks.is_empty() {
                return Err(self.unavailable());
            }
            enum Event {
                Done(Fetch, Result<Result<Bytes, ShardFault>, String>),
                Slow,
                Deadline,
            }
            let event = tokio::select! {
                next = self.tasks.next() => match next {
                    Some((fetch, out)) => Event::Done(fetch, out),
                    None => continue,
                },
                () = sleep_until(hedge_at) => Event::Slow,
                () = sleep_until(deadline) => Event::Deadline,
            };
            match event {
                Event::Done(fetch, out) => {
                    let out = out.unwrap_or_else(|reason| Err(ShardFault::Lost { reason }));
                    self.on_result(fetch, out);
                }
                Event::Slow => {
                    hedge_at = Instant::now() + slow;
                    if self.degraded {
                        self.extra += 1;
                    } else {
                        for f in self.tasks.running() {
                            self.suspect[f.index] = true;
                        }
                        debug!(stripe = %self.stripe, "data shards slow; reading parity too");
                    }
                    self.degrade();
                }
                Event::Deadline => {
                    let ms = self.client.config.read_timeout.as_millis() as u64;
                    let mut running: Vec<usize> = self.tasks.running().map(|f| f.index).collect();
                    running.sort_unstable();
                    running.dedup();
                    for index in running {
                        self.fail(index, ShardFault::Unanswered { ms });
                    }
                    return Err(ReadError::TimedOut {
                        stripe: self.stripe,
                        ms,
                        failures: Failures(std::mem::take(&mut self.failures)),
                    });
                }
            }
        }
    }

    /// Calls still out when the read is done, and out for much longer than their server
    /// usually takes (four hedge delays, at least 1 s): counted as unanswered, so a server
    /// that stopped answering is skipped by the next reads instead of costing each one a
    /// hedge delay. Dropping the read aborts them.
    fn note_stragglers(&self, hedge: Duration) {
        let limit = (hedge * 4).max(STRAGGLER_LIMIT);
        for f in self.tasks.running() {
            let out_for = f.started.elapsed();
            if out_for > limit {
                let fault = ShardFault::Unanswered {
                    ms: out_for.as_millis() as u64,
                };
                let server = self.layout.shards[f.index].server;
                self.client.health.failed(server, &fault);
            }
        }
    }

    /// How long to wait for the fast path's shards before reading parity too: the longest
    /// of their servers' learnt delays (see [`super::Health::hedge_delay`]).
    fn hedge_delay(&self) -> Duration {
        let ceiling = self.client.config.slow_shard.max(Duration::from_millis(1));
        let health = &self.client.health;
        self.pieces
            .iter()
            .map(|p| health.hedge_delay(self.layout.shards[p.index].server, ceiling))
            .max()
            .unwrap_or(ceiling)
    }

    /// Starts `fetch`, or records at once that its server has no address.
    fn launch(&mut self, fetch: Fetch) {
        let place = self.layout.shards[fetch.index];
        let Some(addr) = (self.addrs)(place.server) else {
            self.on_result(
                fetch,
                Err(ShardFault::NoAddress {
                    server: place.server,
                }),
            );
            return;
        };
        if fetch.whole {
            self.whole[fetch.index] = Whole::InFlight;
        }
        let client: Arc<Client> = self.client.peer(&addr);
        // A call may not outlive the read, and ends a little after it: at the deadline the
        // read reports `TimedOut` with the calls still out, not each call's own timeout.
        let get = Get {
            client,
            audit: self.client.audit.clone(),
            id: place.shard,
            shard_len: Some(self.layout.shard_len),
            timeout: self.deadline.saturating_duration_since(Instant::now()) + CALL_GRACE,
        };
        let range = fetch.piece.map(|p| self.pieces[p].shard.clone());
        let align = self.client.config.read_align;
        self.tasks.spawn(fetch, async move {
            match (fetch.whole, range) {
                (false, Some(range)) => get.range(range, align).await,
                _ => get.whole().await,
            }
        });
    }

    fn on_result(&mut self, fetch: Fetch, out: Result<Bytes, ShardFault>) {
        let server = self.layout.shards[fetch.index].server;
        match &out {
            Ok(_) => self
                .client
                .health
                .answered(server, fetch.started.elapsed(), true),
            Err(fault) => {
                self.client.health.failed(server, fault);
            }
        }
        match out {
            Ok(bytes) => {
                if let Some(p) = fetch.piece {
                    let part = if fetch.whole {
                        let r = &self.pieces[p].shard;
                        bytes.slice(r.start as usize..r.end as usize)
                    } else {
                        bytes.clone()
                    };
                    self.got[p] = Some(part);
                }
                if fetch.whole {
                    self.whole[fetch.index] = Whole::Got(bytes);
                }
            }
            Err(fault) => {
                if fetch.whole {
                    self.whole[fetch.index] = Whole::Untried;
                }
                self.fail(fetch.index, fault);
                self.degrade();
            }
        }
    }

    fn fail(&mut self, index: usize, fault: ShardFault) {
        let place = self.layout.shards[index];
        if fault.is_bad_reply() {
            let addr = (self.addrs)(place.server);
            self.client.audit.bad_reply(Caught {
                server: place.server,
                addr: addr.as_deref(),
                stripe: self.stripe,
                index,
                shard: place.shard,
                fault: &fault,
            });
        }
        let failure = ShardFailure {
            index,
            shard: place.shard,
            server: place.server,
            fault,
        };
        debug!(stripe = %self.stripe, "{failure}");
        self.failed[index] = true;
        self.failures.push(failure);
    }

    /// Turns (or keeps) the read degraded: whole-shard calls until `k + extra` are out or in.
    fn degrade(&mut self) {
        self.degraded = true;
        while self.active() < self.k + self.extra {
            let Some(index) = self.next_candidate() else {
                break;
            };
            self.launch(Fetch {
                index,
                piece: None,
                whole: true,
                started: Instant::now(),
            });
        }
    }

    /// Whole shards in hand or on their way, not counting calls to suspects: a suspect
    /// must not hold back the call that replaces it. Counted afresh on each launch, since a
    /// launch that fails at once (no address) recurses into `degrade` and may top up.
    fn active(&self) -> usize {
        self.whole
            .iter()
            .enumerate()
            .filter(|(i, w)| match w {
                Whole::Got(_) => true,
                Whole::InFlight => !self.suspect[*i],
                Whole::Untried => false,
            })
            .count()
    }

    /// The next shard to fetch whole: data before parity, suspects last.
    fn next_candidate(&self) -> Option<usize> {
        let open = |i: &usize| {
            !self.failed[*i] && matches!(self.whole[*i], Whole::Untried) && Some(*i) != self.skip
        };
        let n = self.whole.len();
        (0..n)
            .filter(open)
            .find(|i| !self.suspect[*i])
            .or_else(|| (0..n).find(open))
    }

    fn finished(&mut self) -> Option<Gathered> {
        if !self.pieces.is_empty() && self.got.iter().all(Option::is_some) {
            return Some(Gathered::Pieces(
                self.got.iter_mut().flatten().map(std::mem::take).collect(),
            ));
        }
        let have: Vec<Verified> = self
            .whole
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                Whole::Got(b) => Some((i, b.clone())),
                _ => None,
            })
            .take(self.k)
            .collect();
        (self.degraded && have.len() == self.k).then_some(Gathered::Shards(have))
    }

    /// Whether success is still possible: every missing piece's shard is still in play, or
    /// enough shards are left to reconstruct from.
    fn can_finish(&self) -> bool {
        let fast = !self.pieces.is_empty()
            && self
                .pieces
                .iter()
                .zip(&self.got)
                .all(|(p, got)| got.is_some() || !self.failed[p.index]);
        let left = (0..self.whole.len())
            .filter(|i| !self.failed[*i] && Some(*i) != self.skip)
            .count();
        fast || left >= self.k
    }

    fn unavailable(&mut self) -> ReadError {
        let usable = (0..self.whole.len())
            .filter(|i| !self.failed[*i] && Some(*i) != self.skip)
            .count();
        ReadError::Unavailable {
            stripe: self.stripe,
            usable,
            need: self.k,
            failures: Failures(std::mem::take(&mut self.failures)),
        }
    }
}
