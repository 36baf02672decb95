//! The cluster client against real RPC servers on 127.0.0.1 that answer like members of a
//! group: a follower naming the leader, a leader, a member that cannot serve, a closed port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tessera_proto::cluster::{ChunkHeartbeat, ClusterError, Heartbeat};
use tessera_proto::meta::{ListChunkservers, MetaStatus, MetaStatusReply, ServiceError};
use tessera_rpc::{Router, RpcConfig, Secret, ServerHandle, serve};

use crate::{CallError, ClusterClient, Retry};

fn secret() -> Secret {
    Secret::from_bytes(b"cluster client test secret", "test").unwrap()
}

/// A member whose list-chunkservers answer is `answer`, counting the calls it gets.
async fn member(answer: Result<(), ServiceError>, calls: Arc<AtomicUsize>) -> ServerHandle {
    let router = Router::new("meta")
        .route::<ListChunkservers, _, _>(move |_call| {
            let (answer, calls) = (answer.clone(), calls.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                (answer.map(|()| Vec::new()), Bytes::new())
            }
        })
        .route::<MetaStatus, _, _>(|_call| async move {
            let status = MetaStatusReply {
                id: 1,
                role: "follower".into(),
                term: 3,
                leader: None,
                last_log_index: None,
                applied_index: None,
                snapshot_index: None,
                purged_index: None,
                members: vec![],
            };
            (status, Bytes::new())
        })
        .route::<ChunkHeartbeat, _, _>(|call| async move {
            let id = call.req.id;
            (Err(ClusterError::UnknownChunkserver { id }), Bytes::new())
        });
    serve("127.0.0.1:0", secret(), router, RpcConfig::default())
        .await
        .unwrap()
}

fn addr(s: &ServerHandle) -> String {
    s.local_addr().to_string()
}

/// An address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn quick() -> Retry {
    Retry {
        deadline: Duration::from_millis(400),
        attempt_timeout: Duration::from_millis(200),
        ..Retry::default()
    }
}

#[tokio::test]
async fn a_hint_is_followed_and_remembered() {
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = member(Ok(()), calls.clone()).await;
    let hint = Err(ServiceError::NotLeader {
        leader: Some(addr(&leader)),
    });
    let follower = member(hint, Arc::new(AtomicUsize::new(0))).await;
    // A dead address first: it is skipped, the follower's hint leads to the leader.
    let c = ClusterClient::new(
        &[closed_port(), addr(&follower)],
        secret(),
        RpcConfig::default(),
    );
    c.call::<ListChunkservers, _, _>(&(), &Retry::default())
        .await
        .unwrap();
    assert_eq!(c.leader(), Some(addr(&leader)));
    c.call::<ListChunkservers, _, _>(&(), &Retry::default())
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the second call goes straight there"
    );
}

#[tokio::test]
async fn nobody_listening_is_one_line_naming_the_addresses() {
    let dead = closed_port();
    let c = ClusterClient::new(std::slice::from_ref(&dead), secret(), RpcConfig::default());
    let e = c
        .call::<ListChunkservers, _, _>(&(), &quick())
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Unreachable { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("cannot reach any metaserver at {dead}")) && !text.contains('\n'),
        "{text}"
    );
    let e = c.probe(Duration::from_millis(200)).await.unwrap_err();
    assert!(e.to_string().contains("is the cluster running?"), "{e}");
}

#[tokio::test]
async fn unavailable_is_retried_by_a_mount_and_reported_by_an_admin_command() {
    let calls = Arc::new(AtomicUsize::new(0));
    let busy = Err(ServiceError::Unavailable {
        reason: "no quorum".into(),
    });
    let m = member(busy, calls.clone()).await;
    let c = ClusterClient::new(&[addr(&m)], secret(), RpcConfig::default());
    let e = c
        .call::<ListChunkservers, _, _>(&(), &Retry::once(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::Refused { .. }), "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let e = c
        .call::<ListChunkservers, _, _>(&(), &quick())
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::NoLeader { .. }), "{e:?}");
    assert!(e.to_string().contains("no quorum"), "{e}");
    assert!(
        calls.load(Ordering::SeqCst) > 2,
        "retried until the deadline"
    );
}

#[tokio::test]
async fn a_final_answer_is_the_callers_and_statuses_come_from_every_member() {
    let m = member(Ok(()), Arc::new(AtomicUsize::new(0))).await;
    let c = ClusterClient::new(&[addr(&m), closed_port()], secret(), RpcConfig::default());
    // What a chunkserver says to a new leader that has not seen its registration.
    let hb = Heartbeat {
        corrupt: vec![],
        missing: vec![],
        full: false,
        capacity: 1 << 30,
        used: 1 << 20,
        shards: 1,
        addr: addr(&m),
        id: 9,
    };
    let e = c
        .call::<ChunkHeartbeat, _, _>(&hb, &Retry::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CallError::Refused {
                error: ClusterError::UnknownChunkserver { id: 9 },
                ..
            }
        ),
        "{e:?}"
    );
    let s = c.statuses(Duration::from_millis(500)).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, addr(&m));
    c.probe(Duration::from_millis(500)).await.unwrap();
}
