//! The accept loop and per-connection request handling.
//!
//! Each connection must pass the handshake before a single frame is read as a request.
//! Requests then run concurrently, each as its own task bounded by the caller's deadline;
//! a cancel frame aborts the task. The connection's in-flight budget, and for frames over
//! 64 KiB the server-wide one, are taken before a request's body is read, so a flood of big
//! requests stops the reader (and, through TCP, the sender) instead of growing memory. A
//! connection on which no frame starts for `idle_timeout`, or whose frame does not finish
//! within `frame_timeout` of its header, is closed.

use crate::auth::server_handshake;
use crate::catch_panic::CatchPanic;
use crate::config::RpcConfig;
use crate::log_limit::LogLimiter;
use crate::router::{RawRequest, Router};
use crate::secret::Secret;
use crate::stats::ServerStats;
use crate::wire::{OutFrame, ReadError, read_header, read_rest, write_loop};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_proto::{FrameHeader, FrameKind, HEADER_LEN, Status};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};

/// A running server. Dropping the handle does not stop it; call [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stats: Arc<ServerStats>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters of what the server has done.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// The same counters, shared (e.g. with a metrics collector).
    pub fn stats_shared(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Stops accepting, closes every connection and abandons running handlers.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // Keep the server running only while someone holds the handle: a test that fails
        // half-way must not leave listeners behind.
        self.task.abort();
    }
}

/// Binds `addr` and serves `router` to peers that prove they know `secret`.
pub async fn serve(
    addr: &str,
    secret: Secret,
    router: Router,
    config: RpcConfig,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    Ok(serve_listener(listener, secret, router, config))
}

/// Serves on an already bound listener.
pub fn serve_listener(
    listener: TcpListener,
    secret: Secret,
    router: Router,
    config: RpcConfig,
) -> ServerHandle {
    let local_addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let stats = Arc::new(ServerStats::default());
    let config_budget = config.max_buffered_bytes;
    let shared = Arc::new(Shared {
        secret,
        router,
        config,
        stats: stats.clone(),
        auth_log: LogLimiter::new(Duration::from_secs(60)),
        buffered: Arc::new(Semaphore::new(budget_permits(config_budget) as usize)),
    });
    let task = tokio::spawn(accept_loop(listener, shared));
    ServerHandle {
        local_addr,
        stats,
        task,
    }
}

struct Shared {
    secret: Secret,
    router: Router,
    config: RpcConfig,
    stats: Arc<ServerStats>,
    auth_log: LogLimiter,
    /// Server-wide budget of buffered request bytes (`RpcConfig::max_buffered_bytes`).
    buffered: Arc<Semaphore>,
}

/// Frames up to this size do not take from the server-wide budget.
const SMALL_FRAME: u64 = 64 << 10;

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set so aborting the accept loop closes them all.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                conns.spawn(serve_connection(stream, peer, shared.clone()));
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let peer_s = peer.to_string();
    // The TLS handshake (when configured) and the secret handshake share one deadline.
    let handshakes = async {
        let mut stream = crate::stream::server(tcp, shared.config.tls.as_ref(), &peer_s).await?;
        server_handshake(&mut stream, &shared.secret, &peer_s)
            .await
            .map(|()| stream)
    };
    let stream = match timeout(shared.config.handshake_timeout, handshakes).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.stats.inc(&shared.stats.auth_failures);
            if shared.auth_log.allow(peer.ip()) {
                tracing::warn!(
                    "refused connection: {e} (further failures from this address are not logged for a minute)"
                );
            }
            return;
        }
        Err(_) => {
            shared.stats.inc(&shared.stats.auth_failures);
            if shared.auth_log.allow(peer.ip()) {
                tracing::warn!(%peer, "refused connection: no handshake within {:?}", shared.config.handshake_timeout);
            }
            return;
        }
    };
    shared.stats.inc(&shared.stats.connections_accepted);

    let (rd, wr) = stream.split();
    let (out, rx) = mpsc::channel(256);
    let writer = tokio::spawn(write_loop(wr, rx));
    let mut rd = BufReader::with_capacity(64 << 10, rd);
    let inflight = Arc::new(Semaphore::new(shared.config.max_inflight_bytes as usize));
    let running: Arc<Mutex<HashMap<u64, AbortHandle>>> = Arc::default();
    let mut tasks = JoinSet::new();

    let reason = loop {
        while tasks.try_join_next().is_some() {}
        let header = match timeout(
            shared.config.idle_timeout,
            read_header(&mut rd, &shared.config.limits),
        )
        .await
        {
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) => break None,
            Ok(Err(e)) => break Some(e),
            Err(_) => {
                break Some(ReadError::Io(std::io::Error::other(format!(
                    "no frame in {} s",
                    shared.config.idle_timeout.as_secs()
                ))));
            }
        };
        match header.kind {
            FrameKind::Cancel => {
                let handle = lock(&running).remove(&header.request_id);
                if let Some(h) = handle {
                    h.abort();
                    shared.stats.inc(&shared.stats.requests_cancelled);
                }
                continue;
            }
            FrameKind::Response => {
                break Some(ReadError::Io(std::io::Error::other(
                    "client sent a response frame",
                )));
            }
            FrameKind::Request => {}
        }
        // Take budget before reading the body so memory stays bounded; waiting here stops
        // reading the socket and pushes back on the sender.
        let size = header
            .wire_len()
            .min(u64::from(shared.config.max_inflight_bytes)) as u32;
        let Ok(permit) = inflight.clone().acquire_many_owned(size).await else {
            break None;
        };
        // From here the frame has `frame_timeout` to get its share of the server-wide
        // budget and arrive in full: a stalled sender cannot hold (or queue for) buffers
        // longer than that.
        let frame_by = Instant::now() + shared.config.frame_timeout;
        let late = || {
            shared.stats.inc(&shared.stats.frames_timed_out);
            Some(ReadError::Io(std::io::Error::other(format!(
                "a {}-byte frame was not complete {} ms after its header",
                header.wire_len(),
                shared.config.frame_timeout.as_millis()
            ))))
        };
        let held = if header.wire_len() > SMALL_FRAME {
            let want = budget_permits(header.wire_len())
                .min(budget_permits(shared.config.max_buffered_bytes));
            match timeout_at(frame_by, shared.buffered.clone().acquire_many_owned(want)).await {
                Ok(Ok(p)) => Some(p),
                Ok(Err(_)) => break None,
                Err(_) => break late(),
            }
        } else {
            None
        };
        let frame = match timeout_at(frame_by, read_rest(&mut rd, header)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => break Some(e),
            Err(_) => break late(),
        };
        let received = Instant::now();
        let deadline = (header.deadline_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(u64::from(header.deadline_ms)));
        let request = RawRequest {
            method: header.method,
            body: frame.body,
            payload: frame.payload,
            peer,
            deadline,
        };
        let id = header.request_id;
        let handler = CatchPanic::new(shared.router.dispatch(request));
        let out = out.clone();
        let running_for_task = running.clone();
        let stats = shared.stats.clone();
        let abort = tasks.spawn(async move {
            // The request's share of the server-wide budget, given back once it is answered.
            let _held = held;
            let result = match deadline {
                Some(d) => timeout_at(d, handler)
                    .await
                    .unwrap_or(Ok(Err(Status::DeadlineExceeded))),
                None => handler.await,
            };
            let (status, reply) = match result {
                Ok(Ok(reply)) => (Status::Ok, reply),
                Ok(Err(status)) => (status, Default::default()),
                Err(panic) => {
                    tracing::error!(%peer, method = %header.method, "handler panicked: {panic}");
                    (Status::Internal, Default::default())
                }
            };
            lock(&running_for_task).remove(&id);
            stats.inc(&stats.requests_handled);
            let sent = HEADER_LEN + reply.body.len() + reply.payload.len();
            stats.methods.get(header.method).server_call(
                status,
                received.elapsed(),
                header.wire_len(),
                sent as u64,
            );
            let _ = out
                .send(OutFrame {
                    header: FrameHeader::response(header.method, id, status),
                    body: reply.body,
                    payload: reply.payload,
                    permit: Some(permit),
                })
                .await;
        });
        lock(&running).insert(id, abort);
    };
    if let Some(e) = reason {
        shared.stats.inc(&shared.stats.protocol_errors);
        tracing::warn!(%peer, "closing connection: {e}");
    }
    // Abandon work nobody can receive, then let the writer drain and close.
    tasks.abort_all();
    drop(out);
    let _ = writer.await;
}

/// The server-wide budget counts KiB (a semaphore holds at most `u32::MAX` permits).
fn budget_permits(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
