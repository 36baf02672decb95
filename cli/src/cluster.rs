//! What every admin command needs: the `--meta` / `--secret-file` / `--timeout-ms` flags,
//! finding the metadata leader, and one-line errors that say what to try.

use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tessera_proto::Rpc;
use tessera_proto::meta::{MetaStatus, MetaStatusReply, ServiceError};
use tessera_rpc::{Client, RpcConfig, RpcError, Secret};

/// How to reach the cluster (shared by the admin commands).
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Metadata servers, comma-separated HOST:PORT list (required); any member will do.
    #[arg(
        long,
        value_name = "ADDRS",
        env = "TESSERA_META",
        value_delimiter = ',',
        required = true
    )]
    pub meta: Vec<String>,

    /// File holding the cluster secret (required; create one with `tessera gen-secret`).
    #[arg(long, value_name = "F", env = "TESSERA_SECRET_FILE")]
    pub secret_file: PathBuf,

    /// How long to wait for each server, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub timeout_ms: u64,
}

/// A connection to the metadata leader.
#[derive(Debug)]
pub struct Leader {
    pub addr: String,
    pub client: Client,
    pub timeout: Duration,
}

/// A single-threaded runtime for an admin command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The short cause of an RPC failure (the part after "cannot connect to X: ").
fn cause(e: &RpcError) -> String {
    match e {
        RpcError::Connect { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Asks every `--meta` address for its status and returns the leader's address. Errors are
/// one line: what failed, and what to check.
pub async fn find_leader(args: &ClusterArgs, secret: &Secret) -> anyhow::Result<Leader> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut last_err: Option<RpcError> = None;
    let mut answered: Vec<MetaStatusReply> = Vec::new();
    for addr in &args.meta {
        let client = Client::new(addr.clone(), secret.clone(), RpcConfig::default());
        match client
            .call_with::<MetaStatus>(&(), bytes::Bytes::new(), timeout)
            .await
        {
            Ok((s, _)) => {
                if s.role == "leader" {
                    return Ok(Leader {
                        addr: addr.clone(),
                        client,
                        timeout,
                    });
                }
                answered.push(s);
            }
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(addr) = answered
        .iter()
        .find_map(|s| s.leader.as_ref().map(|l| &l.1))
    {
        return Ok(Leader {
            addr: addr.clone(),
            client: Client::new(addr.clone(), secret.clone(), RpcConfig::default()),
            timeout,
        });
    }
    if !answered.is_empty() {
        bail!(
            "the metaservers at {} answer but none leads (an election may be in progress, or a majority is down); retry in a few seconds and see `tessera status`",
            args.meta.join(",")
        );
    }
    match last_err {
        Some(e @ RpcError::Auth(_)) => bail!("{e}"),
        Some(e) => bail!(
            "cannot reach any metaserver at {}: {}; is the cluster running? check --meta / TESSERA_META",
            args.meta.join(","),
            cause(&e)
        ),
        None => bail!("no metaserver given: set --meta or TESSERA_META"),
    }
}

impl Leader {
    /// Calls the leader once; a `NotLeader` answer is an error naming the new leader.
    pub async fn call<R, T>(
        &self,
        req: &R::Request,
        payload: bytes::Bytes,
    ) -> anyhow::Result<(T, bytes::Bytes)>
    where
        R: Rpc<Reply = Result<T, ServiceError>>,
    {
        let (reply, payload) = self
            .client
            .call_with::<R>(req, payload, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        match reply {
            Ok(r) => Ok((r, payload)),
            Err(e) => bail!("{}: {e}; retry (the leadership may have moved)", self.addr),
        }
    }
}

/// Loads the secret with a hint when it fails.
pub fn load_secret(args: &ClusterArgs) -> anyhow::Result<Secret> {
    Secret::load(&args.secret_file).map_err(|e| {
        anyhow::anyhow!(
            "{e}; check --secret-file / TESSERA_SECRET_FILE (create one with `tessera gen-secret`)"
        )
    })
}

/// Fails with the one-line "cannot reach" error unless some metaserver in `meta` answers a
/// status call within `timeout` (whether or not it leads: a group electing is fine).
pub async fn probe(meta: &[String], secret: &Secret, timeout: Duration) -> anyhow::Result<()> {
    let mut last_err = None;
    for addr in meta {
        let client = Client::new(addr.clone(), secret.clone(), RpcConfig::default());
        match client
            .call_with::<MetaStatus>(&(), bytes::Bytes::new(), timeout)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e @ RpcError::Auth(_)) => bail!("{e}"),
        Some(e) => bail!(
            "cannot reach any metaserver at {}: {}; is the cluster running? check --meta / TESSERA_META",
            meta.join(","),
            cause(&e)
        ),
        None => bail!("no metaserver given: set --meta or TESSERA_META"),
    }
}
