//! The leader's table of chunkservers: who they are, where they listen, how full and how
//! alive they are, and where new shards go.
//!
//! This is soft state, rebuilt from registrations after every leader change: a chunkserver
//! that heartbeats a new leader is told it is unknown and registers again within one
//! heartbeat. Stripes record chunkserver ids, never addresses, so nothing durable depends on it.
//!
//! A server's own heartbeats say it runs, not that clients can reach it. Mounts report the
//! servers their calls cannot reach (`ReportReachability`, every few seconds, an empty list
//! included); a server that a strict majority of the mounts heard from in the last
//! `REACHABILITY_WINDOW_MS` call unreachable is `Unreachable`: no new shards go there. One
//! confused mount among several cannot evict a healthy server; a lone mount can, which only
//! steers its own writes. Reports expire, so a server returns once mounts reach it again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tessera_proto::cluster::{ClusterError, Heartbeat, Registration};
use tessera_proto::meta::{
    ChunkserverInfo, ChunkserverState, MAX_PLACE_STRIPES, PlaceRequest, REACHABILITY_WINDOW_MS,
    ReachabilityReport, ServiceError, WriteSettings,
};
use tessera_proto::shard::ShardId;

/// Liveness thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// Silent this long: suspect (no new data placed there).
    pub suspect_after: Duration,
    /// Silent this long: down (its shards are to be rebuilt elsewhere).
    pub dead_after: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_secs(5),
            dead_after: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    addr: String,
    capacity: u64,
    used: u64,
    /// Shard bytes placed on it that its reported `used` may not show yet.
    placed: Promised,
    /// Time between its last two heartbeats.
    interval: Duration,
    shards: u64,
    full: bool,
    last_seen: Instant,
}

/// How long room promised by a placement is counted at most, in heartbeat intervals of its
/// server, within `PLACED_FORGET_MIN..=PLACED_FORGET`: a put that failed, or whose shard the
/// server already had (equal content), never shows in `used`, so the promise must lapse
/// soon, yet not before a put that did land shows in a heartbeat.
const PLACED_FORGET_HEARTBEATS: u32 = 3;
const PLACED_FORGET_MIN: Duration = Duration::from_millis(300);
const PLACED_FORGET: Duration = Duration::from_secs(3);

/// Room promised to placements that a server's reported use may not show yet, oldest
/// first: each heartbeat settles what its use grew by, and anything older than
/// `PLACED_FORGET` no longer counts.
#[derive(Debug, Clone, Default)]
struct Promised(std::collections::VecDeque<(Instant, u64)>);

impl Promised {
    fn add(&mut self, bytes: u64) {
        self.0.push_back((Instant::now(), bytes));
    }

    /// The server's use grew by `grew` bytes: the oldest promises landed.
    fn settle(&mut self, mut grew: u64) {
        while grew > 0 {
            let Some(front) = self.0.front_mut() else {
                break;
            };
            let took = front.1.min(grew);
            front.1 -= took;
            grew -= took;
            if front.1 == 0 {
                self.0.pop_front();
            }
        }
    }

    /// Bytes still promised, forgetting promises older than `forget`.
    fn bytes(&mut self, forget: Duration) -> u64 {
        while self.0.front().is_some_and(|(at, _)| at.elapsed() > forget) {
            self.0.pop_front();
        }
        self.0.iter().map(|(_, b)| b).sum()
    }
}

/// Shard problems reported by chunkservers, waiting for the repair scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    /// The server that reported it.
    pub server: u64,
    /// The shard.
    pub shard: ShardId,
    /// Corrupt (quarantined) rather than missing.
    pub corrupt: bool,
    /// The server served wrong bytes of it to a reader (see `DamagedShard::bad_reply`):
    /// rebuild it elsewhere, not in place.
    pub bad_reply: bool,
}

/// The leader's chunkserver table.
#[derive(Debug, Default)]
pub struct ChunkRegistry {
    liveness: Liveness,
    servers: Mutex<HashMap<u64, Entry>>,
    reports: Mutex<Vec<ShardReport>>,
    /// Servers being drained: no new shards, and repair moves theirs away.
    draining: Mutex<std::collections::HashSet<u64>>,
    /// The last reachability report of each mount, by reporter id.
    reach: Mutex<HashMap<u64, (Instant, Vec<u64>)>>,
    /// Shards beyond `k` a stripe needs stored before it is committed.
    write_spare: u8,
}

/// Most shard reports kept waiting; beyond this the oldest are dropped (a scrub finds them
/// again).
const MAX_REPORTS: usize = 100_000;

impl ChunkRegistry {
    /// An empty table (write rule: one spare shard).
    pub fn new(liveness: Liveness) -> Self {
        Self {
            liveness,
            write_spare: 1,
            ..Self::default()
        }
    }

    /// Sets the write rule mounts are told (see [`WriteSettings`]).
    pub fn with_write_spare(mut self, spare: u8) -> Self {
        self.write_spare = spare;
        self
    }

    /// The cluster's write rule, for mounts.
    pub fn write_settings(&self) -> WriteSettings {
        WriteSettings {
            spare: self.write_spare,
        }
    }

    /// Whether `stripe` has enough stored shards to be committed under the write rule.
    pub fn enough_stored(&self, stripe: &tessera_proto::fs::StripeInfo) -> bool {
        let l = &stripe.layout;
        let need = (usize::from(l.k) + usize::from(self.write_spare))
            .min(usize::from(l.k) + usize::from(l.m));
        l.shards.iter().filter(|p| p.is_stored()).count() >= need
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a registration.
    pub fn register(&self, r: Registration) {
        let mut servers = self.lock();
        let known = servers.contains_key(&r.id);
        servers.insert(
            r.id,
            Entry {
                addr: r.addr.clone(),
                capacity: r.capacity,
                used: r.used,
                placed: Promised::default(),
                interval: PLACED_FORGET,
                shards: r.shards,
                full: false,
                last_seen: Instant::now(),
            },
        );
        if !known {
            tracing::info!(id = %format!("{:#018x}", r.id), addr = %r.addr, "chunkserver registered");
        }
    }

    /// Records a heartbeat; an unknown server must register first.
    pub fn heartbeat(&self, hb: Heartbeat) -> Result<(), ClusterError> {
        {
            let mut servers = self.lock();
            let Some(e) = servers.get_mut(&hb.id) else {
                return Err(ClusterError::UnknownChunkserver { id: hb.id });
            };
            e.addr = hb.addr;
            e.capacity = hb.capacity;
            e.placed.settle(hb.used.saturating_sub(e.used));
            e.interval = e.last_seen.elapsed();
            e.used = hb.used;
            e.shards = hb.shards;
            e.full = hb.full;
            e.last_seen = Instant::now();
        }
        if !hb.corrupt.is_empty() || !hb.missing.is_empty() {
            tracing::warn!(
                server = %format!("{:#018x}", hb.id),
                corrupt = hb.corrupt.len(),
                missing = hb.missing.len(),
                "chunkserver reported damaged shards"
            );
            let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            for (shard, corrupt) in hb
                .corrupt
                .into_iter()
                .map(|s| (s, true))
                .chain(hb.missing.into_iter().map(|s| (s, false)))
            {
                reports.push(ShardReport {
                    server: hb.id,
                    shard,
                    corrupt,
                    bad_reply: false,
                });
            }
            let excess = reports.len().saturating_sub(MAX_REPORTS);
            reports.drain(..excess);
        }
        Ok(())
    }

    /// Starts or stops draining a server.
    pub fn set_draining(&self, id: u64, on: bool) {
        let mut d = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if on { d.insert(id) } else { d.remove(&id) };
        if changed {
            tracing::info!(id = %format!("{id:#018x}"), on, "chunkserver drain");
        }
    }

    /// Servers being drained.
    pub fn draining(&self) -> std::collections::HashSet<u64> {
        self.draining
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues damaged shards found by an admin tool (fsck), by a mount's reads or by a
    /// rebuild's reads for repair.
    pub fn add_reports(&self, found: Vec<tessera_proto::meta::DamagedShard>) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports.extend(found.into_iter().map(|d| ShardReport {
            server: d.server,
            shard: d.shard,
            corrupt: d.corrupt,
            bad_reply: d.bad_reply,
        }));
        let excess = reports.len().saturating_sub(MAX_REPORTS);
        reports.drain(..excess);
    }

    /// Records a mount's list of servers it cannot reach.
    pub fn report_reachability(&self, r: ReachabilityReport) {
        let mut reach = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        let window = Duration::from_millis(REACHABILITY_WINDOW_MS);
        reach.retain(|_, (at, _)| at.elapsed() < window);
        reach.insert(r.reporter, (Instant::now(), r.unreachable));
    }

    /// Servers a strict majority of the recently reporting mounts cannot reach.
    pub fn unreachable(&self) -> HashSet<u64> {
        let reach = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        let window = Duration::from_millis(REACHABILITY_WINDOW_MS);
        let recent: Vec<&Vec<u64>> = reach
            .values()
            .filter(|(at, _)| at.elapsed() < window)
            .map(|(_, list)| list)
            .collect();
        let mut votes: HashMap<u64, usize> = HashMap::new();
        for list in &recent {
            for id in list.iter().collect::<HashSet<_>>() {
                *votes.entry(*id).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|(_, n)| 2 * n > recent.len())
            .map(|(id, _)| id)
            .collect()
    }

    /// Takes the shard reports gathered so far.
    pub fn take_reports(&self) -> Vec<ShardReport> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn state(&self, e: &Entry, now: Instant) -> ChunkserverState {
        let silent = now.duration_since(e.last_seen);
        if silent >= self.liveness.dead_after {
            ChunkserverState::Down
        } else if silent >= self.liveness.suspect_after {
            ChunkserverState::Suspect
        } else {
            ChunkserverState::Up
        }
    }

    /// Every known server, by id.
    pub fn list(&self) -> Vec<ChunkserverInfo> {
        let now = Instant::now();
        let unreachable = self.unreachable();
        let draining = self.draining();
        let servers = self.lock();
        let mut out: Vec<ChunkserverInfo> = servers
            .iter()
            .map(|(id, e)| ChunkserverInfo {
                id: *id,
                addr: e.addr.clone(),
                state: match self.state(e, now) {
                    ChunkserverState::Up if unreachable.contains(id) => {
                        ChunkserverState::Unreachable
                    }
                    state => state,
                },
                capacity: e.capacity,
                used: e.used,
                shards: e.shards,
                full: e.full,
                last_heartbeat_ms: now.duration_since(e.last_seen).as_millis() as u64,
                draining: draining.contains(id),
            })
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// Chooses `count` distinct servers that are up (and reachable from mounts), not full,
    /// and have room for a shard, most free space first, spreading ties by a rotating start
    /// so concurrent writers do not all pick the same servers. When fewer than `count` are
    /// up but at least `min`, those come back (a degraded write).
    ///
    /// `reserved_bytes` (file bytes preallocated and not written yet) is room held back:
    /// a stripe not written into a reservation gets no servers (its writer ENOSPC) when the
    /// candidates' free space, less those bytes in its own code's shard bytes, cannot take
    /// its shards.
    pub fn place(
        &self,
        req: &PlaceRequest,
        reserved_bytes: u64,
    ) -> Result<Vec<ChunkserverInfo>, ServiceError> {
        static ROTATE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let draining = self.draining();
        let live: Vec<ChunkserverInfo> = self
            .list()
            .into_iter()
            .filter(|s| s.state == ChunkserverState::Up && !req.exclude.contains(&s.id))
            .filter(|s| !draining.contains(&s.id))
            .collect();
        let live_count = live.len();
        // Room counts what was placed but not yet reported (see `Promised`) as used.
        let placed: HashMap<u64, u64> = self
            .lock()
            .iter_mut()
            .map(|(id, e)| {
                let forget =
                    (e.interval * PLACED_FORGET_HEARTBEATS).clamp(PLACED_FORGET_MIN, PLACED_FORGET);
                (*id, e.placed.bytes(forget))
            })
            .collect();
        let mut live = live;
        for s in &mut live {
            s.used = s
                .used
                .saturating_add(placed.get(&s.id).copied().unwrap_or(0));
        }
        let mut candidates: Vec<ChunkserverInfo> = live
            .into_iter()
            .filter(|s| !s.full && s.capacity.saturating_sub(s.used) >= req.shard_len)
            .collect();
        let count = usize::from(req.count);
        let min = match usize::from(req.min) {
            0 => count,
            min => min.min(count),
        };
        if candidates.len() < count {
            let known = self.lock().len();
            let why = format!(
                "only {} of the {known} known chunkservers are up, reachable, not excluded and \
                 have room for a {}-byte shard ({live_count} up); a stripe needs {count}, at \
                 least {min}",
                candidates.len(),
                req.shard_len
            );
            if candidates.len() < min && known < min {
                // Fewer servers registered than a stripe needs: a new leader still hearing
                // from them, or a cluster still starting. The caller retries through it.
                return Err(ServiceError::Unavailable { reason: why });
            }
            // The caller writes a degraded stripe on these (at least `min`), or reports the
            // shortage: too few up (EIO) or full (ENOSPC).
            tracing::debug!("{why}");
        }
        if candidates.is_empty() {
            return Ok(candidates);
        }
        if !req.reserved && reserved_bytes > 0 {
            let k = u64::from(req.k.max(1));
            let shards = reserved_bytes.div_ceil(k) * u64::from(req.count);
            // Shard files carry a header and a hash list besides the bytes (under 0.1%).
            let held = shards + shards / 256;
            let room: u64 = candidates
                .iter()
                .map(|s| s.capacity.saturating_sub(s.used))
                .sum();
            let needs = req.shard_len * u64::from(req.count);
            if room.saturating_sub(held) < needs {
                tracing::debug!(
                    "{needs} shard bytes refused: {room} free, {held} held for preallocations"
                );
                return Ok(Vec::new());
            }
        }
        // Free space in coarse buckets (1 GiB), so servers with similar room share the load.
        candidates.sort_by_key(|s| std::cmp::Reverse(s.capacity.saturating_sub(s.used) >> 30));
        let start = ROTATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let top = candidates[0].capacity.saturating_sub(candidates[0].used) >> 30;
        let same = candidates
            .iter()
            .take_while(|s| s.capacity.saturating_sub(s.used) >> 30 == top)
            .count();
        if same > 1 {
            candidates[..same].rotate_left(start % same);
        }
        candidates.truncate(count);
        let mut servers = self.lock();
        for s in &candidates {
            if let Some(e) = servers.get_mut(&s.id) {
                e.placed.add(req.shard_len);
            }
        }
        drop(servers);
        // Callers see what the servers last reported.
        for s in &mut candidates {
            s.used = s
                .used
                .saturating_sub(placed.get(&s.id).copied().unwrap_or(0));
        }
        Ok(candidates)
    }
}

impl ChunkRegistry {
    /// [`Self::place`] for every request of one flush, in order.
    pub fn place_many(
        &self,
        reqs: &[PlaceRequest],
        reserved_bytes: u64,
    ) -> Result<Vec<Vec<ChunkserverInfo>>, ServiceError> {
        if reqs.len() > MAX_PLACE_STRIPES {
            return Err(ServiceError::Unavailable {
                reason: format!(
                    "{} stripes in one placement request; at most {MAX_PLACE_STRIPES}",
                    reqs.len()
                ),
            });
        }
        reqs.iter().map(|r| self.place(r, reserved_bytes)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: u64, free_gib: u64) -> Registration {
        Registration {
            id,
            addr: format!("127.0.0.1:{}", 9000 + id),
            capacity: (free_gib + 1) << 30,
            used: 1 << 30,
            shards: 0,
        }
    }

    #[test]
    fn placement_picks_distinct_servers_with_room() {
        let r = ChunkRegistry::new(Liveness::default());
        for id in 1..=6 {
            r.register(reg(id, 10));
        }
        let req = PlaceRequest {
            count: 6,
            shard_len: 1 << 20,
            exclude: vec![],
            min: 0,
            k: 4,
            reserved: false,
        };
        let picked = r.place(&req, 0).unwrap();
        let mut ids: Vec<u64> = picked.iter().map(|s| s.id).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
        // One server short, a degraded write allowed: the five others.
        let degraded = PlaceRequest {
            exclude: vec![3],
            min: 5,
            ..req.clone()
        };
        let picked = r.place(&degraded, 0).unwrap();
        assert_eq!(picked.len(), 5);
        assert!(picked.iter().all(|s| s.id != 3));
        // Below the minimum with every server known: the short list, for the caller to
        // report (it is not a transient state to wait out).
        let short = PlaceRequest {
            exclude: vec![1, 2],
            ..degraded
        };
        assert_eq!(r.place(&short, 0).unwrap().len(), 4);
    }

    #[test]
    fn too_few_servers_registered_is_retryable() {
        let r = ChunkRegistry::new(Liveness::default());
        for id in 1..=3 {
            r.register(reg(id, 10));
        }
        let req = PlaceRequest {
            count: 6,
            shard_len: 1 << 20,
            exclude: vec![],
            min: 5,
            k: 4,
            reserved: false,
        };
        assert!(matches!(
            r.place(&req, 0),
            Err(ServiceError::Unavailable { .. })
        ));
    }

    #[test]
    fn a_server_most_mounts_cannot_reach_gets_no_new_shards() {
        let r = ChunkRegistry::new(Liveness::default());
        for id in 1..=7 {
            r.register(reg(id, 10));
        }
        let report = |reporter, unreachable| ReachabilityReport {
            reporter,
            unreachable,
        };
        let req = PlaceRequest {
            count: 6,
            shard_len: 1 << 20,
            exclude: vec![],
            min: 5,
            k: 4,
            reserved: false,
        };
        // One of two mounts: not a majority, the server stays.
        r.report_reachability(report(100, vec![4]));
        r.report_reachability(report(200, vec![]));
        assert!(r.unreachable().is_empty());
        assert!(r.list().iter().all(|s| s.state == ChunkserverState::Up));
        // Two of three: avoided, shown, and never placed on.
        r.report_reachability(report(300, vec![4]));
        assert_eq!(r.unreachable(), HashSet::from([4]));
        let state = |id| r.list().into_iter().find(|s| s.id == id).unwrap().state;
        assert_eq!(state(4), ChunkserverState::Unreachable);
        for _ in 0..20 {
            let picked = r.place(&req, 0).unwrap();
            assert_eq!(picked.len(), 6);
            assert!(picked.iter().all(|s| s.id != 4));
        }
        // The mounts reach it again.
        r.report_reachability(report(100, vec![]));
        assert_eq!(state(4), ChunkserverState::Up);
    }

    #[test]
    fn one_call_places_every_stripe_of_a_flush() {
        let r = ChunkRegistry::new(Liveness::default());
        for id in 1..=6 {
            r.register(reg(id, 10));
        }
        let req = |exclude: Vec<u64>| PlaceRequest {
            count: 3,
            shard_len: 1 << 20,
            exclude,
            min: 0,
            k: 4,
            reserved: false,
        };
        let placed = r.place_many(&[req(vec![]), req(vec![1, 2, 3])], 0).unwrap();
        assert_eq!(placed.len(), 2);
        assert!(placed.iter().all(|p| p.len() == 3));
        assert!(placed[1].iter().all(|s| s.id > 3), "{:?}", placed[1]);
        // A stripe that cannot be placed in full gets the servers there are.
        let placed = r
            .place_many(&[req(vec![]), req(vec![1, 2, 3, 4])], 0)
            .unwrap();
        assert_eq!(placed[1].len(), 2);
    }

    #[test]
    fn heartbeat_from_an_unknown_server_asks_it_to_register() {
        let r = ChunkRegistry::new(Liveness::default());
        let hb = Heartbeat {
            id: 7,
            addr: "x".into(),
            capacity: 1,
            used: 0,
            shards: 0,
            full: false,
            corrupt: vec![],
            missing: vec![],
        };
        assert_eq!(
            r.heartbeat(hb),
            Err(ClusterError::UnknownChunkserver { id: 7 })
        );
    }

    #[test]
    fn silent_servers_become_suspect_then_down() {
        let r = ChunkRegistry::new(Liveness {
            suspect_after: Duration::from_millis(20),
            dead_after: Duration::from_millis(60),
        });
        r.register(reg(1, 10));
        assert_eq!(r.list()[0].state, ChunkserverState::Up);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(r.list()[0].state, ChunkserverState::Suspect);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(r.list()[0].state, ChunkserverState::Down);
    }

    #[test]
    fn room_held_for_preallocations_refuses_other_stripes_only() {
        // Each check on a fresh registry: placing promises room until the next heartbeat.
        let three_servers = || {
            let r = ChunkRegistry::new(Liveness::default());
            for id in 1..=3 {
                r.register(reg(id, 1));
            }
            r
        };
        // 3 GiB free; a 2+1 stripe of 3 x 256 MiB shards.
        let req = PlaceRequest {
            count: 3,
            shard_len: 256 << 20,
            exclude: vec![],
            min: 0,
            k: 2,
            reserved: false,
        };
        assert_eq!(three_servers().place(&req, 0).unwrap().len(), 3);
        // 1.25 GiB preallocated: 1.875 GiB of shards held back (and 0.4% for their files'
        // headers), over 1.1 GiB left, enough.
        assert_eq!(three_servers().place(&req, 5 << 28).unwrap().len(), 3);
        // 1.75 GiB preallocated: 2.625 GiB held, under 0.375 GiB left, not enough.
        assert!(three_servers().place(&req, 7 << 28).unwrap().is_empty());
        let into_reservation = PlaceRequest {
            reserved: true,
            ..req.clone()
        };
        assert_eq!(
            three_servers()
                .place(&into_reservation, 7 << 28)
                .unwrap()
                .len(),
            3
        );
        // Room placed since the last heartbeat counts as used: a second 0.75 GiB stripe
        // finds 2.25 GiB, and with 1.25 GiB preallocated that is too little.
        let r = three_servers();
        assert_eq!(r.place(&req, 5 << 28).unwrap().len(), 3);
        assert!(r.place(&req, 5 << 28).unwrap().is_empty());
    }

    #[test]
    fn promised_room_settles_oldest_first() {
        let mut p = Promised::default();
        let forget = Duration::from_secs(1);
        p.add(100);
        p.add(50);
        assert_eq!(p.bytes(forget), 150);
        p.settle(120);
        assert_eq!(p.bytes(forget), 30);
        p.settle(1000);
        assert_eq!(p.bytes(forget), 0);
        // A promise the server's use never shows (an equal shard it had already) expires.
        p.0.push_back((Instant::now() - forget - Duration::from_millis(1), 7));
        p.add(5);
        assert_eq!(p.bytes(forget), 5);
    }
}
