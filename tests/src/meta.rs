//! A metadata group of real `tessera meta` processes on 127.0.0.1.

use crate::process::TesseraProcess;
use crate::{START_TIMEOUT, free_port};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tessera_client::{MetaClient, MetaClientOptions};
use tessera_proto::meta::{DigestReply, MetaStatus, MetaStatusReply, StateDigest};
use tessera_rpc::{Client, Secret};

/// Extra flags for every member.
#[derive(Debug, Clone)]
pub struct MetaOptions {
    /// `--election-ms` (short in tests so failover is quick).
    pub election_ms: u64,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// `--snapshot-every`.
    pub snapshot_every: u64,
    /// `--keep-logs`.
    pub keep_logs: u64,
    /// Give member N the address 127.0.0.(10+N) instead of 127.0.0.1, so a firewall rule
    /// can cut one member off from the others.
    pub distinct_ips: bool,
    /// `--session-check-ms`.
    pub session_check_ms: u64,
    /// `--dead-after-ms` (the metaserver's default when `None`).
    pub dead_after_ms: Option<u64>,
    /// `--trash-retention`: 0 by default here (the server's default keeps deleted files a
    /// day), so tests that watch space return after a delete see it at once.
    pub trash_retention_s: u64,
    /// Further flags, e.g. `--gc-grace-ms 1000`.
    pub extra_args: Vec<String>,
}

impl MetaOptions {
    /// GC grace, upload window and orphan sweep shortened, so freed stripes leave the
    /// chunkservers within seconds (tests that watch space come back).
    pub fn with_fast_gc(mut self) -> Self {
        let flags = [
            ("--gc-grace-ms", "1000"),
            ("--upload-window-ms", "3000"),
            ("--orphan-grace-ms", "5000"),
            ("--sweep-interval-ms", "2000"),
        ];
        for (k, v) in flags {
            self.extra_args.extend([k.to_string(), v.to_string()]);
        }
        self
    }
}

impl Default for MetaOptions {
    fn default() -> Self {
        Self {
            election_ms: 600,
            heartbeat_ms: 100,
            snapshot_every: 20_000,
            keep_logs: 5_000,
            distinct_ips: false,
            session_check_ms: 1_000,
            dead_after_ms: None,
            trash_retention_s: 0,
            extra_args: Vec::new(),
        }
    }
}

/// One member: its process, address and data directory.
#[derive(Debug)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Listen address.
    pub addr: String,
    /// Data directory.
    pub data: PathBuf,
    /// The process.
    pub process: TesseraProcess,
}

/// A metadata group. Members are SIGKILLed on drop.
#[derive(Debug)]
pub struct MetaCluster {
    /// Members by id.
    pub members: BTreeMap<u64, Member>,
    secret: Secret,
}

impl MetaCluster {
    /// Starts `n` members under `dir` (member 1 forms the group) and waits until each answers.
    pub async fn start(
        dir: &Path,
        secret_file: &Path,
        secret: &Secret,
        n: u64,
        opts: &MetaOptions,
    ) -> MetaCluster {
        let addrs: BTreeMap<u64, String> = (1..=n)
            .map(|id| {
                let ip = if opts.distinct_ips {
                    format!("127.0.0.{}", 10 + id)
                } else {
                    "127.0.0.1".to_string()
                };
                (id, format!("{ip}:{}", free_port()))
            })
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = BTreeMap::new();
        for (id, addr) in &addrs {
            let data = dir.join(format!("meta-{id}"));
            let mut args: Vec<String> = vec![
                "meta".into(),
                "--id".into(),
                id.to_string(),
                "--listen".into(),
                addr.clone(),
                "--data".into(),
                data.display().to_string(),
                "--peers".into(),
                peers.clone(),
                "--secret-file".into(),
                secret_file.display().to_string(),
                "--election-ms".into(),
                opts.election_ms.to_string(),
                "--heartbeat-ms".into(),
                opts.heartbeat_ms.to_string(),
                "--snapshot-every".into(),
                opts.snapshot_every.to_string(),
                "--keep-logs".into(),
                opts.keep_logs.to_string(),
                "--session-check-ms".into(),
                opts.session_check_ms.to_string(),
                "--trash-retention".into(),
                opts.trash_retention_s.to_string(),
            ];
            if *id == 1 {
                args.push("--init".into());
            }
            if let Some(ms) = opts.dead_after_ms {
                args.extend(["--dead-after-ms".into(), ms.to_string()]);
            }
            args.extend(opts.extra_args.iter().cloned());
            let process = TesseraProcess::spawn(&format!("meta-{id}"), dir, args);
            members.insert(
                *id,
                Member {
                    id: *id,
                    addr: addr.clone(),
                    data,
                    process,
                },
            );
        }
        for m in members.values_mut() {
            m.process.wait_ready(&m.addr, secret, START_TIMEOUT).await;
        }
        let cluster = MetaCluster {
            members,
            secret: secret.clone(),
        };
        cluster.wait_formatted(START_TIMEOUT).await;
        cluster
    }

    /// Waits until the new group has a leader and a root directory.
    pub async fn wait_formatted(&self, timeout: Duration) {
        let client = self.client(MetaClientOptions {
            deadline: timeout,
            ..MetaClientOptions::default()
        });
        let started = Instant::now();
        loop {
            let root = client
                .read(tessera_proto::meta::Query::GetAttr {
                    ino: tessera_proto::fs::ROOT_INO,
                })
                .await;
            if matches!(root, Ok(Ok(_))) {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the metadata group has no root directory after {timeout:?}: {root:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Addresses of all members.
    pub fn addrs(&self) -> Vec<String> {
        self.members.values().map(|m| m.addr.clone()).collect()
    }

    /// A metadata client for the group.
    pub fn client(&self, options: MetaClientOptions) -> MetaClient {
        MetaClient::new(
            &self.addrs(),
            self.secret.clone(),
            crate::tls::rpc_config(),
            options,
        )
    }

    fn rpc(&self, id: u64) -> Client {
        Client::new(
            self.members[&id].addr.clone(),
            self.secret.clone(),
            crate::tls::rpc_config(),
        )
    }

    /// Status of member `id`, if it answers within a second.
    pub async fn status(&self, id: u64) -> Option<MetaStatusReply> {
        self.rpc(id)
            .call_with::<MetaStatus>(&(), bytes::Bytes::new(), Duration::from_secs(1))
            .await
            .ok()
            .map(|(r, _)| r)
    }

    /// Digest of member `id`, if it answers.
    pub async fn digest(&self, id: u64) -> Option<DigestReply> {
        match self
            .rpc(id)
            .call_with::<StateDigest>(&(), bytes::Bytes::new(), Duration::from_secs(5))
            .await
        {
            Ok((Ok(d), _)) => Some(d),
            _ => None,
        }
    }

    /// Waits until a member among `among` reports itself leader and the others agree;
    /// returns its id.
    pub async fn wait_leader(&self, among: &[u64], timeout: Duration) -> Option<u64> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            for id in among {
                if let Some(s) = self.status(*id).await
                    && s.role == "leader"
                {
                    return Some(*id);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Waits until every member in `among` reports the same applied index, at least
    /// `min_index`, and the same digest; returns that digest. `None` if they have not
    /// converged within `timeout`. (Right after a restart every member may still sit at the
    /// same old durable state, so a caller that knows how far the group got must say so.)
    pub async fn wait_converged_at(
        &self,
        among: &[u64],
        min_index: u64,
        timeout: Duration,
    ) -> Option<DigestReply> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let mut seen = Vec::new();
            for id in among {
                match self.digest(*id).await {
                    Some(d) => seen.push(d),
                    None => break,
                }
            }
            if seen.len() == among.len()
                && seen.windows(2).all(|w| w[0] == w[1])
                && seen[0].applied_index >= min_index
            {
                return seen.pop();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for id in among {
            eprintln!(
                "member {id}: status {:?} digest {:?}",
                self.status(*id).await,
                self.digest(*id).await.map(|d| d.applied_index)
            );
        }
        None
    }

    /// [`Self::wait_converged_at`] at or beyond what the group has committed: a linearizable
    /// read first makes the leader apply everything committed, then its applied index is the
    /// bar every member must reach.
    pub async fn wait_converged(&self, among: &[u64], timeout: Duration) -> Option<DigestReply> {
        let client = self.client(MetaClientOptions {
            deadline: timeout,
            ..MetaClientOptions::default()
        });
        client
            .read(tessera_proto::meta::Query::GetAttr {
                ino: tessera_proto::fs::ROOT_INO,
            })
            .await
            .ok()?
            .ok()?;
        let leader = self.wait_leader(among, timeout).await?;
        let applied = self.status(leader).await?.applied_index?;
        self.wait_converged_at(among, applied, timeout).await
    }

    /// The member with id `id`.
    pub fn member(&mut self, id: u64) -> &mut Member {
        self.members.get_mut(&id).expect("no such member")
    }

    /// SIGKILLs member `id`.
    pub fn kill9(&mut self, id: u64) {
        self.member(id).process.kill9();
    }

    /// Restarts member `id` with its original flags and waits until it answers.
    pub async fn restart(&mut self, id: u64) {
        let secret = self.secret.clone();
        let m = self.member(id);
        m.process.restart();
        let addr = m.addr.clone();
        m.process.wait_ready(&addr, &secret, START_TIMEOUT).await;
    }

    /// Total bytes of the Raft log file of member `id`.
    pub fn log_bytes(&self, id: u64) -> u64 {
        std::fs::metadata(self.members[&id].data.join("raft-log.redb"))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}
