//! Starting `tessera chunk` processes and calling their chunk service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::Rpc;
use tessera_proto::ShardId;
use tessera_proto::chunk::{
    ByteRange, ChunkError, DeleteOutcome, DeleteShard, DeleteShardRequest, GetShard,
    GetShardRequest, ListShards, ListShardsRequest, ListedShard, PutOutcome, PutShard,
    PutShardRequest, ShardPage, ShardProof, ShardStat, StatShard, StatShardRequest,
};
use tessera_rpc::{Client, RpcError, Secret};

use crate::ports::free_port;
use crate::process::TesseraProcess;
use crate::{START_TIMEOUT, TempDir};

pub use tessera_chunkserver::store::{quarantine_dir, shard_file, temp_dir};

/// Flags for a chunkserver under test beyond `--listen`, `--data` and `--secret-file`.
#[derive(Debug, Clone)]
pub struct ChunkOptions {
    /// `--meta` addresses; empty gives a dead address, so the server runs unregistered.
    pub meta: Vec<String>,
    pub capacity: Option<u64>,
    pub scrub_rate: Option<u64>,
    pub scrub_interval_ms: Option<u64>,
    /// Short by default so tests see heartbeats quickly.
    pub heartbeat_ms: u64,
    /// Further flags, e.g. `--metrics-addr 127.0.0.1:PORT`.
    pub extra_args: Vec<String>,
    /// Environment variables, e.g. `TESSERA_CHUNK_LIE` for a lying server.
    pub env: Vec<(String, String)>,
}

impl Default for ChunkOptions {
    fn default() -> ChunkOptions {
        ChunkOptions {
            meta: Vec::new(),
            capacity: None,
            scrub_rate: None,
            scrub_interval_ms: None,
            heartbeat_ms: 100,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

/// A running chunkserver under test.
#[derive(Debug)]
pub struct Chunkserver {
    pub process: TesseraProcess,
    /// "127.0.0.1:port" it serves on.
    pub addr: String,
    /// Its data directory.
    pub data: PathBuf,
    secret: Secret,
}

impl Chunkserver {
    /// Starts `tessera chunk` on a free port with its data in `data`, logging to
    /// `dir/<name>.log`, and waits until it answers.
    pub async fn start(
        dir: &TempDir,
        name: &str,
        data: &Path,
        secret: (&Path, &Secret),
        opts: &ChunkOptions,
    ) -> Chunkserver {
        let addr = format!("127.0.0.1:{}", free_port());
        let meta = if opts.meta.is_empty() {
            // Nothing listens on port 1: the server must serve anyway.
            "127.0.0.1:1".to_string()
        } else {
            opts.meta.join(",")
        };
        let mut args: Vec<String> = vec![
            "chunk".into(),
            "--listen".into(),
            addr.clone(),
            "--data".into(),
            data.display().to_string(),
            "--meta".into(),
            meta,
            "--secret-file".into(),
            secret.0.display().to_string(),
            "--heartbeat-ms".into(),
            opts.heartbeat_ms.to_string(),
        ];
        if let Some(c) = opts.capacity {
            args.extend(["--capacity".into(), c.to_string()]);
        }
        if let Some(r) = opts.scrub_rate {
            args.extend(["--scrub-rate".into(), r.to_string()]);
        }
        if let Some(i) = opts.scrub_interval_ms {
            args.extend(["--scrub-interval-ms".into(), i.to_string()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        let env: Vec<(&str, &str)> = opts
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut process = TesseraProcess::spawn_env(name, dir.path(), args, &env);
        process.wait_ready(&addr, secret.1, START_TIMEOUT).await;
        Chunkserver {
            process,
            addr,
            data: data.to_path_buf(),
            secret: secret.1.clone(),
        }
    }

    /// A client of its chunk service.
    pub fn client(&self) -> ChunkClient {
        ChunkClient::new(&self.addr, &self.secret)
    }

    /// SIGKILLs it (as a crash would).
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts it again with the same flags and waits until it answers.
    pub async fn restart(&mut self) {
        self.process.restart();
        self.process
            .wait_ready(&self.addr, &self.secret, START_TIMEOUT)
            .await;
    }
}

/// Typed calls to one chunkserver. Transport failures panic (tests expect a live server)
/// unless the `try_` form is used; service errors are returned.
#[derive(Debug)]
pub struct ChunkClient {
    client: Client,
}

/// Deadline of every call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl ChunkClient {
    pub fn new(addr: &str, secret: &Secret) -> ChunkClient {
        ChunkClient {
            client: Client::new(addr, secret.clone(), crate::tls::rpc_config()),
        }
    }

    async fn call<R: Rpc>(&self, req: &R::Request, payload: Bytes) -> (R::Reply, Bytes) {
        self.try_call::<R>(req, payload)
            .await
            .unwrap_or_else(|e| panic!("{} to {} failed: {e}", R::METHOD, self.client.peer()))
    }

    async fn try_call<R: Rpc>(
        &self,
        req: &R::Request,
        payload: Bytes,
    ) -> Result<(R::Reply, Bytes), RpcError> {
        self.client.call_with::<R>(req, payload, CALL_TIMEOUT).await
    }

    /// Puts `data` under `id`.
    pub async fn put(&self, id: ShardId, data: Bytes) -> Result<PutOutcome, ChunkError> {
        self.call::<PutShard>(&PutShardRequest { id }, data).await.0
    }

    /// Puts, returning transport errors too (for tests that kill the server mid-call).
    pub async fn try_put(
        &self,
        id: ShardId,
        data: Bytes,
    ) -> Result<Result<PutOutcome, ChunkError>, RpcError> {
        Ok(self
            .try_call::<PutShard>(&PutShardRequest { id }, data)
            .await?
            .0)
    }

    /// Reads a whole shard or a range, checked against `id` as a client checks it (panics
    /// if the server's bytes or proof do not verify).
    pub async fn get(&self, id: ShardId, range: Option<(u64, u64)>) -> Result<Bytes, ChunkError> {
        let (proof, bytes) = self.get_raw(id, range).await?;
        let Some((start, end)) = range else {
            assert_eq!(
                ShardId::of(&bytes),
                id,
                "{} sent a wrong shard",
                self.client.peer()
            );
            return Ok(bytes);
        };
        if start == end {
            assert!(bytes.is_empty() && proof.cvs.is_empty());
            return Ok(bytes);
        }
        let span = tessera_proto::proof::span_of(&(start..end), proof.len);
        if let Err(e) = tessera_proto::proof::verify(&id, proof.len, &span, &bytes, &proof.cvs) {
            panic!(
                "{} sent a range that fails its proof: {e}",
                self.client.peer()
            );
        }
        let at = (start - span.start) as usize;
        Ok(bytes.slice(at..at + (end - start) as usize))
    }

    /// The reply to a get as it came: the proof and the payload (a range widened to whole
    /// 1 KiB chunks).
    pub async fn get_raw(
        &self,
        id: ShardId,
        range: Option<(u64, u64)>,
    ) -> Result<(ShardProof, Bytes), ChunkError> {
        let range = range.map(|(start, end)| ByteRange { start, end });
        let (reply, bytes) = self
            .call::<GetShard>(&GetShardRequest { id, range }, Bytes::new())
            .await;
        reply.map(|proof| (proof, bytes))
    }

    pub async fn delete(&self, id: ShardId) -> Result<DeleteOutcome, ChunkError> {
        self.call::<DeleteShard>(
            &DeleteShardRequest {
                id,
                min_age_ms: None,
            },
            Bytes::new(),
        )
        .await
        .0
    }

    pub async fn stat(&self, id: ShardId) -> Result<Option<ShardStat>, ChunkError> {
        self.call::<StatShard>(&StatShardRequest { id }, Bytes::new())
            .await
            .0
    }

    pub async fn list(
        &self,
        after: Option<ShardId>,
        limit: u32,
        older_than_ms: Option<u64>,
    ) -> Result<ShardPage, ChunkError> {
        let req = ListShardsRequest {
            after,
            limit,
            older_than_ms,
        };
        self.call::<ListShards>(&req, Bytes::new()).await.0
    }

    /// The whole inventory, or `None` if the server cannot be reached or refuses (for
    /// pollers that run while servers are killed).
    pub async fn try_list_all(&self) -> Option<Vec<ListedShard>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let req = ListShardsRequest {
                after,
                limit: 1000,
                older_than_ms: None,
            };
            let page = self
                .try_call::<ListShards>(&req, Bytes::new())
                .await
                .ok()?
                .0
                .ok()?;
            out.extend(page.shards);
            match page.next {
                Some(n) => after = Some(n),
                None => return Some(out),
            }
        }
    }

    /// The whole inventory, page by page.
    pub async fn list_all(&self) -> Vec<ListedShard> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .list(after, 1000, None)
                .await
                .unwrap_or_else(|e| panic!("list failed: {e}"));
            out.extend(page.shards);
            match page.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }
}

/// `len` bytes of deterministic data for `seed`, and their shard id.
pub fn shard(len: usize, seed: u64) -> (ShardId, Bytes) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        // xorshift64, eight bytes a step: fast enough for many MiB per test.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - data.len()).min(8);
        data.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    (ShardId::of(&data), Bytes::from(data))
}
