//! The metaserver process: data directory, Raft node, RPC service, leader duties.

use crate::chunk_registry::ChunkRegistry;
use crate::config::MetaConfig;
use crate::leader::run_leader_duties;
use crate::node_id;
use crate::raft::node::{self, Node};
use crate::replica::Replica;
use crate::service::MetaService;
use crate::upkeep::{Rebalancer, Upkeep};
use std::sync::Arc;
use std::time::Duration;
use tessera_rpc::{Router, Secret};

/// Why a metaserver could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The Raft core stopped by itself (a storage failure such as a full disk): the process
    /// exits so that a supervisor restarts it.
    #[error(
        "the metadata replica stopped: {reason}; exiting so it can be restarted (check free \
         space and permissions of {data})"
    )]
    RaftStopped {
        /// The data directory.
        data: String,
        /// What openraft reported.
        reason: String,
    },
    /// The data directory is unusable.
    #[error("data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// The node id file refused this start.
    #[error(transparent)]
    NodeId(#[from] node_id::NodeIdError),
    /// The cluster secret could not be loaded.
    #[error(transparent)]
    Secret(#[from] tessera_rpc::SecretError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The metrics address could not be bound.
    #[error("cannot serve metrics on {addr} (is another process using the port?)")]
    Metrics {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Raft failed to start or to form the group.
    #[error("raft: {0}")]
    Raft(std::io::Error),
    /// `--peers` does not name this node.
    #[error("--peers must include this node's own id {0} and address")]
    SelfNotInPeers(u64),
}

/// Runs a metaserver until SIGINT or SIGTERM.
pub async fn run(config: MetaConfig) -> Result<(), ServerError> {
    if !config.peers.contains_key(&config.id) {
        return Err(ServerError::SelfNotInPeers(config.id));
    }
    std::fs::create_dir_all(&config.data).map_err(|e| ServerError::DataDir {
        dir: config.data.display().to_string(),
        reason: e.to_string(),
    })?;
    node_id::claim(&config.data, config.id)?;
    let secret = Secret::load(&config.secret_file)?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.listen.clone(),
            source,
        })?;

    // Raft traffic leaves from the listen address, so each member is one address on the
    // network (what a firewall rule or a partition test sees).
    let mut raft_rpc = config.rpc.clone();
    raft_rpc.source_ip = listener
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());
    let Node { raft, store } = node::start(
        config.id,
        &config.data,
        secret.clone(),
        raft_rpc,
        &config.tuning,
    )
    .await
    .map_err(ServerError::Raft)?;

    let replica = Replica::new(raft, store);
    let registry =
        Arc::new(ChunkRegistry::new(config.liveness).with_write_spare(config.write_spare));
    let rebalancer = Rebalancer::new(config.upkeep.rebalance);
    let service = MetaService::new(replica.clone(), registry.clone(), rebalancer.clone());
    let upkeep = Upkeep::start(
        replica.clone(),
        registry.clone(),
        secret.clone(),
        config.rpc.clone(),
        config.upkeep.clone(),
        rebalancer,
    );
    let router = replica.raft().routes(Router::new("meta"));
    let router = service.routes(router);
    let server = tessera_rpc::serve_listener(listener, secret, router, config.rpc.clone());
    tracing::info!(
        id = config.id,
        listen = %server.local_addr(),
        data = %config.data.display(),
        tls = config.rpc.tls.is_some(),
        "metaserver started"
    );

    if config.init {
        match replica.raft().initialize(&config.peers).await {
            Ok(true) => tracing::info!(members = ?config.peers, "formed the metadata group"),
            Ok(false) => tracing::info!("already part of a group; --init ignored"),
            Err(e) => return Err(ServerError::Raft(e)),
        }
    }
    let _metrics = match &config.metrics_addr {
        Some(addr) => {
            let m = crate::metrics::start(addr, &server, replica.clone(), registry.clone())
                .await
                .map_err(|source| ServerError::Metrics {
                    addr: addr.clone(),
                    source,
                })?;
            tracing::info!(addr = %m.local_addr(), "serving metrics");
            Some(m)
        }
        None => None,
    };
    let duties = tokio::spawn(run_leader_duties(
        replica.clone(),
        config.session_check,
        config.trash_retention_s,
    ));

    let stopped = tokio::select! {
        () = wait_for_shutdown_signal() => None,
        reason = replica.raft().stopped() => Some(reason),
    };
    if let Some(reason) = stopped {
        // Fail-stop: a member whose Raft core is dead can neither vote nor serve, and
        // lingering would only log errors; exiting lets a supervisor restart it (it
        // recovers from its files once the cause, usually a full disk, is gone).
        duties.abort();
        upkeep.abort();
        server.shutdown();
        return Err(ServerError::RaftStopped {
            data: config.data.display().to_string(),
            reason,
        });
    }
    tracing::info!("shutting down");
    duties.abort();
    upkeep.abort();
    server.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), replica.raft().shutdown()).await;
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
