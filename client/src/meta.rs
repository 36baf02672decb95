//! The metadata client: namespace reads and writes, placements and the chunkserver list,
//! through the cluster client (`tessera-cluster`: leader hints, retries with backoff until
//! a deadline), without ever applying a change twice.
//!
//! Each write carries this client's session and a fresh sequence number; a retry after a
//! timeout or a leader change re-sends the same number, and the state machine answers it
//! with the first reply. `seq_floor` tells the group which replies it may forget: the lowest
//! sequence number still in flight.

use crate::cap_cache::{self, CapCache, Reach};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_cluster::{CallError, ClusterClient, Retry};
use tessera_proto::fs::{Attr, DirEntry, Ino};
use tessera_proto::meta::{
    ChunkserverInfo, DamagedShard, ListChunkservers, MetaRead, MetaWrite, Op, PlaceRequest,
    PlaceStripes, Query, ReachabilityReport, ReadRequest, Reply, ReportReachability, ReportShards,
    Response, ServiceError, WaitRecall, WaitRecallRequest, WriteRequest, WriteSettings,
};
use tessera_rpc::{RpcConfig, Secret};

/// Why a metadata call failed for good.
pub type MetaClientError = CallError<ServiceError>;

/// Retry and deadline settings (the cluster client's [`Retry`]; the default keeps trying for
/// 30 s across leader changes).
pub type MetaClientOptions = Retry;

/// A client of the metadata group. Share it behind an `Arc`.
#[derive(Debug)]
pub struct MetaClient {
    cluster: ClusterClient,
    options: Retry,
    session: AtomicU64,
    next_seq: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
    /// What this client caches under capabilities (`None`: nothing, every read asks).
    caps: Option<Arc<CapCache>>,
    /// Held (written) while opens made under caps are being reported; releases wait for it
    /// (shared), so a release never reaches the leader before the open it drops.
    reporting: tokio::sync::RwLock<()>,
}

impl MetaClient {
    /// A client for the group whose members include `addrs` (any subset will do: the leader
    /// is found from there).
    pub fn new(addrs: &[String], secret: Secret, rpc: RpcConfig, options: Retry) -> Self {
        Self {
            cluster: ClusterClient::new(addrs, secret, rpc),
            options,
            session: AtomicU64::new(0),
            next_seq: AtomicU64::new(1),
            in_flight: Mutex::new(BTreeSet::new()),
            caps: None,
            reporting: tokio::sync::RwLock::new(()),
        }
    }

    /// Caches directory listings and attributes under capabilities (`cap_cache.rs`) for a
    /// session renewed with `lease`. Recalls are answered only while
    /// [`answer_recalls`](Self::answer_recalls) runs: start it with the session.
    pub fn with_caps(mut self, lease: Duration) -> Self {
        self.caps = Some(Arc::new(CapCache::new(lease)));
        self
    }

    /// The cluster client underneath, for leader-only calls this type has no method for.
    pub fn cluster(&self) -> &ClusterClient {
        &self.cluster
    }

    /// The session this client's writes carry (0 before [`MetaClient::open_session`]).
    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Relaxed)
    }

    /// Opens a session so writes are deduplicated and open files and locks are owned by it.
    pub async fn open_session(
        &self,
        client_name: &str,
        lease: Duration,
    ) -> Result<u64, MetaClientError> {
        let op = Op::OpenSession {
            client: client_name.to_string(),
            lease_ns: lease.as_nanos() as i64,
        };
        let sent = Instant::now();
        match self.send(0, 0, op).await? {
            Ok(Response::Session { id, .. }) => {
                self.session.store(id, Ordering::Relaxed);
                // A session new to this cache: no open made under caps to report.
                let none = self.renewed(id, sent);
                debug_assert!(none.is_empty(), "a new session with unreported opens");
                Ok(id)
            }
            other => Err(CallError::Refused {
                addr: self.cluster.leader().unwrap_or_default(),
                error: ServiceError::Unavailable {
                    reason: format!("unexpected reply to open-session: {other:?}"),
                },
            }),
        }
    }

    /// Takes over session `id`, opened by an earlier process of the same mount (a
    /// supervised mount's successor): writes carry it, numbered from `first_seq` (above
    /// every number the earlier process used). True if the session is alive (renewed for
    /// `lease`); false if it expired, and this client then has no session.
    pub async fn adopt_session(
        &self,
        id: u64,
        first_seq: u64,
        lease: Duration,
    ) -> Result<bool, MetaClientError> {
        self.session.store(id, Ordering::Relaxed);
        self.next_seq.store(first_seq.max(1), Ordering::Relaxed);
        let renew = Op::RenewSession {
            lease_ns: lease.as_nanos() as i64,
        };
        let sent = Instant::now();
        match self.write(renew).await? {
            Ok(_) => {
                // A session new to this cache: no open made under caps to report.
                let none = self.renewed(id, sent);
                debug_assert!(none.is_empty(), "a new session with unreported opens");
                Ok(true)
            }
            Err(_) => {
                self.session.store(0, Ordering::Relaxed);
                Ok(false)
            }
        }
    }

    /// The session's lease was renewed by a request sent at `sent`; returns the opens made
    /// under caps that must now be reported (see [`CapCache::renewed`]).
    fn renewed(&self, session: u64, sent: Instant) -> Vec<(Ino, u32)> {
        match &self.caps {
            Some(c) => c.renewed(session, sent),
            None => Vec::new(),
        }
    }

    /// Answers an open of `ino` without the leader when this client holds a cap on it and
    /// the open moves no access time (`CapCache::open_locally`): its attributes, or `None`
    /// to ask the leader.
    pub fn open_locally(&self, ino: Ino, access: Option<bool>) -> Option<(Attr, Option<i64>)> {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        self.caps
            .as_ref()?
            .open_locally(self.session(), ino, access, now_ns)
    }

    /// Drops one open of `ino` made without the leader; false if there is none, and the
    /// release must be sent.
    pub fn release_locally(&self, ino: Ino) -> bool {
        self.caps.as_ref().is_some_and(|c| c.release_locally(ino))
    }

    /// Reports every open made without the leader (before a planned handover: the next
    /// process adopts the session, not this one's memory).
    pub async fn report_all_opens(&self) {
        if let Some(c) = &self.caps {
            let _reporting = self.reporting.write().await;
            self.report_opens(c.take_unreported(None)).await;
        }
    }

    /// Tells the leader of opens this client answered alone, one `Open` each. A failure is
    /// logged: the file stays readable here, but the leader may free it at its unlink.
    async fn report_opens(&self, opens: Vec<(Ino, u32)>) {
        for (ino, n) in opens {
            for _ in 0..n {
                match self.write_uncached(Op::Open { ino }).await {
                    Ok(Ok(_)) => {}
                    other => {
                        tracing::warn!(ino, "an open made under caps was not recorded: {other:?}")
                    }
                }
            }
        }
    }

    /// Applies a change exactly once and returns its reply (a POSIX error is a reply).
    /// What the cache holds that the change may make untrue is dropped before it is sent
    /// and again once it is answered.
    pub async fn write(&self, op: Op) -> Result<Reply, MetaClientError> {
        let Some(cache) = self.caps.clone() else {
            return self.write_uncached(op).await;
        };
        let _reported = match &op {
            Op::Release { .. } | Op::ReleaseMany { .. } => Some(self.reporting.read().await),
            // A lock is taken by a session that has the file open, as the leader knows.
            Op::SetLock { ino, .. } => {
                let reporting = self.reporting.write().await;
                self.report_opens(cache.take_unreported(Some(&[*ino])))
                    .await;
                drop(reporting);
                None
            }
            _ => None,
        };
        let reach = Reach::of(&op);
        let _name_change = match reach.changes_names() {
            true => {
                let _reporting = self.reporting.write().await;
                let guard = NameChange::begin(&cache);
                self.report_opens(guard.unreported).await;
                Some(guard.done)
            }
            false => None,
        };
        let accesses = match &op {
            Op::AccessedAt { at, .. } => Some(at.clone()),
            _ => None,
        };
        // A removal keeps the directory's listing (`CapCache::removing`).
        let removal = match &op {
            Op::Unlink { parent, name } | Op::Rmdir { parent, name } => {
                Some((*parent, name.clone()))
            }
            _ => None,
        };
        let kept = |applied: bool| {
            removal
                .as_ref()
                .is_some_and(|(dir, name)| cache.removing(*dir, name, applied))
        };
        if !kept(false) {
            cache.changing(&reach);
        }
        let reply = self.write_uncached(op).await;
        if !(matches!(reply, Ok(Ok(_))) && kept(true)) {
            cache.changing(&reach);
        }
        if let Some(at) = accesses {
            cache.accesses_sent(&at);
        }
        reply
    }

    async fn write_uncached(&self, op: Op) -> Result<Reply, MetaClientError> {
        let session = self.session();
        if session == 0 {
            // Without a session there is nothing to deduplicate against.
            return self.send(0, 0, op).await;
        }
        // Numbered and marked in flight under one lock: a concurrent send computing its
        // floor in between would otherwise tell the group to forget this number before it
        // was ever sent, and the group would then refuse it as a stale replay (ESTALE).
        let seq = {
            let mut in_flight = self.lock_in_flight();
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            in_flight.insert(seq);
            seq
        };
        let result = self.send(session, seq, op).await;
        self.lock_in_flight().remove(&seq);
        result
    }

    /// A linearizable read: from the cache when caps cover it, else from the leader. The
    /// start of a directory listing fills the cache first (caps on the directory and its
    /// entries, then the whole listing).
    pub async fn read(&self, query: Query) -> Result<Reply, MetaClientError> {
        let Some(cache) = self.caps.clone() else {
            return self.read_uncached(query).await;
        };
        let mut reply = self.read_cached(&cache, query).await?;
        cache.overlay(&mut reply);
        Ok(reply)
    }

    async fn read_cached(
        &self,
        cache: &Arc<CapCache>,
        query: Query,
    ) -> Result<Reply, MetaClientError> {
        let session = self.session();
        if let Some(reply) = cache.answer(session, &query) {
            return Ok(reply);
        }
        if let Query::ReadDir {
            ino,
            after: 0,
            limit,
            plus,
        } = query
            && let Some(entries) = self.fill(cache, session, ino).await
        {
            return Ok(Ok(Response::Entries(cap_cache::page(
                &entries, 0, limit, plus,
            ))));
        }
        if let Query::Lookup { parent, .. } = &query
            && cache.missed(session, *parent)
            && self.fill(cache, session, *parent).await.is_some()
            && let Some(reply) = cache.answer(session, &query)
        {
            return Ok(reply);
        }
        let Some(epoch) = cache.begin(session) else {
            return self.read_uncached(query).await;
        };
        tracing::trace!(?query, "not cached");
        let reply = self.read_uncached(query.clone()).await?;
        cache.learn(epoch, session, &query, &reply);
        Ok(reply)
    }

    /// Caps on `dir` and its entries, then its whole listing (cached if nothing changed it
    /// meanwhile). `None` if either failed or the directory is too large to cache.
    async fn fill(&self, cache: &CapCache, session: u64, dir: Ino) -> Option<Vec<DirEntry>> {
        let epoch = cache.begin(session)?;
        let whole = Query::ReadDir {
            ino: dir,
            after: 0,
            limit: cap_cache::FILL_LIMIT,
            plus: true,
        };
        // A directory still held (its listing went with a change of this mount's own)
        // needs no grant unless it gained entries this session holds no caps on.
        let granted = !cache.holds(session, std::iter::once(dir));
        if granted {
            self.grant_dir(dir).await?;
        }
        let mut entries = self.read_entries(whole.clone()).await?;
        let entry_inos = entries.iter().filter(|e| e.name != b"..").map(|e| e.ino);
        if !granted && !cache.holds(session, entry_inos) {
            self.grant_dir(dir).await?;
            entries = self.read_entries(whole).await?;
        }
        if entries.len() >= cap_cache::FILL_LIMIT as usize {
            return None;
        }
        tracing::trace!(dir, epoch, granted, n = entries.len(), "fill");
        cache.fill(epoch, session, dir, entries.clone());
        Some(entries)
    }

    /// Shared caps on directory `dir` and its entries.
    async fn grant_dir(&self, dir: Ino) -> Option<()> {
        match self.grant_caps(vec![dir], false, true).await {
            Ok(Ok(_)) => Some(()),
            other => {
                tracing::debug!(?other, dir, "caps on a directory not granted");
                None
            }
        }
    }

    /// The entries a `ReadDir` answers, `None` on any failure (the caller asks again
    /// without the cache).
    async fn read_entries(&self, q: Query) -> Option<Vec<DirEntry>> {
        match self.read_uncached(q).await {
            Ok(Ok(Response::Entries(entries))) => Some(entries),
            _ => None,
        }
    }

    async fn read_uncached(&self, query: Query) -> Result<Reply, MetaClientError> {
        let req = ReadRequest {
            query,
            session: self.session(),
        };
        self.cluster
            .call::<MetaRead, _, _>(&req, &self.options)
            .await
    }

    /// Placements for several new stripes in one call: for each request, `count` distinct
    /// live chunkservers with room for shards of `shard_len` bytes, none in its `exclude`,
    /// chosen by the leader (favouring free space). A list shorter than asked means the
    /// servers with room ran out.
    pub async fn place_stripes(
        &self,
        stripes: Vec<PlaceRequest>,
    ) -> Result<Vec<Vec<ChunkserverInfo>>, MetaClientError> {
        self.cluster
            .call::<PlaceStripes, _, _>(&stripes, &self.options)
            .await
    }

    /// Tells the leader which chunkservers this mount cannot reach; the reply is the
    /// cluster's write rule. One quick try: the next report comes in a few seconds anyway.
    pub async fn report_reachability(
        &self,
        report: ReachabilityReport,
    ) -> Result<WriteSettings, MetaClientError> {
        let once = Retry {
            retry_unavailable: false,
            ..Retry::once(Duration::from_secs(2))
        };
        self.cluster
            .call::<ReportReachability, _, _>(&report, &once)
            .await
    }

    /// Capabilities on `inos` (with `children`, also on the entries of those directories)
    /// for this client's session (`Op::GrantCaps`); waits, on the leader, while other
    /// sessions' caps in the way are recalled.
    pub async fn grant_caps(
        &self,
        inos: Vec<Ino>,
        exclusive: bool,
        children: bool,
    ) -> Result<Reply, MetaClientError> {
        let op = Op::GrantCaps {
            inos,
            exclusive,
            children,
        };
        self.write(op).await
    }

    /// Gives this session's caps on `inos` back.
    pub async fn release_caps(&self, inos: Vec<Ino>) -> Result<Reply, MetaClientError> {
        self.write(Op::ReleaseCaps { inos }).await
    }

    /// Waits up to `wait` for the leader to recall caps of this session, and returns the
    /// inodes it wants them back on (empty when it wanted none). One try against the
    /// leader: the caller polls again, which also follows a new leader.
    pub async fn wait_recall(&self, wait: Duration) -> Result<Vec<Ino>, MetaClientError> {
        let req = WaitRecallRequest {
            session: self.session(),
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        let once = Retry {
            retry_unavailable: false,
            ..Retry::once(wait + Duration::from_secs(5))
        };
        self.cluster.call::<WaitRecall, _, _>(&req, &once).await
    }

    /// Every chunkserver the leader knows, with its address and state.
    pub async fn list_chunkservers(&self) -> Result<Vec<ChunkserverInfo>, MetaClientError> {
        self.cluster
            .call::<ListChunkservers, _, _>(&(), &self.options)
            .await
    }

    /// Hands shards whose servers sent bytes that failed verification to the leader's
    /// repair (which rebuilds them on other servers).
    pub async fn report_shards(
        &self,
        bad: Vec<tessera_proto::chunk::BadReply>,
    ) -> Result<(), MetaClientError> {
        let damaged: Vec<DamagedShard> = bad.into_iter().map(DamagedShard::from).collect();
        self.cluster
            .call::<ReportShards, _, _>(&damaged, &self.options)
            .await
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, session: u64, seq: u64, op: Op) -> Result<Reply, MetaClientError> {
        let seq_floor = self
            .lock_in_flight()
            .first()
            .copied()
            .unwrap_or_else(|| self.next_seq.load(Ordering::Relaxed));
        let req = WriteRequest {
            session,
            seq,
            seq_floor,
            op,
        };
        self.cluster
            .call::<MetaWrite, _, _>(&req, &self.options)
            .await
    }
}

/// A change of names by this client in flight (`CapCache::name_change_begins`): ends when
/// `done` is dropped, also if the write is abandoned.
struct NameChange {
    unreported: Vec<(Ino, u32)>,
    done: NameChangeDone,
}

struct NameChangeDone(Arc<CapCache>);

impl NameChange {
    fn begin(cache: &Arc<CapCache>) -> NameChange {
        NameChange {
            unreported: cache.name_change_begins(),
            done: NameChangeDone(cache.clone()),
        }
    }
}

impl Drop for NameChangeDone {
    fn drop(&mut self) {
        self.0.name_change_done();
    }
}

/// Renews a session in the background; stops when dropped.
#[derive(Debug)]
pub struct SessionKeeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetaClient {
    /// Renews this client's session every third of `lease` until the keeper is dropped, so
    /// its open files and locks outlive any single slow call but not the client itself.
    pub fn keep_session_alive(self: &Arc<Self>, lease: Duration) -> SessionKeeper {
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let sent = Instant::now();
                let r = client
                    .write(Op::RenewSession {
                        lease_ns: lease.as_nanos() as i64,
                    })
                    .await;
                match r {
                    Ok(Ok(_)) => {
                        let _reporting = client.reporting.write().await;
                        let lapsed = client.renewed(client.session(), sent);
                        client.report_opens(lapsed).await;
                    }
                    Ok(Err(e)) => {
                        if let Some(c) = &client.caps {
                            c.clear();
                        }
                        tracing::error!(
                            session = client.session(),
                            "session lease lost ({e:?}); open files and locks of this client were released"
                        );
                        return;
                    }
                    Err(e) => tracing::warn!("could not renew the session lease yet: {e}"),
                }
            }
        });
        SessionKeeper { task }
    }
}

/// Answers the leader's recalls in the background; stops when dropped.
#[derive(Debug)]
pub struct RecallAnswerer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecallAnswerer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long one recall poll waits at the leader.
const RECALL_POLL: Duration = Duration::from_secs(10);

impl MetaClient {
    /// Polls the leader for recalls of this session's caps, drops what they covered from
    /// the cache and gives them back, until dropped. `None` without caps.
    pub fn answer_recalls(self: &Arc<Self>) -> Option<RecallAnswerer> {
        let cache = self.caps.clone()?;
        let client = self.clone();
        let task = tokio::spawn(async move {
            loop {
                if client.session() == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let inos = match client.wait_recall(RECALL_POLL).await {
                    Ok(inos) => inos,
                    Err(e) => {
                        tracing::debug!("recall poll failed, polling again: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if inos.is_empty() {
                    continue;
                }
                tracing::trace!(?inos, "recalled");
                {
                    // The leader learns of this mount's opens of the files before the
                    // change that recalled them (an unlink then leaves them as orphans).
                    let _reporting = client.reporting.write().await;
                    client.report_opens(cache.recall_begins(&inos)).await;
                }
                match client.release_caps(inos.clone()).await {
                    Ok(Ok(_)) => {}
                    // The leader asks again while it waits; the next poll brings it back.
                    other => tracing::warn!("giving recalled caps back failed: {other:?}"),
                }
                cache.recall_done(&inos);
            }
        });
        Some(RecallAnswerer { task })
    }
}
