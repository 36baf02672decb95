//! What a snapshot of a large tree costs the metadata state machine: a redb store on disk
//! holding `TESSERA_SNAPSHOT_FILES` files (default 100,000, 1,000 per directory, each with
//! one slice of data), then `SnapshotCreate` of the whole tree and the `SnapshotStep`s the
//! leader would propose (1,000 entries each), each applied as one log entry and timed with
//! its fsynced commit (while one applies, every other command waits: the longest is the
//! writers' stall), the metadata added per inode, and `SnapshotDelete`.
//!
//! Run: `cargo bench -p tessera-metaserver --bench snapshot_apply` (scripts/bench-meta.sh
//! runs it too). Raft replication adds one small log entry to this; the copy is the cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;
use tessera_metaserver::store::{LogPos, RedbStore};
use tessera_namespace::{Command, Op, Response, SYSTEM_SESSION, StoreRead, Table};
use tessera_proto::fs::{
    ChunkSlice, FileKind, Ino, ROOT_INO, ShardId, ShardPlace, Slice, StripeId, StripeInfo,
    StripeLayout, StripeRef,
};

const PER_DIR: usize = 1_000;

struct Log {
    store: RedbStore,
    index: u64,
    now: i64,
}

impl Log {
    /// Applies the leader's `SnapshotStep`s for `job` until it is finished: how many, and
    /// the longest one (applied and committed).
    fn steps(&mut self, job: u64) -> (usize, std::time::Duration) {
        let (mut n, mut longest) = (0, std::time::Duration::ZERO);
        loop {
            let one = Instant::now();
            let r = self.apply(vec![Op::SnapshotStep { job, budget: 1000 }]);
            longest = longest.max(one.elapsed());
            n += 1;
            if r[0] == Response::Flag(true) {
                return (n, longest);
            }
        }
    }

    fn apply(&mut self, ops: Vec<Op>) -> Vec<Response> {
        let entries: Vec<(LogPos, Command)> = ops
            .into_iter()
            .map(|op| {
                self.index += 1;
                self.now += 1_000;
                let pos = LogPos {
                    term: 1,
                    index: self.index,
                };
                let cmd = Command {
                    session: SYSTEM_SESSION,
                    seq: 0,
                    seq_floor: 0,
                    now_ns: self.now,
                    op,
                };
                (pos, cmd)
            })
            .collect();
        let replies = self.store.apply_batch(&entries).unwrap();
        replies.into_iter().map(|r| r.unwrap()).collect()
    }
}

fn stripe(n: u64) -> StripeInfo {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    StripeInfo {
        id: StripeId(id),
        layout: StripeLayout {
            k: 2,
            m: 1,
            shard_len: 32 << 10,
            data_len: 64 << 10,
            shards: (0..3u8)
                .map(|i| {
                    let mut shard = id;
                    shard[31] = i;
                    ShardPlace {
                        shard: ShardId(shard),
                        server: u64::from(i),
                    }
                })
                .collect(),
        },
    }
}

/// Bytes of every key and value in the namespace tables (the metadata itself, without
/// redb's pages and free space).
fn record_bytes(store: &RedbStore) -> u64 {
    let view = store.read_view().unwrap();
    Table::ALL
        .iter()
        .map(|&t| {
            view.scan(t, &[], None, usize::MAX)
                .unwrap()
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>()
        })
        .sum()
}

fn ino(r: &Response) -> Ino {
    match r {
        Response::Attr(a) => a.ino,
        other => panic!("{other:?}"),
    }
}

fn main() {
    let files: usize = std::env::var("TESSERA_SNAPSHOT_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("tessera-bench-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.redb");
    let mut log = Log {
        store: RedbStore::open(&path).unwrap(),
        index: 0,
        now: 1_000_000_000,
    };
    log.apply(vec![Op::Format {
        uid: 0,
        gid: 0,
        perm: 0o755,
    }]);
    let top = ino(&log.apply(vec![Op::Mkdir {
        parent: ROOT_INO,
        name: b"tree".to_vec(),
        perm: 0o755,
        uid: 0,
        gid: 0,
    }])[0]);
    let built = Instant::now();
    for d in 0..files.div_ceil(PER_DIR) {
        let sub = ino(&log.apply(vec![Op::Mkdir {
            parent: top,
            name: format!("d{d:04}").into_bytes(),
            perm: 0o755,
            uid: 0,
            gid: 0,
        }])[0]);
        let n = PER_DIR.min(files - d * PER_DIR);
        let made = log.apply(
            (0..n)
                .map(|f| Op::Mknod {
                    parent: sub,
                    name: format!("file-{f:04}.rs").into_bytes(),
                    kind: FileKind::Regular,
                    perm: 0o644,
                    uid: 1000,
                    gid: 1000,
                    rdev: 0,
                    open: false,
                })
                .collect(),
        );
        log.apply(
            made.iter()
                .enumerate()
                .map(|(f, r)| {
                    let s = stripe((d * PER_DIR + f) as u64);
                    Op::CommitSlice {
                        ino: ino(r),
                        slices: vec![ChunkSlice {
                            chunk: 0,
                            slice: Slice {
                                offset: 0,
                                len: 9_000,
                                data: Some(StripeRef {
                                    stripe: s.id,
                                    offset: 0,
                                }),
                            },
                        }],
                        stripes: vec![s],
                    }
                })
                .collect(),
        );
    }
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let records_before = record_bytes(&log.store);
    eprintln!(
        "built {files} files in {:.1} s; database {before} bytes",
        built.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let r = log.apply(vec![Op::SnapshotCreate {
        dir: top,
        name: b"snap".to_vec(),
        budget: 1000,
    }]);
    let mut longest = started.elapsed();
    let Response::Snapshots(s) = &r[0] else {
        panic!("{r:?}")
    };
    let mut steps = 0;
    if let Some(job) = s[0].job {
        let (n, step_longest) = log.steps(job);
        steps += n;
        longest = longest.max(step_longest);
    }
    let took = started.elapsed();
    let view = log.store.read_view().unwrap();
    let Ok(Response::Snapshots(s)) = tessera_namespace::query(
        &view,
        &tessera_namespace::Query::Snapshots { dir: Some(top) },
    )
    .unwrap() else {
        panic!("no snapshot listed")
    };
    drop(view);
    assert!(s[0].ready);
    let after = size();
    let grown = after.saturating_sub(before);
    let inodes = (s[0].files + s[0].dirs).max(1);
    let records = record_bytes(&log.store) - records_before;
    println!(
        "snapshot of {} files and {} directories: create + {steps} steps in {:.0} ms, \
         longest command {:.1} ms; records +{records} bytes ({} per inode); database file \
         {before} -> {after} bytes (+{grown})",
        s[0].files,
        s[0].dirs,
        took.as_secs_f64() * 1000.0,
        longest.as_secs_f64() * 1000.0,
        records / inodes,
    );
    let started = Instant::now();
    log.apply(vec![Op::SnapshotDelete {
        dir: top,
        name: b"snap".to_vec(),
    }]);
    let mut longest = started.elapsed();
    let mut steps = 0;
    let jobs = tessera_namespace::unfinished_snapshots(&log.store.read_view().unwrap()).unwrap();
    for job in jobs {
        let (n, step_longest) = log.steps(job);
        steps += n;
        longest = longest.max(step_longest);
    }
    println!(
        "snapshot delete: delete + {steps} steps in {:.0} ms, longest command {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0,
        longest.as_secs_f64() * 1000.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
