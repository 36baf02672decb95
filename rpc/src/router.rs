//! Maps method numbers to handlers on a server.

use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tessera_proto::system::{Ping, PingReply};
use tessera_proto::{Method, Rpc, Status, decode_body, encode_body};
use tokio::time::Instant;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request as a handler sees it, before the body is decoded.
#[derive(Debug)]
pub struct RawRequest {
    /// Method number.
    pub method: Method,
    /// Postcard body.
    pub body: Bytes,
    /// Raw payload.
    pub payload: Bytes,
    /// Who sent it (an authenticated peer).
    pub peer: SocketAddr,
    /// When the caller stops waiting; the handler is abandoned then.
    pub deadline: Option<Instant>,
}

/// A reply before it is framed.
#[derive(Debug, Default)]
pub struct RawReply {
    /// Postcard body.
    pub body: Bytes,
    /// Raw payload.
    pub payload: Bytes,
}

/// A decoded request handed to a typed handler.
#[derive(Debug)]
pub struct Call<T> {
    /// The decoded body.
    pub req: T,
    /// The raw payload (shard bytes), untouched.
    pub payload: Bytes,
    /// Who sent it.
    pub peer: SocketAddr,
    /// When the caller stops waiting.
    pub deadline: Option<Instant>,
}

type Handler = dyn Fn(RawRequest) -> BoxFuture<Result<RawReply, Status>> + Send + Sync;

/// Method table of a server. Every router answers [`Ping`] with its role.
#[derive(Clone)]
pub struct Router {
    routes: HashMap<Method, Arc<Handler>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut methods: Vec<_> = self.routes.keys().collect();
        methods.sort();
        f.debug_struct("Router").field("methods", &methods).finish()
    }
}

impl Router {
    /// A router for a process with the given role ("meta", "chunk", ...).
    pub fn new(role: &'static str) -> Self {
        let r = Self {
            routes: HashMap::new(),
        };
        r.route::<Ping, _, _>(move |_call| async move {
            let reply = PingReply {
                role: role.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            (reply, Bytes::new())
        })
    }

    /// Adds a handler working on raw bytes (for methods whose body is not postcard).
    pub fn raw<F, Fut>(mut self, method: Method, f: F) -> Self
    where
        F: Fn(RawRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<RawReply, Status>> + Send + 'static,
    {
        self.routes.insert(
            method,
            Arc::new(move |req| Box::pin(f(req)) as BoxFuture<_>),
        );
        self
    }

    /// Adds a typed handler: the body is decoded as `R::Request` (a bad body is answered
    /// with [`Status::BadRequest`] without running the handler) and the reply encoded.
    pub fn route<R, F, Fut>(self, f: F) -> Self
    where
        R: Rpc,
        F: Fn(Call<R::Request>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (R::Reply, Bytes)> + Send + 'static,
    {
        let f = Arc::new(f);
        self.raw(R::METHOD, move |raw: RawRequest| {
            let f = f.clone();
            async move {
                let req = decode_body::<R::Request>(&raw.body).map_err(|e| {
                    tracing::warn!(peer = %raw.peer, method = %R::METHOD, "refused request: {e}");
                    Status::BadRequest
                })?;
                let call = Call {
                    req,
                    payload: raw.payload,
                    peer: raw.peer,
                    deadline: raw.deadline,
                };
                let (reply, payload) = f(call).await;
                let body = encode_body(&reply).map_err(|e| {
                    tracing::error!(method = %R::METHOD, "cannot encode reply: {e}");
                    Status::Internal
                })?;
                Ok(RawReply {
                    body: body.into(),
                    payload,
                })
            }
        })
    }

    /// Runs the handler for a request; unknown methods get [`Status::UnknownMethod`].
    pub(crate) fn dispatch(&self, req: RawRequest) -> BoxFuture<Result<RawReply, Status>> {
        match self.routes.get(&req.method) {
            Some(h) => h(req),
            None => Box::pin(async { Err(Status::UnknownMethod) }),
        }
    }
}
