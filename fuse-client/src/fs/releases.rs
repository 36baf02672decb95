//! Releases of opens, sent to the metadata service in the background and in batches.
//!
//! The kernel does not wait for RELEASE (`close(2)` returns after FLUSH), and a release only
//! drops this session's open count of the inode, so nothing needs it at once; sent alone,
//! each would be one more Raft entry whose fsync a following create or write waits behind.
//! Releases gathered for a short while go out together as one command (`ReleaseMany`), so
//! a batch is one Raft entry: one proposal, one apply, one share of an fsync. An open is
//! always recorded before its release is queued (the kernel had the handle), and opens are
//! counted, so order among them does not matter. Releases still queued at unmount are
//! covered by closing the session, which drops all its opens. An open the mount answered
//! alone under caps (`Namespace::open`) and never reported is released here alone too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_proto::fs::Ino;
use tokio::sync::mpsc;

use tessera_client::ops::Namespace;

/// How long releases gather before a batch goes out.
const GATHER: Duration = Duration::from_millis(50);
/// Most releases in one command (a few KiB of log entry).
const BATCH: usize = 1024;

/// Queues releases for the background sender.
#[derive(Debug, Clone)]
pub(crate) struct Releases {
    ns: Namespace,
    tx: mpsc::UnboundedSender<Ino>,
    /// Queued and not sent yet (a planned handover waits for 0: the session lives on, so
    /// nothing else would ever drop those opens).
    pending: Arc<AtomicUsize>,
}

impl Releases {
    /// Starts the sender on `rt`.
    pub(crate) fn start(ns: Namespace, rt: &tokio::runtime::Handle) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Ino>();
        let pending = Arc::new(AtomicUsize::new(0));
        let (sent, sender_ns) = (pending.clone(), ns.clone());
        rt.spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(GATHER).await;
                let mut batch = vec![first];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                for inos in batch.chunks(BATCH) {
                    if let Err(e) = sender_ns.release_many(inos.to_vec()).await {
                        tracing::warn!(count = inos.len(), "releases failed: {e}");
                    }
                    sent.fetch_sub(inos.len(), Ordering::SeqCst);
                }
            }
        });
        Self { ns, tx, pending }
    }

    pub(crate) fn queue(&self, ino: Ino) {
        if self.ns.release_locally(ino) {
            return;
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(ino).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(ino, "release dropped: the sender has stopped");
        }
    }

    /// Releases queued and not sent yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}
