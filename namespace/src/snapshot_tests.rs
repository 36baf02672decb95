use crate::command::{Op, Query, Response};
use crate::testkit::Ns;
use tessera_proto::fs::{
    ChunkSlice, FileKind, FsError, Ino, SetAttr, ShardId, ShardPlace, Slice, StripeId, StripeInfo,
    StripeLayout, StripeRef,
};
use tessera_proto::meta::SnapshotEntry;

fn stripe(n: u8, data_len: u64) -> StripeInfo {
    StripeInfo {
        id: StripeId([n; 32]),
        layout: StripeLayout {
            k: 2,
            m: 1,
            shard_len: data_len.div_ceil(2),
            data_len,
            shards: (0..3)
                .map(|i| ShardPlace {
                    shard: ShardId([n.wrapping_add(i); 32]),
                    server: u64::from(i),
                })
                .collect(),
        },
    }
}

/// Writes `len` bytes at 0 of `ino` from stripe `n`.
fn write(ns: &mut Ns, ino: Ino, n: u8, len: u64) -> Result<(), FsError> {
    let s = stripe(n, len);
    let slice = Slice {
        offset: 0,
        len,
        data: Some(StripeRef {
            stripe: s.id,
            offset: 0,
        }),
    };
    ns.cmd(Op::CommitSlice {
        ino,
        slices: vec![ChunkSlice { chunk: 0, slice }],
        stripes: vec![s],
    })
    .map(|_| ())
}

fn refcount(ns: &Ns, n: u8) -> u64 {
    match ns.q(Query::Stripes {
        after: None,
        limit: 100,
    }) {
        Ok(Response::Stripes(rows)) => rows
            .iter()
            .find(|r| r.stripe.id == StripeId([n; 32]))
            .map_or(0, |r| r.refcount),
        other => panic!("stripes: {other:?}"),
    }
}

fn refcounts_consistent(ns: &Ns) {
    match ns.q(Query::RefcountCheck { limit: 10 }) {
        Ok(Response::RefcountMismatches(m)) => assert!(m.is_empty(), "{m:?}"),
        other => panic!("refcount check: {other:?}"),
    }
}

/// The stripe `ino`'s first slice reads from.
fn data_stripe(ns: &Ns, ino: Ino) -> Option<StripeId> {
    match ns.q(Query::Layout {
        ino,
        first: 0,
        last: u64::MAX,
    }) {
        Ok(Response::Layout(l)) => l.stripes.first().map(|s| s.id),
        other => panic!("layout: {other:?}"),
    }
}

fn snapshot(ns: &mut Ns, dir: Ino, name: &str) -> Result<SnapshotEntry, FsError> {
    match ns.cmd(Op::SnapshotCreate {
        dir,
        name: name.into(),
    })? {
        Response::Snapshots(mut s) => Ok(s.remove(0)),
        other => panic!("snapshot: {other:?}"),
    }
}

fn delete(ns: &mut Ns, dir: Ino, name: &str) -> Result<(), FsError> {
    ns.cmd(Op::SnapshotDelete {
        dir,
        name: name.into(),
    })
    .map(|_| ())
}

fn restore(ns: &mut Ns, from: Ino, to_parent: Ino, to_name: &str) -> Result<Ino, FsError> {
    Ns::attr_reply(ns.cmd(Op::SnapshotRestore {
        from,
        to_parent,
        to_name: to_name.into(),
    }))
    .map(|a| a.ino)
}

/// `d` holding `f` (stripe 1, 100 bytes) and `sub/g` (stripe 2, 50 bytes) and `sub/h`, a
/// second name of `f`, and a symlink.
struct Tree {
    d: Ino,
    f: Ino,
    sub: Ino,
}

fn tree(ns: &mut Ns) -> Tree {
    let d = ns.mkdir(ns.root(), "d");
    let f = ns.create(d, "f");
    write(ns, f, 1, 100).unwrap();
    let sub = ns.mkdir(d, "sub");
    let g = ns.create(sub, "g");
    write(ns, g, 2, 50).unwrap();
    ns.cmd(Op::Link {
        ino: f,
        new_parent: sub,
        new_name: "h".into(),
    })
    .unwrap();
    ns.cmd(Op::Symlink {
        parent: d,
        name: "l".into(),
        target: b"f".to_vec(),
        uid: 1,
        gid: 1,
    })
    .unwrap();
    Tree { d, f, sub }
}

#[test]
fn a_snapshot_copies_the_tree_shares_its_stripes_and_is_not_listed() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    assert_eq!((snap.dirs, snap.files, snap.bytes), (2, 3, 150));
    assert_eq!(snap.dir_path.as_deref(), Some(&b"/d"[..]));

    assert_eq!(ns.names(t.d), ["f", "sub", "l"]);
    let holder = ns.lookup(t.d, ".snapshots").unwrap();
    assert_eq!(holder.kind, FileKind::Directory);
    assert_eq!(ns.names(holder.ino), ["one"]);
    let root = ns.lookup(holder.ino, "one").unwrap().ino;
    assert_eq!(root, snap.root);
    assert_eq!(ns.names(root), ["f", "l", "sub"]);

    // Attributes as they were; hard links stay one inode; data from the same stripes.
    let f2 = ns.lookup(root, "f").unwrap();
    let f1 = ns.attr(t.f).unwrap();
    assert_ne!(f2.ino, f1.ino);
    assert!(f2.read_only() && !f1.read_only(), "{f2:?} {f1:?}");
    assert_eq!((f2.size, f2.mtime_ns, f2.nlink), (100, f1.mtime_ns, 2));
    let sub2 = ns.lookup(root, "sub").unwrap().ino;
    assert_eq!(ns.lookup(sub2, "h").unwrap().ino, f2.ino);
    assert_eq!(data_stripe(&ns, f2.ino), Some(StripeId([1; 32])));
    assert_eq!(refcount(&ns, 1), 2);
    assert_eq!(refcount(&ns, 2), 2);
    refcounts_consistent(&ns);

    assert_eq!(snapshot(&mut ns, t.d, "one").err(), Some(FsError::Exists));
    assert_eq!(snapshot(&mut ns, root, "x").err(), Some(FsError::ReadOnly));
}

#[test]
fn changes_to_the_live_tree_leave_the_snapshot_as_it_was() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    write(&mut ns, t.f, 3, 10).unwrap();
    ns.cmd(Op::Unlink {
        parent: t.sub,
        name: "g".into(),
    })
    .unwrap();
    ns.rename(t.d, "l", t.d, "l2", tessera_proto::fs::RenameMode::Replace)
        .unwrap();
    ns.create(t.d, "new");

    assert_eq!(ns.names(snap.root), ["f", "l", "sub"]);
    let f2 = ns.lookup(snap.root, "f").unwrap();
    assert_eq!(f2.size, 100);
    assert_eq!(data_stripe(&ns, f2.ino), Some(StripeId([1; 32])));
    let sub2 = ns.lookup(snap.root, "sub").unwrap().ino;
    let g2 = ns.lookup(sub2, "g").unwrap().ino;
    assert_eq!(data_stripe(&ns, g2), Some(StripeId([2; 32])));
    refcounts_consistent(&ns);
}

#[test]
fn nothing_but_the_snapshot_commands_changes_a_snapshot() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    let holder = ns.lookup(t.d, ".snapshots").unwrap().ino;
    let f2 = ns.lookup(snap.root, "f").unwrap().ino;
    let before = ns.attr(f2).unwrap();
    let ro = Some(FsError::ReadOnly);

    assert_eq!(ns.mknod(snap.root, "x", FileKind::Regular).err(), ro);
    assert_eq!(ns.mknod(holder, "x", FileKind::Regular).err(), ro);
    assert_eq!(ns.mkdir_r(holder, b"x").err(), ro);
    let unlink = ns.cmd(Op::Unlink {
        parent: snap.root,
        name: "f".into(),
    });
    assert_eq!(unlink.err(), ro);
    let rename_out = ns.rename(snap.root, "f", t.d, "stolen", Default::default());
    assert_eq!(rename_out.err(), ro);
    let rename_root = ns.rename(holder, "one", t.d, "stolen", Default::default());
    assert_eq!(rename_root.err(), ro);
    let link = ns.cmd(Op::Link {
        ino: f2,
        new_parent: t.d,
        new_name: "again".into(),
    });
    assert_eq!(link.err(), ro);
    let chmod = ns.cmd(Op::SetAttr {
        ino: f2,
        set: SetAttr {
            perm: Some(0o777),
            ..SetAttr::default()
        },
    });
    assert_eq!(chmod.err(), ro);
    let xattr = ns.cmd(Op::SetXattr {
        ino: f2,
        name: b"user.a".to_vec(),
        value: b"v".to_vec(),
        mode: tessera_proto::fs::XattrMode::Upsert,
    });
    assert_eq!(xattr.err(), ro);
    assert_eq!(write(&mut ns, f2, 9, 10).err(), ro);
    assert_eq!(ns.attr(f2).unwrap(), before);

    // Reading is allowed: open, access, release; the access time stays.
    ns.cmd(Op::Open { ino: f2 }).unwrap();
    ns.cmd(Op::Accessed {
        inos: vec![f2],
        strict: true,
    })
    .unwrap();
    ns.cmd(Op::Release { ino: f2 }).unwrap();
    assert_eq!(ns.attr(f2).unwrap(), before);
}

#[test]
fn restore_makes_live_copies_and_delete_gives_every_reference_back() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    let inodes_before = match ns.q(Query::StatFs {
        total_bytes: 0,
        total_files: 1_000,
    }) {
        Ok(Response::StatFs(s)) => s.ffree,
        other => panic!("{other:?}"),
    };
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    // The live subtree goes; the snapshot brings it back, writable.
    ns.cmd(Op::Unlink {
        parent: t.sub,
        name: "g".into(),
    })
    .unwrap();
    ns.cmd(Op::Unlink {
        parent: t.sub,
        name: "h".into(),
    })
    .unwrap();
    ns.cmd(Op::Rmdir {
        parent: t.d,
        name: "sub".into(),
    })
    .unwrap();
    let sub2 = ns.lookup(snap.root, "sub").unwrap().ino;
    let back = restore(&mut ns, sub2, t.d, "sub").unwrap();
    assert_eq!(ns.names(back), ["g", "h"]);
    assert!(!ns.attr(back).unwrap().read_only());
    let g = ns.lookup(back, "g").unwrap().ino;
    assert_eq!(data_stripe(&ns, g), Some(StripeId([2; 32])));
    ns.create(back, "writable");
    write(&mut ns, g, 4, 5).unwrap();
    let single = ns.lookup(snap.root, "f").unwrap().ino;
    let f_again = restore(&mut ns, single, t.d, "f2").unwrap();
    assert_eq!(data_stripe(&ns, f_again), Some(StripeId([1; 32])));

    assert_eq!(
        restore(&mut ns, t.f, t.d, "x").err(),
        Some(FsError::Invalid)
    );
    let holder = ns.lookup(t.d, ".snapshots").unwrap().ino;
    assert_eq!(
        restore(&mut ns, holder, t.d, "x").err(),
        Some(FsError::Invalid)
    );
    assert_eq!(
        restore(&mut ns, sub2, t.d, "f").err(),
        Some(FsError::Exists)
    );
    assert_eq!(
        restore(&mut ns, sub2, snap.root, "x").err(),
        Some(FsError::ReadOnly)
    );
    refcounts_consistent(&ns);

    // A directory holding snapshots cannot go; once they are deleted it can.
    let e = ns.mkdir(ns.root(), "e");
    snapshot(&mut ns, e, "empty").unwrap();
    let rmdir = |ns: &mut Ns| {
        ns.cmd(Op::Rmdir {
            parent: ns.root(),
            name: "e".into(),
        })
        .map(|_| ())
    };
    assert_eq!(rmdir(&mut ns), Err(FsError::NotEmpty));
    delete(&mut ns, e, "empty").unwrap();
    assert_eq!(ns.lookup(e, ".snapshots").err(), Some(FsError::NotFound));
    rmdir(&mut ns).unwrap();

    delete(&mut ns, t.d, "one").unwrap();
    assert_eq!(delete(&mut ns, t.d, "one"), Err(FsError::NotFound));
    assert_eq!(ns.lookup(t.d, ".snapshots").err(), Some(FsError::NotFound));
    assert_eq!(ns.attr(snap.root).err(), Some(FsError::NotFound));
    refcounts_consistent(&ns);
    // Stripe 1 is named by f, f2 and the restored h; stripe 2 by the restored g, whose
    // first 5 bytes were rewritten.
    assert_eq!(refcount(&ns, 1), 3);
    assert_eq!(refcount(&ns, 2), 1);
    let inodes_after = match ns.q(Query::StatFs {
        total_bytes: 0,
        total_files: 1_000,
    }) {
        Ok(Response::StatFs(s)) => s.ffree,
        other => panic!("{other:?}"),
    };
    // Gone: sub and g. Made: sub, g and h (a copy of f) again, writable, f2, e (removed).
    assert_eq!(inodes_before - inodes_after, 3);
}

#[test]
fn a_snapshot_file_open_at_delete_lives_until_its_release() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    let f2 = ns.lookup(snap.root, "f").unwrap().ino;
    ns.cmd(Op::Open { ino: f2 }).unwrap();
    delete(&mut ns, t.d, "one").unwrap();
    assert_eq!(data_stripe(&ns, f2), Some(StripeId([1; 32])));
    assert_eq!(refcount(&ns, 1), 2);
    ns.cmd(Op::Release { ino: f2 }).unwrap();
    assert_eq!(ns.attr(f2).err(), Some(FsError::NotFound));
    assert_eq!(refcount(&ns, 1), 1);
    refcounts_consistent(&ns);
}

#[test]
fn snapshots_do_not_count_in_quotas_and_restores_do() {
    let mut ns = Ns::new();
    let t = tree(&mut ns);
    ns.cmd(Op::SetQuota {
        ino: t.d,
        bytes: Some(400),
        inodes: None,
    })
    .unwrap();
    let usage = |ns: &Ns| match ns.q(Query::Quotas) {
        Ok(Response::Quotas(q)) => (q[0].used_bytes, q[0].used_inodes),
        other => panic!("{other:?}"),
    };
    // f (100, two names: counted once), g (50), l (1), sub.
    assert_eq!(usage(&ns), (151, 4));
    let snap = snapshot(&mut ns, t.d, "one").unwrap();
    assert_eq!(usage(&ns), (151, 4));
    let sub2 = ns.lookup(snap.root, "sub").unwrap().ino;
    restore(&mut ns, sub2, t.d, "sub2").unwrap();
    // sub2, g's copy (50), the copy of f (100) under its one name there.
    assert_eq!(usage(&ns), (301, 7));
    assert_eq!(
        restore(&mut ns, sub2, t.d, "sub3").err(),
        Some(FsError::QuotaExceeded)
    );
    delete(&mut ns, t.d, "one").unwrap();
    assert_eq!(usage(&ns), (301, 7));
}
