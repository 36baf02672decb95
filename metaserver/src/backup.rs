//! The backup RPCs: `MetaDump` (a consistent image of the namespace, from the leader) and
//! `MetaLoad` (an image into an empty namespace, as one Raft entry). The image format and
//! the load itself are in [`tessera_namespace::dump`].

use crate::replica::Replica;
use bytes::Bytes;
use tessera_namespace::dump;
use tessera_proto::backup::{DumpSummary, LoadError, MAX_LOAD_IMAGE, MetaDump, MetaLoad};
use tessera_proto::fs::FsError;
use tessera_proto::meta::{Op, Response, ServiceError};
use tessera_rpc::Router;

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable {
        reason: e.to_string(),
    }
}

/// The image of the namespace as of a linearizable read.
async fn dump(replica: &Replica) -> Result<(DumpSummary, Bytes), ServiceError> {
    replica.lead()?;
    let (image, mut summary) = replica
        .read_with(|store| {
            let view = store.read_view()?;
            let applied = store.last_applied()?;
            dump::dump(&view).map(|(image, mut s)| {
                s.applied_index = applied.map_or(0, |p| p.index);
                (image, s)
            })
        })
        .await?;
    summary.bytes = image.len() as u64;
    let max = u64::from(tessera_proto::frame::DEFAULT_MAX_PAYLOAD);
    if summary.bytes > max {
        return Err(unavailable(format!(
            "the image is {} bytes, more than the {max} bytes one reply can carry",
            summary.bytes
        )));
    }
    tracing::info!(
        inodes = summary.inodes,
        stripes = summary.stripes,
        bytes = summary.bytes,
        "namespace dumped"
    );
    Ok((summary, Bytes::from(image)))
}

/// Checks the image and the target, then replicates the load.
async fn load(
    replica: &Replica,
    image: Bytes,
) -> Result<Result<DumpSummary, LoadError>, ServiceError> {
    replica.lead()?;
    if image.len() as u64 > MAX_LOAD_IMAGE {
        return Ok(Err(LoadError::TooLarge {
            len: image.len() as u64,
            max: MAX_LOAD_IMAGE,
        }));
    }
    let mut summary = match dump::inspect(&image) {
        Ok(s) => s,
        Err(reason) => return Ok(Err(LoadError::BadImage { reason })),
    };
    let occupied = replica
        .read_with(|store| dump::not_empty(&store.read_view()?))
        .await?;
    if let Some(what) = occupied {
        return Ok(Err(LoadError::NotEmpty { what }));
    }
    let op = Op::LoadImage {
        image: image.to_vec(),
    };
    match replica.propose_system(op).await? {
        Ok(Response::Done) => {
            summary.applied_index = replica.status().applied_index.unwrap_or(0);
            tracing::info!(
                inodes = summary.inodes,
                stripes = summary.stripes,
                bytes = summary.bytes,
                "backup image loaded"
            );
            Ok(Ok(summary))
        }
        Ok(other) => Err(unavailable(format!("unexpected reply to load: {other:?}"))),
        // Someone changed the namespace between the check and the apply.
        Err(FsError::NotEmpty) => Ok(Err(LoadError::NotEmpty {
            what: "it changed while loading".into(),
        })),
        Err(e) => Ok(Err(LoadError::BadImage {
            reason: format!("the metaserver refused it: {e:?}"),
        })),
    }
}

/// Adds the backup methods to a router.
pub(crate) fn routes(router: Router, replica: Replica) -> Router {
    let (d, l) = (replica.clone(), replica);
    router
        .route::<MetaDump, _, _>(move |_call| {
            let replica = d.clone();
            async move {
                match dump(&replica).await {
                    Ok((summary, image)) => (Ok(summary), image),
                    Err(e) => (Err(e), Bytes::new()),
                }
            }
        })
        .route::<MetaLoad, _, _>(move |call| {
            let replica = l.clone();
            async move { (load(&replica, call.payload).await, Bytes::new()) }
        })
}
