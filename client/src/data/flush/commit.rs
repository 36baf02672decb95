//! Stage 6, commit: one `CommitSlice` with every slice of the flush (holes first, then each
//! stripe's slices in pack order) and each stripe it names once. The metaserver lays each
//! slice over its chunk, cutting away what it covers of older slices, so a chunk's record
//! stays disjoint runs in offset order. The reply is the file's new attributes.

use tessera_proto::fs::{Attr, ChunkSlice, Ino, StripeInfo};
use tessera_proto::meta::{Op, Response};

use crate::data::DataPath;
use crate::error::ClientError;

impl DataPath {
    /// Commits `holes` and the `stored` stripes with their slices, as one Raft command.
    pub(in crate::data) async fn commit(
        &self,
        ino: Ino,
        holes: Vec<ChunkSlice>,
        stored: Vec<(Vec<ChunkSlice>, StripeInfo)>,
    ) -> Result<Attr, ClientError> {
        let mut slices = holes;
        let mut stripes: Vec<StripeInfo> = Vec::new();
        for (s, info) in stored {
            slices.extend(s);
            // Two packs of one flush with the same bytes are one stripe.
            if !stripes.iter().any(|x| x.id == info.id) {
                stripes.push(info);
            }
        }
        self.commit_slices(ino, slices, stripes).await
    }

    /// Commits `slices`, laid in order, referencing stripes that `stripes` describes (each
    /// once) or that the metadata service already holds.
    pub(in crate::data) async fn commit_slices(
        &self,
        ino: Ino,
        slices: Vec<ChunkSlice>,
        stripes: Vec<StripeInfo>,
    ) -> Result<Attr, ClientError> {
        let op = Op::CommitSlice {
            ino,
            slices,
            stripes,
        };
        let reply = self
            .meta
            .write(op)
            .await
            .map_err(|e| ClientError::meta("commit", e))?;
        match reply? {
            Response::Attr(a) => Ok(a),
            other => Err(ClientError::unexpected("commit", &other)),
        }
    }
}
