//! The receiving side of Raft messages: RPC handlers that hand each message to the local
//! Raft node and send back its answer.

use super::types::{Raft, Snapshot, SnapshotMeta, Vote};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use tessera_proto::{Method, Status, decode_body, encode_body};
use tessera_rpc::{RawReply, RawRequest, Router};

fn reply<T: Serialize>(value: &T) -> Result<RawReply, Status> {
    let body = encode_body(value).map_err(|e| {
        tracing::error!("cannot encode a raft reply: {e}");
        Status::Internal
    })?;
    Ok(RawReply {
        body: body.into(),
        payload: Bytes::new(),
    })
}

fn decode<T: DeserializeOwned>(req: &RawRequest) -> Result<T, Status> {
    decode_body(&req.body).map_err(|e| {
        tracing::warn!(peer = %req.peer, method = %req.method, "bad raft message: {e}");
        Status::BadRequest
    })
}

/// Registers a handler that decodes `Req`, runs `f` on this node's Raft, and encodes its
/// result (including Raft's own errors) as the reply body.
fn handle<Req, Resp, F, Fut>(router: Router, method: Method, raft: Raft, f: F) -> Router
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Raft, Req, Bytes) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    router.raw(method, move |req: RawRequest| {
        let (raft, f) = (raft.clone(), f.clone());
        async move {
            let msg: Req = decode(&req)?;
            reply(&f(raft, msg, req.payload).await)
        }
    })
}

/// Adds the Raft methods to a metaserver's router.
pub fn routes(router: Router, raft: Raft) -> Router {
    let router = handle(
        router,
        Method::RAFT_APPEND,
        raft.clone(),
        |raft: Raft, rpc, _| async move { raft.append_entries(rpc).await },
    );
    let router = handle(
        router,
        Method::RAFT_VOTE,
        raft.clone(),
        |raft: Raft, rpc, _| async move { raft.vote(rpc).await },
    );
    let router = handle(
        router,
        Method::RAFT_PRE_VOTE,
        raft.clone(),
        |raft: Raft, rpc, _| async move { raft.pre_vote(rpc).await },
    );
    let router = handle(
        router,
        Method::RAFT_TRANSFER_LEADER,
        raft.clone(),
        |raft: Raft, req, _| async move { raft.handle_transfer_leader(req).await },
    );
    handle(
        router,
        Method::RAFT_SNAPSHOT,
        raft,
        |raft: Raft, (vote, meta): (Vote, SnapshotMeta), payload: Bytes| async move {
            let snapshot = Snapshot {
                meta,
                snapshot: payload,
            };
            raft.install_full_snapshot(vote, snapshot)
                .await
                .map_err(openraft::error::RaftError::<super::types::TypeConfig>::Fatal)
        },
    )
}
