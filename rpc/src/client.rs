//! A client for one peer address: typed calls, deadlines, reconnects, and separate
//! connections for small calls and bulk payloads.

use crate::config::RpcConfig;
use crate::conn::Connection;
use crate::error::RpcError;
use crate::metrics::{ClientErrorKind, client_metrics};
use crate::secret::Secret;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tessera_proto::{HEADER_LEN, Method, Rpc, Status, decode_body, encode_body};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Which of the two connections to a peer a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Small calls: metadata, heartbeats. Never queued behind a shard transfer.
    Small,
    /// Calls that carry large payloads (shard puts and gets).
    Bulk,
}

/// Calls one peer. Cheap to share behind an `Arc`; connections are opened on first use and
/// reopened after a failure.
#[derive(Debug)]
pub struct Client {
    peer: String,
    secret: Secret,
    config: RpcConfig,
    small: Mutex<Option<Arc<Connection>>>,
    bulk: Mutex<Option<Arc<Connection>>>,
    auth_failure_logged: AtomicBool,
}

impl Client {
    /// A client for `peer` ("host:port"). Nothing is connected until the first call.
    pub fn new(peer: impl Into<String>, secret: Secret, config: RpcConfig) -> Self {
        Self {
            peer: peer.into(),
            secret,
            config,
            small: Mutex::new(None),
            bulk: Mutex::new(None),
            auth_failure_logged: AtomicBool::new(false),
        }
    }

    /// The address this client calls.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Calls `R` with no payload and the default deadline.
    pub async fn call<R: Rpc>(&self, req: &R::Request) -> Result<R::Reply, RpcError> {
        let (reply, _) = self
            .call_with::<R>(req, Bytes::new(), self.config.default_timeout)
            .await?;
        Ok(reply)
    }

    /// Calls `R` with a payload and a deadline; returns the reply and its payload.
    pub async fn call_with<R: Rpc>(
        &self,
        req: &R::Request,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(R::Reply, Bytes), RpcError> {
        let body = encode_body(req).map_err(|source| RpcError::Body {
            peer: self.peer.clone(),
            method: R::METHOD,
            source,
        })?;
        let lane = if R::BULK || payload.len() > self.config.bulk_threshold {
            Lane::Bulk
        } else {
            Lane::Small
        };
        let (body, payload) = self
            .call_raw(R::METHOD, body.into(), payload, lane, timeout)
            .await?;
        let reply = decode_body::<R::Reply>(&body).map_err(|source| RpcError::Body {
            peer: self.peer.clone(),
            method: R::METHOD,
            source,
        })?;
        Ok((reply, payload))
    }

    /// Calls a method with raw body bytes; returns the raw reply body and payload.
    pub async fn call_raw(
        &self,
        method: Method,
        body: Bytes,
        payload: Bytes,
        lane: Lane,
        timeout: Duration,
    ) -> Result<(Bytes, Bytes), RpcError> {
        let started = std::time::Instant::now();
        let request_len = (HEADER_LEN + body.len() + payload.len()) as u64;
        let result = self
            .call_raw_inner(method, body, payload, lane, timeout)
            .await;
        let (error, sent, received) = match &result {
            Ok((b, p)) => (None, request_len, (HEADER_LEN + b.len() + p.len()) as u64),
            Err(e) => {
                let kind = error_kind(e);
                let sent = match kind {
                    ClientErrorKind::Connect | ClientErrorKind::Auth => 0,
                    _ => request_len,
                };
                (Some(kind), sent, 0)
            }
        };
        client_metrics()
            .get(method)
            .client_call(error, started.elapsed(), sent, received);
        result
    }

    async fn call_raw_inner(
        &self,
        method: Method,
        body: Bytes,
        payload: Bytes,
        lane: Lane,
        timeout: Duration,
    ) -> Result<(Bytes, Bytes), RpcError> {
        let deadline = Instant::now() + timeout;
        let conn = self.connection(lane, deadline).await?;
        let frame = conn.call(method, body, payload, deadline).await?;
        let peer = || self.peer.clone();
        match frame.header.status {
            Status::Ok => Ok((frame.body, frame.payload)),
            Status::UnknownMethod => Err(RpcError::UnknownMethod {
                peer: peer(),
                method,
            }),
            Status::BadRequest => Err(RpcError::BadRequest {
                peer: peer(),
                method,
            }),
            // The server's clock for the deadline starts when the request arrives, so this
            // only races the caller's own timer: to the caller both mean "timed out".
            Status::DeadlineExceeded => Err(RpcError::Timeout {
                peer: peer(),
                method,
                ms: timeout.as_millis() as u64,
            }),
            Status::Unavailable => Err(RpcError::Unavailable {
                peer: peer(),
                method,
            }),
            Status::Internal => Err(RpcError::Internal {
                peer: peer(),
                method,
            }),
        }
    }

    /// Drops both connections; the next call reconnects.
    pub async fn disconnect(&self) {
        *self.small.lock().await = None;
        *self.bulk.lock().await = None;
    }

    async fn connection(&self, lane: Lane, deadline: Instant) -> Result<Arc<Connection>, RpcError> {
        let slot = match lane {
            Lane::Small => &self.small,
            Lane::Bulk => &self.bulk,
        };
        // Holding the slot lock while connecting makes concurrent callers share one new
        // connection instead of racing to open several.
        let mut slot = match tokio::time::timeout_at(deadline, slot.lock()).await {
            Ok(s) => s,
            Err(_) => {
                return Err(RpcError::Connect {
                    peer: self.peer.clone(),
                    reason: "timed out waiting for another caller's connect".into(),
                });
            }
        };
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        match Connection::open(&self.peer, &self.secret, &self.config, deadline).await {
            Ok(c) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(RpcError::Auth(e)) => {
                // Logged once per client: a caller that retries must not flood the log.
                if !self.auth_failure_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!("{e}");
                }
                Err(RpcError::Auth(e))
            }
            Err(e) => Err(e),
        }
    }
}

fn error_kind(e: &RpcError) -> ClientErrorKind {
    match e {
        RpcError::Connect { .. } => ClientErrorKind::Connect,
        RpcError::Auth(_) => ClientErrorKind::Auth,
        RpcError::Timeout { .. } => ClientErrorKind::Timeout,
        RpcError::ConnectionClosed { .. } => ClientErrorKind::ConnectionClosed,
        RpcError::UnknownMethod { .. } => ClientErrorKind::UnknownMethod,
        RpcError::BadRequest { .. } => ClientErrorKind::BadRequest,
        RpcError::Unavailable { .. } => ClientErrorKind::Unavailable,
        RpcError::Internal { .. } => ClientErrorKind::Internal,
        RpcError::Frame { .. } | RpcError::Body { .. } => ClientErrorKind::Protocol,
    }
}
