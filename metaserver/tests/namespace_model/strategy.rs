//! Generators of command sequences: small alphabets so that names collide, inode numbers
//! mostly name existing inodes, and conflicts are common.

use super::LEASE;
use super::model::LOCK_BYTES;
use proptest::prelude::*;
use proptest::strategy::Union;
use tessera_namespace::{Op, Query};
use tessera_proto::fs::*;

/// A day, in the nanoseconds of the commands' clock (access times move once a day).
const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;

#[derive(Debug, Clone)]
pub enum Step {
    /// `who`: 0 is the system session, 1 and 2 are client sessions.
    Cmd {
        who: usize,
        op: Op,
    },
    /// Send an earlier command again (a client retry after a lost reply).
    Replay(usize),
    Query(Query),
    /// Let time pass beyond the session leases.
    Sleep,
}

pub fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => prop::sample::select(vec!["a", "b", "c"]).prop_map(bytes),
        1 => prop::sample::select(vec!["", ".", "..", "x/y"]).prop_map(bytes),
        1 => Just(vec![b'n'; 256]),
    ]
}

/// Mostly inodes that exist: the seed tree holds 1..=7 and new ones follow from 8.
fn ino() -> impl Strategy<Value = Ino> {
    prop_oneof![2 => Just(ROOT_INO), 8 => 2u64..9, 2 => 9u64..16]
}

/// Mostly directories (1..=4 in the seed tree).
fn dir_ino() -> impl Strategy<Value = Ino> {
    prop_oneof![4 => Just(ROOT_INO), 6 => 2u64..5, 2 => 5u64..16]
}

/// Mostly regular files (5 and 6 in the seed tree).
fn file_ino() -> impl Strategy<Value = Ino> {
    prop_oneof![6 => 5u64..7, 3 => 7u64..16, 1 => 1u64..5]
}

fn xname() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => prop::sample::select(vec!["user.a", "user.b"]).prop_map(bytes),
        1 => Just(Vec::new()),
    ]
}

pub fn stripes() -> Vec<StripeInfo> {
    (1u8..=3)
        .map(|n| {
            let data_len = 100 * u64::from(n);
            StripeInfo {
                id: StripeId([n; 32]),
                layout: StripeLayout {
                    k: 2,
                    m: 1,
                    shard_len: data_len / 2,
                    data_len,
                    shards: (0..3)
                        .map(|i| ShardPlace {
                            shard: ShardId([n * 10 + i; 32]),
                            server: u64::from(i),
                        })
                        .collect(),
                },
            }
        })
        .collect()
}

fn chunk_slice() -> impl Strategy<Value = ChunkSlice> {
    let stripe = prop_oneof![3 => Just(0usize), 1 => 0usize..3];
    let data = prop::option::weighted(0.8, (stripe, 0u64..50));
    let len = prop_oneof![20 => 1u64..60, 1 => Just(0u64), 1 => 60u64..300];
    (0u64..3, 0u64..200, len, data).prop_map(|(chunk, offset, len, data)| ChunkSlice {
        chunk,
        slice: Slice {
            offset,
            len,
            data: data.map(|(i, o)| StripeRef {
                stripe: StripeId([i as u8 + 1; 32]),
                offset: o,
            }),
        },
    })
}

fn set_time() -> impl Strategy<Value = SetTime> {
    prop_oneof![
        3 => Just(SetTime::Omit),
        1 => Just(SetTime::Now),
        1 => (-5i64..5).prop_map(SetTime::At),
    ]
}

fn set_attr() -> impl Strategy<Value = SetAttr> {
    let size = prop::option::weighted(
        0.4,
        prop::sample::select(vec![0, 0, 0, 50, 150, CHUNK_SIZE + 20, 3 * CHUNK_SIZE]),
    );
    (
        prop::option::weighted(0.3, any::<u16>()),
        prop::option::weighted(0.2, 0u32..3),
        prop::option::weighted(0.2, 0u32..3),
        size,
        set_time(),
        set_time(),
    )
        .prop_map(|(perm, uid, gid, size, atime, mtime)| SetAttr {
            perm,
            uid,
            gid,
            size,
            atime,
            mtime,
        })
}

fn lock_range() -> impl Strategy<Value = (u64, u64)> {
    let n = LOCK_BYTES as u64;
    prop_oneof![
        10 => (0..n, 0..n).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (0..n, 0..n).prop_map(|(a, b)| (a.max(b), a.min(b))),
    ]
}

fn kind() -> impl Strategy<Value = FileKind> {
    prop::sample::select(vec![
        FileKind::Regular,
        FileKind::Regular,
        FileKind::Fifo,
        FileKind::Socket,
        FileKind::CharDevice,
        FileKind::Directory,
    ])
}

fn rename_mode() -> impl Strategy<Value = RenameMode> {
    prop::sample::select(vec![
        RenameMode::Replace,
        RenameMode::Replace,
        RenameMode::NoReplace,
        RenameMode::Exchange,
    ])
}

fn lock_kind() -> impl Strategy<Value = LockKind> {
    prop::sample::select(vec![
        LockKind::Shared,
        LockKind::Shared,
        LockKind::Exclusive,
        LockKind::Exclusive,
        LockKind::Unlock,
    ])
}

fn flavor() -> impl Strategy<Value = LockFlavor> {
    prop::sample::select(vec![LockFlavor::Posix, LockFlavor::Flock])
}

/// A command's operation: mostly single ones, sometimes a batch of them (a mount's
/// write-back), rarely with a batch inside (refused).
fn op() -> impl Strategy<Value = Op> {
    let inner = prop_oneof![30 => single_op(), 1 => Just(Op::Batch { ops: Vec::new() })];
    let batch = prop::collection::vec(inner, 0..6).prop_map(|ops| Op::Batch { ops });
    prop_oneof![12 => single_op(), 1 => batch]
}

fn single_op() -> impl Strategy<Value = Op> {
    let stripe_id = prop_oneof![3 => Just(1u8), 1 => 1u8..=3].prop_map(|n| StripeId([n; 32]));
    let xattr_ino = || prop_oneof![3 => Just(5u64), 1 => file_ino()];
    Union::new_weighted(vec![
        (
            6,
            (
                dir_ino(),
                name(),
                kind(),
                any::<bool>(),
                0u32..3,
                0u16..0o1000,
            )
                .prop_map(|(parent, name, kind, open, rdev, umask)| Op::MakeNode {
                    parent,
                    name,
                    kind,
                    perm: 0o2775,
                    umask,
                    uid: 1,
                    gid: 1,
                    rdev,
                    open,
                })
                .boxed(),
        ),
        (
            10,
            (dir_ino(), name(), kind(), any::<bool>(), 0u32..3)
                .prop_map(|(parent, name, kind, open, rdev)| Op::Mknod {
                    parent,
                    name,
                    kind,
                    perm: 0o644,
                    uid: 1,
                    gid: 1,
                    rdev,
                    open,
                })
                .boxed(),
        ),
        (
            8,
            (dir_ino(), name(), any::<u16>())
                .prop_map(|(parent, name, perm)| Op::Mkdir {
                    parent,
                    name,
                    perm,
                    uid: 2,
                    gid: 2,
                })
                .boxed(),
        ),
        (
            3,
            (
                dir_ino(),
                name(),
                prop::sample::select(vec!["t", "", "../a"]),
            )
                .prop_map(|(parent, name, t)| Op::Symlink {
                    parent,
                    name,
                    target: bytes(t),
                    uid: 0,
                    gid: 0,
                })
                .boxed(),
        ),
        (
            4,
            (file_ino(), dir_ino(), name())
                .prop_map(|(ino, new_parent, new_name)| Op::Link {
                    ino,
                    new_parent,
                    new_name,
                })
                .boxed(),
        ),
        (
            5,
            (dir_ino(), name())
                .prop_map(|(parent, name)| Op::Unlink { parent, name })
                .boxed(),
        ),
        (
            4,
            (dir_ino(), name())
                .prop_map(|(parent, name)| Op::Rmdir { parent, name })
                .boxed(),
        ),
        (
            12,
            (dir_ino(), name(), dir_ino(), name(), rename_mode())
                .prop_map(|(parent, name, new_parent, new_name, mode)| Op::Rename {
                    parent,
                    name,
                    new_parent,
                    new_name,
                    mode,
                })
                .boxed(),
        ),
        (
            8,
            (file_ino(), set_attr())
                .prop_map(|(ino, set)| Op::SetAttr { ino, set })
                .boxed(),
        ),
        (
            5,
            (
                xattr_ino(),
                xname(),
                prop::collection::vec(any::<u8>(), 0..3),
                0u32..3,
            )
                .prop_map(|(ino, name, value, flags)| Op::SetXattr {
                    ino,
                    name,
                    value,
                    mode: XattrMode::from_flags(flags).unwrap_or_default(),
                })
                .boxed(),
        ),
        (
            3,
            (xattr_ino(), xname())
                .prop_map(|(ino, name)| Op::RemoveXattr { ino, name })
                .boxed(),
        ),
        (6, file_ino().prop_map(|ino| Op::Open { ino }).boxed()),
        (
            3,
            (file_ino(), prop::bool::ANY)
                .prop_map(|(ino, strict)| Op::OpenToRead { ino, strict })
                .boxed(),
        ),
        (5, file_ino().prop_map(|ino| Op::Release { ino }).boxed()),
        (
            2,
            prop::collection::vec(file_ino(), 0..4)
                .prop_map(|inos| Op::ReleaseMany { inos })
                .boxed(),
        ),
        (
            2,
            (prop::collection::vec(file_ino(), 0..3), prop::bool::ANY)
                .prop_map(|(inos, strict)| Op::Accessed { inos, strict })
                .boxed(),
        ),
        (
            2,
            (
                // Times a mount chose: around the commands' own, earlier and later, and a
                // day on (the harness's clock starts at 1,000 and ticks once a command).
                prop::collection::vec(
                    (
                        file_ino(),
                        prop_oneof![0..20_000_i64, DAY_NS..DAY_NS + 20_000],
                    ),
                    0..3,
                ),
                prop::bool::ANY,
            )
                .prop_map(|(at, strict)| Op::AccessedAt { at, strict })
                .boxed(),
        ),
        (
            8,
            (
                file_ino(),
                prop::collection::vec(chunk_slice(), 1..3),
                prop::bool::weighted(0.85),
            )
                .prop_map(|(ino, slices, known)| Op::CommitSlice {
                    ino,
                    slices,
                    stripes: if known { stripes() } else { Vec::new() },
                })
                .boxed(),
        ),
        (
            16,
            (file_ino(), 1u64..3, flavor(), lock_kind(), lock_range())
                .prop_map(|(ino, owner, flavor, kind, (start, end))| Op::SetLock {
                    ino,
                    owner,
                    flavor,
                    kind,
                    start,
                    end,
                    pid: owner as u32,
                })
                .boxed(),
        ),
        (
            4,
            (1u32..5)
                .prop_map(|count| Op::DelegateInos { count })
                .boxed(),
        ),
        (
            6,
            (2u64..14, dir_ino(), name(), kind(), any::<bool>(), 0u8..10)
                .prop_map(|(ino, parent, name, kind, open, which)| {
                    let node = match which {
                        0 => Op::Symlink {
                            parent,
                            name,
                            target: bytes("t"),
                            uid: 1,
                            gid: 1,
                        },
                        // Not a create that may name a number.
                        1 => Op::Mkdir {
                            parent,
                            name,
                            perm: 0o755,
                            uid: 1,
                            gid: 1,
                        },
                        _ => Op::MakeNode {
                            parent,
                            name,
                            kind,
                            perm: 0o2775,
                            umask: 0o022,
                            uid: 1,
                            gid: 1,
                            rdev: 0,
                            open,
                        },
                    };
                    Op::MakeNodeAs {
                        ino,
                        node: Box::new(node),
                    }
                })
                .boxed(),
        ),
        (1, Just(Op::RenewSession { lease_ns: LEASE }).boxed()),
        (1, Just(Op::CloseSession).boxed()),
        (
            1,
            (1u64..4)
                .prop_map(|session| Op::ExpireSession { session })
                .boxed(),
        ),
        (
            5,
            stripe_id
                .clone()
                .prop_map(|stripe| Op::GcClaim { stripe })
                .boxed(),
        ),
        (
            4,
            stripe_id
                .clone()
                .prop_map(|stripe| Op::GcDone { stripe })
                .boxed(),
        ),
        (
            3,
            (stripe_id, 0u32..4, 0u64..5, 0u64..5)
                .prop_map(|(stripe, index, from, to)| Op::MoveShard {
                    stripe,
                    index,
                    from,
                    to,
                })
                .boxed(),
        ),
    ])
}

fn query_strategy() -> impl Strategy<Value = Query> {
    Union::new_weighted(vec![
        (
            4,
            (dir_ino(), name())
                .prop_map(|(parent, name)| Query::Lookup { parent, name })
                .boxed(),
        ),
        (3, ino().prop_map(|ino| Query::GetAttr { ino }).boxed()),
        (
            4,
            (dir_ino(), 0u64..8, 1u32..5, any::<bool>())
                .prop_map(|(ino, after, limit, plus)| Query::ReadDir {
                    ino,
                    after,
                    limit,
                    plus,
                })
                .boxed(),
        ),
        (1, ino().prop_map(|ino| Query::ReadLink { ino }).boxed()),
        (
            2,
            (file_ino(), xname())
                .prop_map(|(ino, name)| Query::GetXattr { ino, name })
                .boxed(),
        ),
        (1, ino().prop_map(|ino| Query::ListXattr { ino }).boxed()),
        (
            3,
            (file_ino(), 0u64..3, 0u64..3)
                .prop_map(|(ino, first, last)| Query::Layout { ino, first, last })
                .boxed(),
        ),
        (
            3,
            (
                file_ino(),
                1u64..3,
                1u64..4,
                flavor(),
                lock_kind(),
                lock_range(),
            )
                .prop_map(
                    |(ino, session, owner, flavor, kind, (start, end))| Query::GetLock {
                        ino,
                        session,
                        owner,
                        flavor,
                        kind,
                        start,
                        end,
                    },
                )
                .boxed(),
        ),
        (
            1,
            (0u32..5).prop_map(|limit| Query::GcQueue { limit }).boxed(),
        ),
        (
            1,
            (prop::option::of(prop_oneof![Just(1u8), 1u8..=3]), 0u32..4)
                .prop_map(|(after, limit)| Query::Stripes {
                    after: after.map(|n| StripeId([n; 32])),
                    limit,
                })
                .boxed(),
        ),
        (
            1,
            (0u32..4)
                .prop_map(|limit| Query::RefcountCheck { limit })
                .boxed(),
        ),
        (
            1,
            Just(Query::StatFs {
                total_bytes: 1 << 20,
                total_files: 50,
            })
            .boxed(),
        ),
    ])
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        60 => (prop::sample::select(vec![0usize, 1, 1, 1, 2, 2]), op())
            .prop_map(|(who, op)| Step::Cmd { who, op }),
        25 => query_strategy().prop_map(Step::Query),
        8 => any::<usize>().prop_map(Step::Replay),
        1 => Just(Step::Sleep),
    ]
}
