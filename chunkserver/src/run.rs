//! The chunkserver process: open the store, serve it, scrub it, report to the leader, and
//! stop cleanly when told to.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tessera_rpc::Secret;
use tessera_stripe::{ChunkClient, ChunkClientConfig};
use tokio::sync::watch;

use crate::config::ChunkConfig;
use crate::error::{Error, Result};
use crate::health::Health;
use crate::heartbeat::{self, HeartbeatConfig};
use crate::identity;
use crate::lie::Liar;
use crate::scrub::{ScrubReport, Scrubber};
use crate::service::ChunkService;
use crate::store::{FileStore, FileStoreConfig, ShardStore};

/// Runs a chunkserver until SIGTERM or SIGINT.
pub async fn run(config: ChunkConfig) -> Result<()> {
    let signals =
        shutdown_signal().map_err(|e| Error::io("install signal handlers", "-", None, e))?;
    run_until(config, signals).await
}

/// Runs a chunkserver until `shutdown` completes.
///
/// The listen port accepts connections only once the store is open, so a caller (or a test
/// harness) may treat "port open" as "ready".
pub async fn run_until(config: ChunkConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    // Settings errors first, before the data directory is touched.
    if let Ok(listen) = config.listen.parse::<SocketAddr>() {
        advertised(&config, listen)?;
    }
    let secret = Secret::load(&config.secret_file)?;

    let data = config.data.clone();
    let store_config = FileStoreConfig {
        capacity: config.capacity,
    };
    // Opening scans every shard to rebuild the space accounting: blocking work.
    let (store, id) = tokio::task::spawn_blocking(move || {
        let store = FileStore::open(&data, store_config)?;
        let id = identity::load_or_create(&data)?;
        Ok::<_, Error>((store, id))
    })
    .await
    .map_err(|e| Error::Config(format!("opening the data directory panicked: {e}")))??;
    let store: Arc<dyn ShardStore> = Arc::new(store);
    let health = Arc::new(Health::new());

    // Reads other servers' shards when the leader asks for a rebuild here (repair).
    let peers = Arc::new(ChunkClient::new(
        secret.clone(),
        ChunkClientConfig {
            rpc: config.rpc.clone(),
            ..ChunkClientConfig::default()
        },
    ));
    let liar = Liar::from_env()?;
    let router =
        ChunkService::new(store.clone(), health.clone(), peers.clone(), liar.clone()).router();
    let server = tessera_rpc::serve(&config.listen, secret.clone(), router, config.rpc.clone())
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = advertised(&config, server.local_addr())?;
    tracing::info!(
        id = %format!("{id:016x}"),
        listen = %server.local_addr(),
        %addr,
        data = %config.data.display(),
        tls = config.rpc.tls.is_some(),
        "chunkserver serving"
    );

    let scrub_health = health.clone();
    let scrubber = Scrubber::new(store.clone(), config.scrub.clone());
    let scrub_progress = scrubber.progress();
    let scrub = scrubber
        .spawn(move |report| match report {
            ScrubReport::Corrupt { id, .. } => scrub_health.corrupt(id),
            ScrubReport::Missing { id } => scrub_health.missing(id),
            // Logged by the scrubber; an I/O error is not a verdict on the shard.
            ScrubReport::Unreadable { .. } | ScrubReport::PassComplete(_) => {}
        })
        .map_err(|e| Error::io("start the scrub thread for", &config.data, None, e))?;

    let _metrics = match &config.metrics_addr {
        Some(maddr) => {
            let sources = crate::metrics::Sources {
                server: server.stats_shared(),
                store: store.clone(),
                health: health.clone(),
                scrub: scrub_progress,
                data_dir: config.data.clone(),
                peers: peers.clone(),
                liar,
            };
            let m = crate::metrics::start(maddr, sources)
                .await
                .map_err(|source| Error::Listen {
                    addr: maddr.clone(),
                    source,
                })?;
            tracing::info!(addr = %m.local_addr(), "serving metrics");
            Some(m)
        }
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let beats = tokio::spawn(heartbeat::run(
        HeartbeatConfig {
            id,
            addr,
            meta: config.meta.clone(),
            interval: config.heartbeat_interval,
            timeout: config.meta_timeout,
            data_dir: config.data.clone(),
            secret,
            rpc: config.rpc.clone(),
        },
        store.clone(),
        health,
        stop_rx,
    ));

    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown();
    let _ = stop_tx.send(true);
    let _ = beats.await;
    // Joining waits for the shard being scrubbed: off the async threads.
    let _ = tokio::task::spawn_blocking(move || scrub.stop()).await;
    tracing::info!("chunkserver stopped");
    Ok(())
}

/// The address to register: `--advertise`, or the bound address if it is a specific one.
fn advertised(config: &ChunkConfig, bound: SocketAddr) -> Result<String> {
    if let Some(a) = &config.advertise {
        return Ok(a.clone());
    }
    if bound.ip().is_unspecified() {
        return Err(Error::Config(format!(
            "--listen {} is a wildcard address that other machines cannot call; \
             give --advertise HOST:PORT, the address they should use",
            config.listen
        )));
    }
    Ok(bound.to_string())
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
