//! Loading the TLS certificate, key and CA from PEM files and building the rustls client
//! and server configurations from them. Nothing else: the connections that use them are in
//! `stream.rs`.
//!
//! Choices (see docs/operations.md, "TLS"):
//! - Mutual authentication: a server accepts only clients whose certificate is signed by
//!   the CA, and a client only servers whose certificate is. Every node uses one certificate
//!   for both roles (a metaserver also calls its peers).
//! - Clients check the server's certificate against the fixed name [`SERVER_NAME`], not
//!   against the address they dialled: cluster addresses are IPs that change (127.0.0.x in
//!   tests), and the CA is the cluster's own, so "signed by our CA" is what identifies a
//!   node. Certificates therefore carry `DNS:tessera` in their subjectAltName.
//! - TLS 1.3 only, with the `ring` provider: both ends are Tessera, so nothing older needs
//!   to be spoken.

use crate::error::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The name every node's certificate must carry (subjectAltName `DNS:tessera`); clients
/// verify servers against it whatever address they dialled.
pub const SERVER_NAME: &str = "tessera";

/// The three files a TLS node needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The cluster CA's certificate(s) (PEM): peers must present certificates it signed.
    pub ca: PathBuf,
}

/// Ready-to-use TLS settings for both directions of this node's connections.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl TlsConfig {
    /// Reads the three files and builds both configurations. Fails naming the file and the
    /// cause, so a node with a bad file does not start.
    pub fn load(files: &TlsFiles) -> Result<TlsConfig, TlsError> {
        let certs = load_certs(&files.cert, "certificate")?;
        let key = load_key(&files.key)?;
        let roots = load_roots(&files.ca)?;
        // Deprecated in rustls 0.23.48 only because ring has no post-quantum key exchange;
        // aws-lc-rs has, but needs cmake and nasm and builds for minutes (design note TLS).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = [&rustls::version::TLS13];
        let rejected = |what: &'static str, path: String| {
            move |e: rustls::Error| TlsError::Rejected {
                what,
                path,
                reason: e.to_string(),
            }
        };
        let pair = format!("{} and {}", files.cert.display(), files.key.display());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Rejected {
                what: "CA",
                path: files.ca.display().to_string(),
                reason: e.to_string(),
            })?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(rejected("configuration for", pair.clone()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(rejected("certificate and key", pair.clone()))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(rejected("configuration for", pair.clone()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(rejected("certificate and key", pair))?;
        Ok(TlsConfig {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name: ServerName::try_from(SERVER_NAME).map_err(|e| TlsError::Rejected {
                what: "server name",
                path: SERVER_NAME.into(),
                reason: e.to_string(),
            })?,
        })
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Io {
        what,
        path: path.display().to_string(),
        cause,
    })
}

fn pem_error(
    path: &Path,
    what: &'static str,
    expected: &'static str,
) -> impl Fn(String) -> TlsError {
    move |reason| TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason,
        expected,
    }
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let bad = pem_error(
        path,
        what,
        "one or more '-----BEGIN CERTIFICATE-----' blocks",
    );
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path, "key")?;
    let bad = pem_error(
        path,
        "key",
        "a '-----BEGIN PRIVATE KEY-----' block (or RSA / EC)",
    );
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => bad("no private key in it".into()),
        e => bad(e.to_string()),
    })
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA")? {
        roots.add(cert).map_err(|e| TlsError::Rejected {
            what: "CA",
            path: path.display().to_string(),
            reason: format!("not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests;
