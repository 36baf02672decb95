//! What every command that talks to the cluster shares: the `--meta` / `--secret-file` /
//! `--timeout-ms` / `--tls-*` flags ([`ClusterArgs`]) and the clients made from them. Finding the
//! leader, following hints and retrying are the cluster client's (`tessera-cluster`); its
//! errors are already one line with what to check.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tessera_client::MetaClient;
use tessera_client::cluster::{ClusterClient, Retry};
use tessera_rpc::{RpcConfig, Secret};

use crate::tls_args::TlsArgs;

/// How to reach the cluster (every command that talks to it).
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Metadata servers, comma-separated HOST:PORT list (required); any member will do: the
    /// leader is found from there and followed when it changes.
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

    /// How long one call to a metaserver may wait, in milliseconds [default: 5000; for
    /// `status` 2000; for `chunk` one heartbeat interval, within 500-5000].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,

    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ClusterArgs {
    /// `--timeout-ms`, or the command's default.
    pub fn timeout(&self, default_ms: u64) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(default_ms))
    }

    /// Loads the secret with a hint when it fails.
    pub fn secret(&self) -> anyhow::Result<Secret> {
        Secret::load(&self.secret_file).map_err(|e| {
            anyhow::anyhow!(
                "{e}; check --secret-file / TESSERA_SECRET_FILE (create one with `tessera gen-secret`)"
            )
        })
    }

    /// Transport settings: the defaults, with TLS when `--tls-*` are given.
    pub fn rpc(&self) -> anyhow::Result<RpcConfig> {
        self.tls.rpc_config()
    }

    /// A cluster client for `--meta`.
    pub fn cluster(&self) -> anyhow::Result<ClusterClient> {
        Ok(ClusterClient::new(&self.meta, self.secret()?, self.rpc()?))
    }

    /// A metadata client for `--meta` whose calls follow `retry`.
    pub fn meta_client(&self, retry: Retry) -> anyhow::Result<MetaClient> {
        Ok(MetaClient::new(
            &self.meta,
            self.secret()?,
            self.rpc()?,
            retry,
        ))
    }

    /// A metadata client for a one-shot admin call: every address once, the leader's
    /// refusal reported as it is.
    pub fn admin_client(&self) -> anyhow::Result<MetaClient> {
        self.meta_client(Retry::once(self.timeout(5_000)))
    }
}

/// A single-threaded runtime for an admin command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
