//! `--tls-cert`, `--tls-key`, `--tls-ca`: the flags that put every connection of a process
//! on TLS (mutual: it presents its certificate and accepts only peers signed by the CA).
//! Shared by every subcommand that opens or accepts connections.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use tessera_rpc::{RpcConfig, TlsConfig, TlsFiles};

/// TLS for every connection (all three flags, or none for plain TCP).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// This node's TLS certificate (PEM). With --tls-key and --tls-ca every connection this
    /// process opens or accepts is TLS with mutual certificate checks; every node of a
    /// cluster must then have them [default: no TLS]. The certificate must name `tessera`
    /// in its subjectAltName (scripts/gen-tls.sh makes such certificates).
    #[arg(
        long,
        value_name = "PEM",
        env = "TESSERA_TLS_CERT",
        requires_all = ["tls_key", "tls_ca"]
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1) [default: none; required
    /// with --tls-cert].
    #[arg(long, value_name = "PEM", env = "TESSERA_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA's certificate (PEM): peers must present a certificate it signed
    /// [default: none; required with --tls-cert].
    #[arg(long, value_name = "PEM", env = "TESSERA_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The loaded TLS settings, `None` without the flags.
    pub fn load(&self) -> anyhow::Result<Option<TlsConfig>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        };
        let tls = TlsConfig::load(&files)
            .context("cannot set up TLS (check --tls-cert, --tls-key and --tls-ca)")?;
        Ok(Some(tls))
    }

    /// The default transport settings, with TLS when the flags are given.
    pub fn rpc_config(&self) -> anyhow::Result<RpcConfig> {
        Ok(RpcConfig {
            tls: self.load()?,
            ..RpcConfig::default()
        })
    }
}
