//! One authenticated client connection carrying many calls at once.
//!
//! A writer task owns the socket's write half and a reader task its read half. Calls are
//! matched to replies by request id through the `pending` table, so replies may arrive in
//! any order. A call that times out or is dropped removes itself from the table and sends a
//! cancel frame so the server stops working on it. A keepalive task (`keepalive.rs`)
//! closes a connection whose peer stopped answering, so its calls fail at once and the
//! next call opens a new connection.

use crate::auth::client_handshake;
use crate::config::RpcConfig;
use crate::error::{AuthError, RpcError};
use crate::secret::Secret;
use crate::wire::{Frame, OutFrame, read_frame, write_loop};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_proto::{FrameHeader, FrameKind, HEADER_LEN, Method};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

type Waiter = oneshot::Sender<Result<Frame, RpcError>>;

/// Calls waiting for a reply, or why the connection is gone.
#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    closed: Option<RpcError>,
}

/// A live, authenticated connection to one peer.
#[derive(Debug)]
pub(crate) struct Connection {
    peer: String,
    out: mpsc::Sender<OutFrame>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    inflight: Arc<Semaphore>,
    max_inflight: u32,
    /// When the last frame arrived, in ms since `born`.
    last_rx_ms: Arc<AtomicU64>,
    /// When a call was last withdrawn unanswered (timed out or dropped), in ms since `born`
    /// plus one (0: never). See [`Connection::owes_reply`].
    withdrawn_ms: AtomicU64,
    born: Instant,
    /// The reader and writer tasks, aborted when the connection is closed or dropped so a
    /// socket to a vanished peer is not left waiting for TCP to give up.
    tasks: Vec<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("waiters", &self.waiters.len())
            .field("closed", &self.closed)
            .finish()
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding this lock leaves the table consistent (single inserts and
    // removes), so recovering from poisoning is safe.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails every waiting call and refuses new ones.
fn close_all(pending: &Mutex<Pending>, err: RpcError) {
    let waiters = {
        let mut p = lock(pending);
        if p.closed.is_none() {
            p.closed = Some(err.clone());
        }
        std::mem::take(&mut p.waiters)
    };
    for (_, w) in waiters {
        let _ = w.send(Err(err.clone()));
    }
}

impl Connection {
    /// Connects, authenticates and starts the reader and writer tasks.
    pub(crate) async fn open(
        peer: &str,
        secret: &Secret,
        config: &RpcConfig,
        deadline: Instant,
    ) -> Result<Arc<Self>, RpcError> {
        let connect_err = |reason: String| RpcError::Connect {
            peer: peer.to_string(),
            reason,
        };
        let started = Instant::now();
        let connect_by = deadline.min(Instant::now() + config.connect_timeout);
        let tcp = match timeout_at(connect_by, connect(peer, config.source_ip)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Err(_) => {
                let ms = connect_by.saturating_duration_since(started).as_millis();
                return Err(connect_err(format!("no answer to connect in {ms} ms")));
            }
        };
        tcp.set_nodelay(true)
            .map_err(|e| connect_err(e.to_string()))?;
        // The TLS handshake (when configured) and the secret handshake share one deadline.
        let hs_deadline = deadline.min(Instant::now() + config.handshake_timeout);
        let handshakes = async {
            let mut stream = crate::stream::client(tcp, config.tls.as_ref(), peer).await?;
            match client_handshake(&mut stream, secret, peer).await {
                // Inside TLS, the server's alert that it refused our certificate arrives on
                // our first read, that is here.
                Err(AuthError::Io { reason, .. }) if reason.contains("alert") => {
                    Err(crate::stream::tls_failure(peer, reason).into())
                }
                // The connection broke (the server died): worth retrying, as a failed
                // connect is.
                Err(AuthError::Io { reason, .. }) => Err(RpcError::ConnectionClosed {
                    peer: peer.to_string(),
                    reason: format!("during the handshake: {reason}"),
                }),
                r => r.map(|()| stream).map_err(RpcError::from),
            }
        };
        let stream = match timeout_at(hs_deadline, handshakes).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(AuthError::Timeout {
                    peer: peer.to_string(),
                    ms: config.handshake_timeout.as_millis() as u64,
                }
                .into());
            }
        };

        let (rd, wr) = stream.split();
        let (out, rx) = mpsc::channel(256);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let born = Instant::now();
        let last_rx_ms = Arc::new(AtomicU64::new(0));

        let writer_pending = pending.clone();
        let writer_peer = peer.to_string();
        let writer = tokio::spawn(async move {
            let reason = match write_loop(wr, rx).await {
                Ok(()) => "connection dropped by this side".to_string(),
                Err(e) => format!("write failed: {e}"),
            };
            close_all(
                &writer_pending,
                RpcError::ConnectionClosed {
                    peer: writer_peer,
                    reason,
                },
            );
        });

        let limits = config.limits;
        let reader_peer = peer.to_string();
        let reader_pending = pending.clone();
        let reader_rx = last_rx_ms.clone();
        let reader = tokio::spawn(async move {
            let pending = reader_pending;
            let mut rd = BufReader::with_capacity(64 << 10, rd);
            let err = loop {
                let frame = read_frame(&mut rd, &limits).await;
                reader_rx.store(born.elapsed().as_millis() as u64, Ordering::Relaxed);
                match frame {
                    Ok(Some(f)) if f.header.kind == FrameKind::Response => {
                        let waiter = lock(&pending).waiters.remove(&f.header.request_id);
                        // No waiter: the call timed out or was dropped; its reply is moot.
                        if let Some(w) = waiter {
                            let _ = w.send(Ok(f));
                        }
                    }
                    Ok(Some(f)) => {
                        break RpcError::ConnectionClosed {
                            peer: reader_peer.clone(),
                            reason: format!("server sent an unexpected {:?} frame", f.header.kind),
                        };
                    }
                    Ok(None) => {
                        break RpcError::ConnectionClosed {
                            peer: reader_peer.clone(),
                            reason: "closed by the server".into(),
                        };
                    }
                    Err(crate::wire::ReadError::Frame(source)) => {
                        break RpcError::Frame {
                            peer: reader_peer.clone(),
                            source,
                        };
                    }
                    Err(crate::wire::ReadError::Io(e)) => {
                        break RpcError::ConnectionClosed {
                            peer: reader_peer.clone(),
                            reason: e.to_string(),
                        };
                    }
                }
            };
            tracing::debug!(peer = %reader_peer, "connection reader stopped: {err}");
            close_all(&pending, err);
        });
        let conn = Arc::new(Self {
            peer: peer.to_string(),
            out,
            pending,
            next_id: AtomicU64::new(1),
            inflight: Arc::new(Semaphore::new(config.max_inflight_bytes as usize)),
            max_inflight: config.max_inflight_bytes,
            last_rx_ms,
            withdrawn_ms: AtomicU64::new(0),
            born,
            tasks: vec![reader.abort_handle(), writer.abort_handle()],
        });
        crate::keepalive::watch(&conn, config);
        Ok(conn)
    }

    /// How long since the last frame arrived (or since the connection opened).
    pub(crate) fn since_rx(&self) -> Duration {
        let last = Duration::from_millis(self.last_rx_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// Whether calls are waiting for replies.
    pub(crate) fn busy(&self) -> bool {
        !lock(&self.pending).waiters.is_empty()
    }

    /// Whether a call was withdrawn unanswered after the last frame arrived: the peer may
    /// have stopped answering though no call waits any more (a caller that reads around a
    /// slow server drops its call after milliseconds, so `busy` alone would never see it).
    pub(crate) fn owes_reply(&self) -> bool {
        // Stored plus one, so "withdrawn at or after the last frame" is `>`, and 0 (never)
        // is never after anything.
        self.withdrawn_ms.load(Ordering::Relaxed) > self.last_rx_ms.load(Ordering::Relaxed)
    }

    fn note_withdrawn(&self) {
        let now = self.born.elapsed().as_millis() as u64;
        self.withdrawn_ms.store(now + 1, Ordering::Relaxed);
    }

    /// Closes the connection: every waiting call fails with `reason`, new calls are refused
    /// (the client opens a new connection), and the socket is dropped.
    pub(crate) fn close(&self, reason: String) {
        close_all(
            &self.pending,
            RpcError::ConnectionClosed {
                peer: self.peer.clone(),
                reason,
            },
        );
        for t in &self.tasks {
            t.abort();
        }
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether the connection has failed and a new one is needed.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.pending).closed.is_some() || self.out.is_closed()
    }

    /// Sends a request and waits for its reply until `deadline`.
    pub(crate) async fn call(
        &self,
        method: Method,
        body: Bytes,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<Frame, RpcError> {
        let started = Instant::now();
        let timeout = || RpcError::Timeout {
            peer: self.peer.clone(),
            method,
            ms: started.elapsed().as_millis() as u64,
        };
        // Backpressure: wait for room in this connection's in-flight budget. A frame bigger
        // than the whole budget takes all of it and goes alone.
        let size = (HEADER_LEN + body.len() + payload.len()).min(self.max_inflight as usize);
        let permit = match timeout_at(
            deadline,
            self.inflight.clone().acquire_many_owned(size as u32),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(self.closed_error()),
            Err(_) => return Err(timeout()),
        };

        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.pending);
            if let Some(e) = &p.closed {
                return Err(e.clone());
            }
            p.waiters.insert(id, tx);
        }
        let mut guard = CancelOnDrop {
            conn: self,
            method,
            id,
            armed: true,
        };

        let remaining_ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .clamp(1, u128::from(u32::MAX)) as u32;
        let frame = OutFrame {
            header: FrameHeader::request(method, id, remaining_ms),
            body,
            payload,
            permit: None,
        };
        match timeout_at(deadline, self.out.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(self.closed_error()),
            Err(_) => return Err(timeout()),
        }
        let result = match timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(timeout()),
        };
        // The reply has been taken out of the table (or the table was emptied on close), so
        // there is nothing to cancel unless we timed out.
        if !matches!(result, Err(RpcError::Timeout { .. })) {
            guard.armed = false;
        }
        drop(permit);
        result
    }

    fn closed_error(&self) -> RpcError {
        lock(&self.pending)
            .closed
            .clone()
            .unwrap_or_else(|| RpcError::ConnectionClosed {
                peer: self.peer.clone(),
                reason: "connection closed".into(),
            })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects to `peer`, from `source` when given (so traffic between servers can be told
/// apart by address, for example by a firewall rule that partitions one of them).
async fn connect(peer: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(peer).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(peer).await? {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if let Err(e) = socket.bind(std::net::SocketAddr::new(source, 0)) {
            last = Some(e);
            continue;
        }
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{peer} resolves to no address"))))
}

/// Withdraws a call that ended without its reply (timeout, or the caller's future dropped)
/// and tells the server to stop working on it.
struct CancelOnDrop<'a> {
    conn: &'a Connection,
    method: Method,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        lock(&self.conn.pending).waiters.remove(&self.id);
        self.conn.note_withdrawn();
        crate::metrics::client_metrics()
            .get(self.method)
            .withdrawn
            .inc();
        // Best effort: if the queue is full the reply is simply discarded on arrival.
        let _ = self.conn.out.try_send(OutFrame {
            header: FrameHeader::cancel(self.method, self.id),
            body: Bytes::new(),
            payload: Bytes::new(),
            permit: None,
        });
    }
}
