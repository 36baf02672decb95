//! Raft messages between metaservers over the Tessera RPC layer.
//!
//! Bodies are openraft's own types encoded with postcard; they never leave this folder, so the
//! wire crate stays free of openraft. Snapshot images travel as the raw payload on the bulk
//! connection, so a large snapshot never delays heartbeats on the small one. Connect and auth
//! failures are reported as `Unreachable` so openraft backs off instead of retrying hot.

use super::types::{Snapshot, SnapshotData, TypeConfig, Vote};
use bytes::Bytes;
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tessera_proto::{Method, decode_body, encode_body};
use tessera_rpc::{Client, Lane, RpcConfig, RpcError, Secret};

/// Creates one RPC client per peer address and shares it among openraft's users of that peer
/// (replication, votes, snapshots): one small and one bulk connection per pair of nodes.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    secret: Secret,
    config: RpcConfig,
    clients: Arc<std::sync::Mutex<HashMap<String, Arc<Client>>>>,
}

impl NetworkFactory {
    /// A factory whose connections authenticate with `secret`.
    pub fn new(secret: Secret, config: RpcConfig) -> Self {
        Self {
            secret,
            config,
            clients: Arc::default(),
        }
    }

    fn client(&self, addr: &str) -> Arc<Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(Client::new(addr, self.secret.clone(), self.config.clone()))
            })
            .clone()
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            target,
            client: self.client(&node.addr),
        }
    }
}

/// Sends Raft messages to one peer.
#[derive(Debug)]
pub struct PeerNetwork {
    target: u64,
    client: Arc<Client>,
}

fn rpc_error(target: u64, e: RpcError) -> RPCError<TypeConfig> {
    match e {
        RpcError::Connect { .. } | RpcError::Auth(_) => RPCError::Unreachable(Unreachable::new(&e)),
        other => {
            tracing::debug!(target, "raft rpc failed: {other}");
            RPCError::Network(NetworkError::new(&other))
        }
    }
}

impl PeerNetwork {
    async fn call<Req, Resp>(
        &self,
        method: Method,
        req: &Req,
        payload: Bytes,
        lane: Lane,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = encode_body(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let (reply, _) = self
            .client
            .call_raw(method, body.into(), payload, lane, timeout)
            .await
            .map_err(|e| rpc_error(self.target, e))?;
        let result: Result<Resp, RaftError<TypeConfig>> =
            decode_body(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // A remote fatal error means that node's Raft has stopped: treat it as unreachable.
        result.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            Method::RAFT_APPEND,
            &rpc,
            Bytes::new(),
            Lane::Small,
            option.soft_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            Method::RAFT_VOTE,
            &rpc,
            Bytes::new(),
            Lane::Small,
            option.soft_ttl(),
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            Method::RAFT_PRE_VOTE,
            &rpc,
            Bytes::new(),
            Lane::Small,
            option.soft_ttl(),
        )
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let head = (vote, snapshot.meta);
        // A snapshot may take much longer than a heartbeat: allow the hard limit.
        let send = self.call::<_, SnapshotResponse<TypeConfig>>(
            Method::RAFT_SNAPSHOT,
            &head,
            snapshot.snapshot,
            Lane::Bulk,
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => res.map_err(|e| match e {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(
            Method::RAFT_TRANSFER_LEADER,
            &req,
            Bytes::new(),
            Lane::Small,
            option.soft_ttl(),
        )
        .await
    }
}
