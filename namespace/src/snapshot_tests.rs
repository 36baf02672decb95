use crate::command::{Op, Query, Response};
use crate::testkit::Ns;
use tessera_proto::fs::{ChunkSlice, FileKind, FsError, Ino, SetAttr, Slice, StripeId, StripeRef};
use tessera_proto::meta::SnapshotEntry;

/// Writes `len` bytes at 0 of `ino` from stripe `n`.
fn write(ns: &mut Ns, ino: Ino, n: u8, len: u64) -> Result<(), FsError> {
    let s = crate::testkit::stripe(n, len);
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

/// Takes a snapshot and, as the leader would, steps its copy to the end.
fn snapshot(ns: &mut Ns, dir: Ino, name: &str) -> Result<SnapshotEntry, FsError> {
    let taken = match ns.cmd(Op::SnapshotCreate {
        dir,
        name: name.into(),
        budget: 4,
    })? {
        Response::Snapshots(mut s) => s.remove(0),
        other => panic!("snapshot: {other:?}"),
    };
    settle(ns);
    let all = listed(ns, Some(dir));
    let done = all.into_iter().find(|s| s.name == taken.name).unwrap();
    assert!(done.ready, "{done:?}");
    Ok(done)
}

/// Proposes steps for every unfinished copy until none is left.
fn settle(ns: &mut Ns) {
    for _ in 0..100_000 {
        let jobs = crate::snapshot_copy::unfinished(&ns.store).unwrap();
        if jobs.is_empty() {
            return;
        }
        for job in jobs {
            ns.sys(Op::SnapshotStep { job, budget: 3 }).unwrap();
        }
    }
    panic!("snapshot copies never finished");
}

fn listed(ns: &Ns, dir: Option<Ino>) -> Vec<SnapshotEntry> {
    match ns.q(Query::Snapshots { dir }) {
        Ok(Response::Snapshots(s)) => s,
        other => panic!("{other:?}"),
    }
}

/// Deletes a snapshot and, as the leader would, steps its freeing to the end.
fn delete(ns: &mut Ns, dir: Ino, name: &str) -> Result<(), FsError> {
    ns.cmd(Op::SnapshotDelete {
        dir,
        name: name.into(),
    })?;
    settle(ns);
    Ok(())
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

/// A small deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// Every entry below `dir` (recursively): (parent, name, ino, kind, path).
fn entries(ns: &Ns, dir: Ino) -> Vec<(Ino, String, Ino, FileKind, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![(dir, String::new())];
    while let Some((d, path)) = dirs.pop() {
        let Ok(Response::Entries(list)) = ns.q(Query::ReadDir {
            ino: d,
            after: 2,
            limit: u32::MAX,
            plus: false,
        }) else {
            panic!("readdir {d}")
        };
        for e in list {
            let name = String::from_utf8(e.name).unwrap();
            let p = format!("{path}/{name}");
            if e.kind == FileKind::Directory {
                dirs.push((e.ino, p.clone()));
            }
            out.push((d, name, e.ino, e.kind, p));
        }
    }
    out.sort_by(|a, b| a.4.cmp(&b.4));
    out
}

/// What a snapshot must reproduce of the tree below `dir`: per path, the inode's
/// attributes (but its ino, and a file's link count, which counts names outside too),
/// which earlier path names the same inode, its data layout and xattrs.
fn describe(ns: &Ns, dir: Ino) -> std::collections::BTreeMap<String, String> {
    let mut first: std::collections::HashMap<Ino, String> = std::collections::HashMap::new();
    let mut out = std::collections::BTreeMap::new();
    for (_, _, ino, kind, path) in entries(ns, dir) {
        let a = ns.attr(ino).unwrap();
        let same = first.entry(ino).or_insert_with(|| path.clone()).clone();
        let layout = match kind {
            FileKind::Regular => format!(
                "{:?}",
                ns.q(Query::Layout {
                    ino,
                    first: 0,
                    last: u64::MAX
                })
            ),
            _ => String::new(),
        };
        let xattrs = match ns.q(Query::ListXattr { ino }) {
            Ok(Response::XattrNames(names)) => names
                .into_iter()
                .map(|n| {
                    let v = ns.q(Query::GetXattr {
                        ino,
                        name: n.clone(),
                    });
                    format!("{n:?}={v:?}")
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let nlink = if kind == FileKind::Directory {
            a.nlink
        } else {
            0
        };
        out.insert(
            path,
            format!(
                "{kind:?} perm {:o} uid {} size {} nlink {nlink} times {} {} {} as {same} \
                 {layout} {xattrs:?} target {:?}",
                a.perm,
                a.uid,
                a.size,
                a.atime_ns,
                a.mtime_ns,
                a.ctime_ns,
                ns.q(Query::ReadLink { ino }).ok()
            ),
        );
    }
    out
}

/// One random change somewhere in the namespace (most fail harmlessly: the point is to
/// touch what a snapshot being copied holds, in every way).
fn random_change(ns: &mut Ns, rng: &mut Rng, n: u8) {
    let all = entries(ns, ns.root());
    let dirs: Vec<Ino> = std::iter::once(ns.root())
        .chain(
            all.iter()
                .filter(|e| e.3 == FileKind::Directory)
                .map(|e| e.2),
        )
        .collect();
    let dir = dirs[rng.below(dirs.len())];
    let name = format!("n{}", rng.below(12));
    let Some(e) = all.get(rng.below(all.len())).cloned() else {
        ns.create(ns.root(), "first");
        return;
    };
    let _ = match rng.below(13) {
        // What reading does: opens (also of `.snapshots`) and access times.
        11 => {
            let target = ns.lookup(dir, ".snapshots").map_or(e.2, |a| a.ino);
            let _ = ns.cmd(Op::Open { ino: target });
            ns.cmd(Op::Release { ino: target }).map(|_| ())
        }
        12 => ns
            .cmd(Op::Accessed {
                inos: vec![e.2],
                strict: true,
            })
            .map(|_| ()),
        0 => ns.mknod(dir, &name, FileKind::Regular).map(|_| ()),
        1 => ns.mkdir_r(dir, name.as_bytes()).map(|_| ()),
        2 if e.3 == FileKind::Regular => write(ns, e.2, n, 100 + u64::from(n)),
        3 if e.3 == FileKind::Directory => ns
            .cmd(Op::Rmdir {
                parent: e.0,
                name: e.1.clone().into(),
            })
            .map(|_| ()),
        3 | 4 => ns
            .cmd(Op::Unlink {
                parent: e.0,
                name: e.1.clone().into(),
            })
            .map(|_| ()),
        5 | 6 => ns.rename(e.0, &e.1, dir, &name, Default::default()),
        7 => ns
            .cmd(Op::Link {
                ino: e.2,
                new_parent: dir,
                new_name: name.into(),
            })
            .map(|_| ()),
        8 => ns
            .cmd(Op::SetAttr {
                ino: e.2,
                set: SetAttr {
                    perm: Some(0o600 + u16::from(n % 8)),
                    ..SetAttr::default()
                },
            })
            .map(|_| ()),
        9 => ns
            .cmd(Op::SetXattr {
                ino: e.2,
                name: format!("user.x{}", n % 3).into_bytes(),
                value: vec![n],
                mode: tessera_proto::fs::XattrMode::Upsert,
            })
            .map(|_| ()),
        _ => ns
            .cmd(Op::SetAttr {
                ino: e.2,
                set: SetAttr {
                    size: Some(u64::from(n) * 3),
                    ..SetAttr::default()
                },
            })
            .map(|_| ()),
    };
}

/// The copy made in steps, with random changes everywhere between (and across) them,
/// equals the tree as it was when the snapshot was taken.
#[test]
fn a_snapshot_copied_in_steps_under_random_changes_is_the_tree_at_its_creation() {
    for seed in 1..=400u64 {
        let mut ns = Ns::new();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let d = ns.mkdir(ns.root(), "d");
        for i in 0..40u8 {
            random_change(&mut ns, &mut rng, i);
        }
        // The random changes may have removed d; the tree under it gets some depth.
        let d = match ns.attr(d) {
            Ok(a) if a.nlink > 0 => d,
            _ => ns.mkdir(ns.root(), "d-again"),
        };
        let sub = ns.mkdir_r(d, b"deep").map(|a| a.ino).unwrap_or(d);
        if let Ok(f) = ns.mknod(sub, "f-deep", FileKind::Regular) {
            write(&mut ns, f.ino, 200, 50).unwrap();
        }
        let want = describe(&ns, d);
        let taken = ns.cmd(Op::SnapshotCreate {
            dir: d,
            name: "s".into(),
            budget: rng.below(4) as u32,
        });
        assert!(taken.is_ok(), "seed {seed}: {taken:?}");
        for i in 0..60u8 {
            random_change(&mut ns, &mut rng, 40 + i);
            if rng.below(3) == 0 {
                for job in crate::snapshot_copy::unfinished(&ns.store).unwrap() {
                    let budget = 1 + rng.below(3) as u32;
                    ns.sys(Op::SnapshotStep { job, budget }).unwrap();
                }
            }
        }
        settle(&mut ns);
        let snap = &listed(&ns, Some(d))[0];
        assert!(snap.ready);
        let got = describe(&ns, snap.root);
        assert_eq!(got, want, "seed {seed}");
        refcounts_consistent(&ns);
        // Deleted (in steps, with more changes around), it leaves no inode behind.
        ns.cmd(Op::SnapshotDelete {
            dir: d,
            name: "s".into(),
        })
        .unwrap();
        for i in 0..10u8 {
            random_change(&mut ns, &mut rng, 100 + i);
        }
        settle(&mut ns);
        refcounts_consistent(&ns);
        {
            use crate::store::StoreRead;
            for (key, value) in ns
                .store
                .scan(crate::store::Table::Inodes, &[], None, usize::MAX)
                .unwrap()
            {
                let rec = crate::records::InodeRec::decode(&key, &value).unwrap();
                assert_eq!(
                    rec.flags & crate::snapshot::SNAPSHOT,
                    0,
                    "seed {seed}: {rec:?} left"
                );
            }
        }
        // The jobs left nothing behind.
        for t in [
            crate::store::Table::SnapshotJobs,
            crate::store::Table::SnapshotCopied,
            crate::store::Table::SnapshotQueue,
            crate::store::Table::SnapshotExcluded,
        ] {
            use crate::store::StoreRead;
            assert!(
                ns.store.scan(t, &[], None, 1).unwrap().is_empty(),
                "seed {seed}: {t}"
            );
        }
    }
}
