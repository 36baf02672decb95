//! The backup RPCs: `MetaDump` (a consistent image of the namespace, from the leader) and
//! `MetaLoad` (an image into an empty namespace, as one Raft entry). The image format and
//! the load itself are in [`tessera_namespace::dump`].

use crate::service::MetaService;
use bytes::Bytes;
use tessera_namespace::dump;
use tessera_proto::backup::{DumpSummary, LoadError, MAX_LOAD_IMAGE, MetaDump, MetaLoad};
use tessera_proto::fs::FsError;
use tessera_proto::meta::{Op, Response, ServiceError, WriteRequest};
use tessera_rpc::Router;

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable {
        reason: e.to_string(),
    }
}

impl MetaService {
    /// The image of the namespace as of a linearizable read.
    async fn dump(&self) -> Result<(DumpSummary, Bytes), ServiceError> {
        self.require_leader()
            .map_err(|leader| ServiceError::NotLeader { leader })?;
        self.confirm_leader().await?;
        let store = self.store().clone();
        let (image, mut summary) = tokio::task::spawn_blocking(move || {
            let view = store.read_view()?;
            let applied = store.last_applied()?;
            dump::dump(&view).map(|(image, mut s)| {
                s.applied_index = applied.map_or(0, |p| p.index);
                (image, s)
            })
        })
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
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
    async fn load(&self, image: Bytes) -> Result<Result<DumpSummary, LoadError>, ServiceError> {
        self.require_leader()
            .map_err(|leader| ServiceError::NotLeader { leader })?;
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
        self.confirm_leader().await?;
        let store = self.store().clone();
        let occupied = tokio::task::spawn_blocking(move || dump::not_empty(&store.read_view()?))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        if let Some(what) = occupied {
            return Ok(Err(LoadError::NotEmpty { what }));
        }
        let req = WriteRequest {
            session: 0,
            seq: 0,
            seq_floor: 0,
            op: Op::LoadImage {
                image: image.to_vec(),
            },
        };
        match self.write(req).await? {
            Ok(Response::Done) => {
                summary.applied_index = self.status().applied_index.unwrap_or(0);
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
    pub(crate) fn backup_routes(self, router: Router) -> Router {
        let (d, l) = (self.clone(), self);
        router
            .route::<MetaDump, _, _>(move |_call| {
                let svc = d.clone();
                async move {
                    match svc.dump().await {
                        Ok((summary, image)) => (Ok(summary), image),
                        Err(e) => (Err(e), Bytes::new()),
                    }
                }
            })
            .route::<MetaLoad, _, _>(move |call| {
                let svc = l.clone();
                async move { (svc.load(call.payload).await, Bytes::new()) }
            })
    }
}
