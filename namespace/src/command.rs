//! Commands (replicated mutations), queries (reads) and their replies.
//!
//! A [`Command`] is what goes into the Raft log: the leader stamps `now_ns` before proposing,
//! so applying it is a pure function of the state and the command. A [`Query`] reads a state
//! (on the leader after a read-index confirmation) and is never logged.

use serde::{Deserialize, Serialize};
use std::fmt;
pub use tessera_proto::meta::{GcItem, Op, Query, Reply, Response};

/// Session id 0: commands issued by the metaserver itself (format, expiry, GC). They are not
/// deduplicated and may not use session-bound operations (open files, locks).
pub const SYSTEM_SESSION: u64 = 0;

/// One replicated mutation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client session that sent it, or [`SYSTEM_SESSION`].
    pub session: u64,
    /// Unique per session; a command whose `(session, seq)` was applied before returns the
    /// first reply instead of applying again. 0 means "do not deduplicate".
    pub seq: u64,
    /// The client has received every reply below this sequence number, so the state may
    /// forget them (Raft dissertation, section 6.3). Replays below it get `ESTALE`.
    pub seq_floor: u64,
    /// Wall-clock time stamped by the leader; the only clock `apply` knows.
    pub now_ns: i64,
    pub op: Op,
}

impl fmt::Display for Command {
    /// One line for logs (and the Raft library, which requires `Display` on log payloads).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}#{} ", self.session, self.seq)?;
        let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
        match &self.op {
            Op::Format { .. } => write!(f, "format"),
            Op::Mknod {
                parent,
                name: n,
                kind,
                ..
            } => write!(f, "mknod {parent}/{} {kind:?}", name(n)),
            Op::MakeNode {
                parent,
                name: n,
                kind,
                ..
            } => write!(f, "make {parent}/{} {kind:?}", name(n)),
            Op::Mkdir {
                parent, name: n, ..
            } => write!(f, "mkdir {parent}/{}", name(n)),
            Op::Symlink {
                parent, name: n, ..
            } => write!(f, "symlink {parent}/{}", name(n)),
            Op::Link {
                ino,
                new_parent,
                new_name,
            } => write!(f, "link {ino} -> {new_parent}/{}", name(new_name)),
            Op::Unlink { parent, name: n } => write!(f, "unlink {parent}/{}", name(n)),
            Op::Rmdir { parent, name: n } => write!(f, "rmdir {parent}/{}", name(n)),
            Op::Rename {
                parent,
                name: n,
                new_parent,
                new_name,
                mode,
            } => write!(
                f,
                "rename {parent}/{} -> {new_parent}/{} {mode:?}",
                name(n),
                name(new_name)
            ),
            Op::SetAttr { ino, .. } => write!(f, "setattr {ino}"),
            Op::SetFlags { ino, flags } => write!(f, "setflags {ino} {flags:#x}"),
            Op::MakeTmpfile { parent, .. } => write!(f, "tmpfile in {parent}"),
            Op::Reserve { ino, offset, len } => write!(f, "reserve {ino} {offset}+{len}"),
            Op::SetXattr { ino, name: n, .. } => write!(f, "setxattr {ino} {}", name(n)),
            Op::RemoveXattr { ino, name: n } => write!(f, "removexattr {ino} {}", name(n)),
            Op::Open { ino } => write!(f, "open {ino}"),
            Op::Release { ino } => write!(f, "release {ino}"),
            Op::ReleaseMany { inos } => write!(f, "release {} opens", inos.len()),
            Op::OpenToRead { ino, strict } => write!(f, "open {ino} to read (strict: {strict})"),
            Op::Accessed { inos, strict } => {
                write!(f, "accessed {} inodes (strict: {strict})", inos.len())
            }
            Op::AccessedAt { at, strict } => {
                write!(
                    f,
                    "accessed {} inodes at given times (strict: {strict})",
                    at.len()
                )
            }
            Op::CommitSlice { ino, slices, .. } => {
                write!(f, "commit {ino} ({} slices)", slices.len())
            }
            Op::SetLock {
                ino, owner, kind, ..
            } => write!(f, "lock {ino} owner {owner} {kind:?}"),
            Op::OpenSession { client, .. } => write!(f, "open-session {client}"),
            Op::RenewSession { .. } => write!(f, "renew-session"),
            Op::CloseSession => write!(f, "close-session"),
            Op::ExpireSession { session } => write!(f, "expire-session {session}"),
            Op::GcClaim { stripe } => write!(f, "gc-claim {stripe}"),
            Op::GcDone { stripe } => write!(f, "gc-done {stripe}"),
            Op::MoveShard {
                stripe,
                index,
                from,
                to,
            } => write!(f, "move-shard {stripe}[{index}] {from:#x} -> {to:#x}"),
            Op::SetTrashRetention { seconds } => write!(f, "trash-retention {seconds} s"),
            Op::RestoreTrash { ino, to } => match to {
                Some((parent, n)) => write!(f, "restore {ino} -> {parent}/{}", name(n)),
                None => write!(f, "restore {ino}"),
            },
            Op::PurgeTrash { inos, expired_only } => {
                write!(
                    f,
                    "purge {} from trash (expired only: {expired_only})",
                    inos.len()
                )
            }
            Op::SetQuota { ino, bytes, inodes } => {
                write!(f, "set-quota {ino} bytes {bytes:?} inodes {inodes:?}")
            }
            Op::UnsetQuota { ino } => write!(f, "unset-quota {ino}"),
            Op::SnapshotCreate { dir, name: n, .. } => {
                write!(f, "snapshot {dir} as {}", name(n))
            }
            Op::SnapshotStep { job, budget } => write!(f, "snapshot job {job}: copy {budget}"),
            Op::SnapshotDelete { dir, name: n } => {
                write!(f, "delete snapshot {} of {dir}", name(n))
            }
            Op::SnapshotRestore {
                from,
                to_parent,
                to_name,
            } => write!(
                f,
                "restore {from} from a snapshot -> {to_parent}/{}",
                name(to_name)
            ),
            Op::LoadImage { image } => write!(f, "load-image ({} bytes)", image.len()),
            Op::GrantCaps {
                inos,
                exclusive,
                children,
            } => {
                let kind = if *exclusive { "exclusive" } else { "shared" };
                let and = if *children { " and their entries" } else { "" };
                write!(f, "grant {kind} caps on {} inodes{and}", inos.len())
            }
            Op::ReleaseCaps { inos } => write!(f, "release caps on {} inodes", inos.len()),
            Op::Batch { ops } => write!(f, "batch of {} operations", ops.len()),
            Op::DelegateInos { count } => write!(f, "delegate {count} inode numbers"),
            Op::MakeNodeAs { ino, node } => {
                let node = Command {
                    op: (**node).clone(),
                    ..self.clone()
                };
                write!(f, "as {ino}: {node}")
            }
        }
    }
}
