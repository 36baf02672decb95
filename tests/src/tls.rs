//! Running the harness's clusters over TLS: with `TESSERA_TLS=1` in the environment (or
//! after [`force_on`]), every process the harness starts gets `TESSERA_TLS_CERT`,
//! `TESSERA_TLS_KEY` and `TESSERA_TLS_CA`, and every in-process client (pings, metadata and
//! chunk clients) uses the same certificate, so any existing test runs over TLS unchanged.
//!
//! The certificates are the test-only ones in `rpc/tests/tls-certs/` (one node certificate
//! shared by all, as a cluster may do; `other-*` is from an unrelated CA for refusals).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tessera_rpc::{RpcConfig, TlsConfig, TlsFiles};

static FORCED: AtomicBool = AtomicBool::new(false);

/// Makes every cluster this test process starts use TLS, whatever the environment says
/// (for tests about TLS itself).
pub fn force_on() {
    FORCED.store(true, Ordering::Relaxed);
}

/// Whether the harness starts clusters with TLS.
pub fn enabled() -> bool {
    FORCED.load(Ordering::Relaxed)
        || std::env::var("TESSERA_TLS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A file of the test certificates (`node.pem`, `node.key`, `ca.pem`, `other-ca.pem`, ...).
pub fn cert_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rpc/tests/tls-certs")
        .join(name)
}

/// The node certificate, key and CA every harness process uses.
pub fn files() -> TlsFiles {
    TlsFiles {
        cert: cert_file("node.pem"),
        key: cert_file("node.key"),
        ca: cert_file("ca.pem"),
    }
}

/// Environment for a `tessera` child: the TLS variables when TLS is on, else nothing.
pub fn env() -> Vec<(String, String)> {
    if !enabled() {
        return Vec::new();
    }
    let f = files();
    [
        ("TESSERA_TLS_CERT", f.cert),
        ("TESSERA_TLS_KEY", f.key),
        ("TESSERA_TLS_CA", f.ca),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.display().to_string()))
    .collect()
}

/// Transport settings for in-process clients: the defaults, with TLS when it is on.
pub fn rpc_config() -> RpcConfig {
    static LOADED: OnceLock<TlsConfig> = OnceLock::new();
    let tls = enabled().then(|| {
        LOADED
            .get_or_init(|| {
                TlsConfig::load(&files()).unwrap_or_else(|e| panic!("test certificates: {e}"))
            })
            .clone()
    });
    RpcConfig {
        tls,
        ..RpcConfig::default()
    }
}
