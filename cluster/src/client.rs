//! [`ClusterClient`]: the member list, the believed leader, and calls that find it.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::Rpc;
use tessera_proto::meta::{MetaStatus, MetaStatusReply};
use tessera_rpc::{Client, RpcConfig, RpcError, Secret};
use tokio::time::Instant;

use crate::error::{CallError, cause};
use crate::refusal::{LeaderError, Refusal};
use crate::retry::Retry;

/// A client of the metadata group. Share it behind an `Arc`.
#[derive(Debug)]
pub struct ClusterClient {
    /// The addresses given (for messages); `servers` also holds members learnt from hints.
    seeds: Vec<String>,
    servers: RwLock<Vec<(String, Arc<Client>)>>,
    /// Index into `servers` of the member calls go to first.
    leader: AtomicUsize,
    secret: Secret,
    rpc: RpcConfig,
}

impl ClusterClient {
    /// A client for the group whose members include `addrs` (any subset will do: the leader
    /// is found from there).
    pub fn new(addrs: &[String], secret: Secret, rpc: RpcConfig) -> Self {
        let servers = addrs
            .iter()
            .map(|a| {
                let c = Client::new(a.clone(), secret.clone(), rpc.clone());
                (a.clone(), Arc::new(c))
            })
            .collect();
        Self {
            seeds: addrs.to_vec(),
            servers: RwLock::new(servers),
            leader: AtomicUsize::new(0),
            secret,
            rpc,
        }
    }

    /// The addresses this client was given.
    pub fn addrs(&self) -> &[String] {
        &self.seeds
    }

    /// The member the next call goes to first: the last one that answered as the leader,
    /// or the one the last hint named.
    pub fn leader(&self) -> Option<String> {
        let servers = self.servers.read().unwrap_or_else(|e| e.into_inner());
        let n = servers.len();
        (n > 0).then(|| servers[self.leader.load(Ordering::Relaxed) % n].0.clone())
    }

    /// Calls the leader with `req` (see [`Self::call_with`]).
    pub async fn call<R, T, E>(&self, req: &R::Request, retry: &Retry) -> Result<T, CallError<E>>
    where
        R: Rpc<Reply = Result<T, E>>,
        E: LeaderError,
    {
        self.call_with::<R, T, E>(req, Bytes::new(), retry)
            .await
            .map(|(reply, _)| reply)
    }

    /// Calls the leader: follows `NotLeader` hints at once, moves to the next address after
    /// a failure and pauses (with backoff), until a reply arrives or `retry` gives up. A
    /// retried call is sent again as it is, so writes must be idempotent (the metadata
    /// client's session and sequence numbers make them so).
    pub async fn call_with<R, T, E>(
        &self,
        req: &R::Request,
        payload: Bytes,
        retry: &Retry,
    ) -> Result<(T, Bytes), CallError<E>>
    where
        R: Rpc<Reply = Result<T, E>>,
        E: LeaderError,
    {
        if self.server_count() == 0 {
            return Err(CallError::NoAddress);
        }
        let started = Instant::now();
        let deadline = started + retry.deadline;
        let mut backoff = retry.min_backoff;
        let mut last;
        // The last reason a member gave for not serving the call (`Unavailable`): a later
        // follower's "not the leader" must not hide it when the call gives up.
        let mut unavailable: Option<String> = None;
        let mut answered = false;
        // Failed attempts in a row, and hints followed in a row (two members naming each
        // other must not keep a call spinning without a pause).
        let (mut failures, mut hops) = (0usize, 0usize);
        loop {
            let count = self.server_count();
            let i = self.leader.load(Ordering::Relaxed) % count;
            let (addr, client) = self.server(i);
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = retry.attempt_timeout.min(remaining);
            let failed = match client.call_with::<R>(req, payload.clone(), attempt).await {
                Ok((Ok(reply), payload)) => return Ok((reply, payload)),
                Ok((Err(e), _)) => {
                    answered = true;
                    match e.refusal() {
                        Refusal::NotLeader(Some(hint)) if hint != addr && hops <= count => {
                            last = format!("{addr} is not the leader");
                            hops += 1;
                            let next = self.index_of(hint);
                            self.leader.store(next, Ordering::Relaxed);
                            false
                        }
                        Refusal::Final => return Err(CallError::Refused { addr, error: e }),
                        Refusal::Unavailable if !retry.retry_unavailable => {
                            return Err(CallError::Refused { addr, error: e });
                        }
                        Refusal::Unavailable => {
                            last = format!("{addr}: {e}");
                            unavailable = Some(last.clone());
                            true
                        }
                        Refusal::NotLeader(_) => {
                            last = format!("{addr}: {e}");
                            true
                        }
                    }
                }
                Err(e) if e.is_retryable() => {
                    last = cause(&e);
                    true
                }
                Err(e) => return Err(CallError::Rpc(e)),
            };
            if failed {
                self.leader.store(i + 1, Ordering::Relaxed);
                failures += 1;
                hops = 0;
            }
            let rounds_done = retry.rounds > 0 && failures >= retry.rounds as usize * count;
            if !rounds_done && failed {
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(retry.max_backoff);
            }
            if rounds_done || Instant::now() >= deadline {
                return Err(self.gave_up(started, answered, unavailable.unwrap_or(last)));
            }
        }
    }

    /// Why a call ends without a reply: nobody answered, or nobody answered as leader.
    fn gave_up<E>(&self, started: Instant, answered: bool, last: String) -> CallError<E> {
        let addrs = self.seeds.join(",");
        let waited_ms = started.elapsed().as_millis() as u64;
        if answered {
            CallError::NoLeader {
                addrs,
                waited_ms,
                last,
            }
        } else {
            CallError::Unreachable {
                addrs,
                waited_ms,
                last,
            }
        }
    }

    /// The status of the member at `addr`.
    pub async fn status_of(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<MetaStatusReply, RpcError> {
        let (_, client) = self.server(self.index_of(addr));
        let (reply, _) = client
            .call_with::<MetaStatus>(&(), Bytes::new(), timeout)
            .await?;
        Ok(reply)
    }

    /// The status of every address this client was given, in order, each within
    /// `timeout`; those that did not answer are left out. Fails only when none answered.
    pub async fn statuses(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(String, MetaStatusReply)>, CallError<Infallible>> {
        self.ask_statuses(timeout, false).await
    }

    /// Succeeds once any given address answers a status call (whether or not it leads: a
    /// group electing is fine), so a command can fail in seconds, with one clear line, when
    /// the cluster is not there at all.
    pub async fn probe(&self, timeout: Duration) -> Result<(), CallError<Infallible>> {
        self.ask_statuses(timeout, true).await.map(|_| ())
    }

    async fn ask_statuses(
        &self,
        timeout: Duration,
        first_only: bool,
    ) -> Result<Vec<(String, MetaStatusReply)>, CallError<Infallible>> {
        let started = Instant::now();
        let mut answers = Vec::new();
        let mut last_err = None;
        for addr in &self.seeds {
            match self.status_of(addr, timeout).await {
                Ok(s) => {
                    answers.push((addr.clone(), s));
                    if first_only {
                        break;
                    }
                }
                Err(e) => last_err = Some(e),
            }
        }
        if !answers.is_empty() {
            return Ok(answers);
        }
        Err(match last_err {
            Some(e @ RpcError::Auth(_)) => CallError::Rpc(e),
            Some(e) => CallError::Unreachable {
                addrs: self.seeds.join(","),
                waited_ms: started.elapsed().as_millis() as u64,
                last: cause(&e),
            },
            None => CallError::NoAddress,
        })
    }

    /// Index of `addr` in the server list, adding it if the group told us of a member we
    /// were not configured with.
    fn index_of(&self, addr: &str) -> usize {
        if let Some(i) = self
            .servers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .position(|(a, _)| a == addr)
        {
            return i;
        }
        let mut servers = self.servers.write().unwrap_or_else(|e| e.into_inner());
        let client = Client::new(addr, self.secret.clone(), self.rpc.clone());
        servers.push((addr.to_string(), Arc::new(client)));
        servers.len() - 1
    }

    fn server(&self, i: usize) -> (String, Arc<Client>) {
        let servers = self.servers.read().unwrap_or_else(|e| e.into_inner());
        let (a, c) = &servers[i % servers.len()];
        (a.clone(), c.clone())
    }

    fn server_count(&self) -> usize {
        self.servers.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
