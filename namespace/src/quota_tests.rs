//! Quota accounting checked against a recount: after every command the stored usage of each
//! quota directory must equal what a walk of the tree (through queries only) finds.

use std::collections::BTreeSet;

use crate::command::{Op, Query, Response};
use crate::testkit::Ns;
use tessera_proto::fs::{FileKind, FsError, Ino, RenameMode, SetAttr, StatFs};
use tessera_proto::meta::QuotaEntry;

fn set(ns: &mut Ns, ino: Ino, bytes: Option<u64>, inodes: Option<u64>) {
    ns.cmd(Op::SetQuota { ino, bytes, inodes }).unwrap();
}

fn quotas(ns: &Ns) -> Vec<QuotaEntry> {
    match ns.q(Query::Quotas) {
        Ok(Response::Quotas(q)) => q,
        other => panic!("{other:?}"),
    }
}

fn used(ns: &Ns, dir: Ino) -> (u64, u64) {
    let q = quotas(ns).into_iter().find(|q| q.ino == dir).unwrap();
    (q.used_bytes, q.used_inodes)
}

fn entries(ns: &Ns, dir: Ino) -> Vec<(Ino, FileKind)> {
    match ns.q(Query::ReadDir {
        ino: dir,
        after: 2,
        limit: u32::MAX,
        plus: false,
    }) {
        Ok(Response::Entries(e)) => e.into_iter().map(|e| (e.ino, e.kind)).collect(),
        other => panic!("readdir {dir}: {other:?}"),
    }
}

/// Usage of `dir` by the definition in `quota.rs`, from a walk.
fn recount(ns: &Ns, dir: Ino) -> (u64, u64) {
    let mut seen = BTreeSet::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        for (ino, kind) in entries(ns, d) {
            if kind == FileKind::Directory {
                dirs.push(ino);
            }
            seen.insert(ino);
        }
    }
    let bytes = seen
        .iter()
        .map(|&i| ns.attr(i).unwrap())
        .filter(|a| a.kind != FileKind::Directory)
        .map(|a| a.size)
        .sum();
    (bytes, seen.len() as u64)
}

fn check(ns: &Ns) {
    for q in quotas(ns) {
        assert_eq!(
            (q.used_bytes, q.used_inodes),
            recount(ns, q.ino),
            "quota on {}",
            q.ino
        );
    }
}

fn resize(ns: &mut Ns, ino: Ino, size: u64) -> Result<(), FsError> {
    ns.cmd(Op::SetAttr {
        ino,
        set: SetAttr {
            size: Some(size),
            ..SetAttr::default()
        },
    })
    .map(|_| ())
}

fn link(ns: &mut Ns, ino: Ino, dir: Ino, name: &str) -> Result<(), FsError> {
    ns.cmd(Op::Link {
        ino,
        new_parent: dir,
        new_name: name.into(),
    })
    .map(|_| ())
}

fn unlink(ns: &mut Ns, dir: Ino, name: &str) -> Result<(), FsError> {
    ns.cmd(Op::Unlink {
        parent: dir,
        name: name.into(),
    })
    .map(|_| ())
}

#[test]
fn set_counts_what_is_there_and_new_entries_add() {
    let mut ns = Ns::new();
    let q = ns.mkdir(1, "q");
    let sub = ns.mkdir(q, "sub");
    let f = ns.create(sub, "f");
    resize(&mut ns, f, 1000).unwrap();
    set(&mut ns, q, Some(10_000), Some(10));
    assert_eq!(used(&ns, q), (1000, 2));
    ns.create(q, "g");
    ns.cmd(Op::Symlink {
        parent: q,
        name: "l".into(),
        target: b"abc".to_vec(),
        uid: 0,
        gid: 0,
    })
    .unwrap();
    assert_eq!(used(&ns, q), (1003, 4));
    check(&ns);
}

#[test]
fn inode_limit_refuses_the_create_and_changes_nothing() {
    let mut ns = Ns::new();
    let q = ns.mkdir(1, "q");
    set(&mut ns, q, None, Some(2));
    ns.create(q, "a");
    ns.mkdir(q, "d");
    let before = (ns.names(q), used(&ns, q), ns.attr(q).unwrap());
    assert_eq!(
        ns.mknod(q, "b", FileKind::Regular).err(),
        Some(FsError::QuotaExceeded)
    );
    assert_eq!(ns.mkdir_r(q, b"e").err(), Some(FsError::QuotaExceeded));
    assert_eq!((ns.names(q), used(&ns, q), ns.attr(q).unwrap()), before);
    // Outside the quota nothing is limited; a removal makes room again.
    ns.create(1, "outside");
    unlink(&mut ns, q, "a").unwrap();
    ns.create(q, "b");
    assert_eq!(used(&ns, q), (0, 2));
    check(&ns);
}

#[test]
fn byte_limit_refuses_growth_but_not_shrinking() {
    let mut ns = Ns::new();
    let q = ns.mkdir(1, "q");
    set(&mut ns, q, Some(100), None);
    let f = ns.create(q, "f");
    resize(&mut ns, f, 100).unwrap();
    assert_eq!(resize(&mut ns, f, 101), Err(FsError::QuotaExceeded));
    assert_eq!(ns.attr(f).unwrap().size, 100);
    // Lowering the limit below the usage: shrinking still works, growing does not.
    set(&mut ns, q, Some(50), None);
    assert_eq!(used(&ns, q), (100, 1));
    resize(&mut ns, f, 80).unwrap();
    assert_eq!(resize(&mut ns, f, 90), Err(FsError::QuotaExceeded));
    resize(&mut ns, f, 10).unwrap();
    assert_eq!(used(&ns, q), (10, 1));
    check(&ns);
}

#[test]
fn nested_quotas_are_both_enforced() {
    let mut ns = Ns::new();
    let outer = ns.mkdir(1, "outer");
    let inner = ns.mkdir(outer, "inner");
    set(&mut ns, outer, Some(100), None);
    set(&mut ns, inner, Some(1000), None);
    let a = ns.create(inner, "a");
    assert_eq!(resize(&mut ns, a, 101), Err(FsError::QuotaExceeded));
    set(&mut ns, outer, Some(10_000), None);
    set(&mut ns, inner, Some(50), None);
    assert_eq!(resize(&mut ns, a, 51), Err(FsError::QuotaExceeded));
    resize(&mut ns, a, 50).unwrap();
    assert_eq!(used(&ns, outer), (50, 2));
    assert_eq!(used(&ns, inner), (50, 1));
    check(&ns);
}

#[test]
fn renames_move_usage_between_realms() {
    let mut ns = Ns::new();
    let a = ns.mkdir(1, "a");
    let b = ns.mkdir(1, "b");
    set(&mut ns, a, None, None);
    set(&mut ns, b, Some(1000), None);
    // A tree outside any quota, moved in, between, and out.
    let t = ns.mkdir(1, "t");
    let t2 = ns.mkdir(t, "t2");
    let f = ns.create(t2, "f");
    resize(&mut ns, f, 300).unwrap();
    ns.create(t, "g");
    ns.rename(1, "t", a, "t", RenameMode::Replace).unwrap();
    assert_eq!(used(&ns, a), (300, 4));
    check(&ns);
    ns.rename(a, "t", b, "t", RenameMode::Replace).unwrap();
    assert_eq!(used(&ns, a), (0, 0));
    assert_eq!(used(&ns, b), (300, 4));
    check(&ns);
    // Too big for b's limit: refused whole.
    let big = ns.create(a, "big");
    resize(&mut ns, big, 800).unwrap();
    assert_eq!(
        ns.rename(a, "big", b, "big", RenameMode::Replace),
        Err(FsError::QuotaExceeded)
    );
    ns.rename(b, "t", 1, "t", RenameMode::Replace).unwrap();
    assert_eq!(used(&ns, b), (0, 0));
    ns.rename(a, "big", b, "big", RenameMode::Replace).unwrap();
    check(&ns);
    // Exchange across realms swaps usage.
    let small = ns.create(a, "small");
    resize(&mut ns, small, 7).unwrap();
    ns.rename(a, "small", b, "big", RenameMode::Exchange)
        .unwrap();
    assert_eq!(used(&ns, a), (800, 1));
    assert_eq!(used(&ns, b), (7, 1));
    check(&ns);
}

#[test]
fn a_quota_directory_moves_with_its_usage_and_goes_when_removed() {
    let mut ns = Ns::new();
    let top = ns.mkdir(1, "top");
    set(&mut ns, top, None, None);
    let q = ns.mkdir(1, "q");
    set(&mut ns, q, None, None);
    let f = ns.create(q, "f");
    resize(&mut ns, f, 5).unwrap();
    ns.rename(1, "q", top, "q", RenameMode::Replace).unwrap();
    assert_eq!(used(&ns, top), (5, 2));
    assert_eq!(used(&ns, q), (5, 1));
    unlink(&mut ns, q, "f").unwrap();
    ns.cmd(Op::Rmdir {
        parent: top,
        name: "q".into(),
    })
    .unwrap();
    assert_eq!(quotas(&ns).len(), 1);
    assert_eq!(used(&ns, top), (0, 0));
    check(&ns);
}

#[test]
fn hard_links_count_once_in_each_realm_holding_a_name() {
    let mut ns = Ns::new();
    let a = ns.mkdir(1, "a");
    let b = ns.mkdir(1, "b");
    set(&mut ns, 1, None, None);
    set(&mut ns, a, None, None);
    set(&mut ns, b, None, None);
    let f = ns.create(a, "f");
    resize(&mut ns, f, 10).unwrap();
    link(&mut ns, f, a, "f2").unwrap();
    link(&mut ns, f, b, "f3").unwrap();
    assert_eq!(used(&ns, a), (10, 1));
    assert_eq!(used(&ns, b), (10, 1));
    assert_eq!(used(&ns, 1), (10, 3));
    resize(&mut ns, f, 20).unwrap();
    assert_eq!(used(&ns, b), (20, 1));
    unlink(&mut ns, a, "f").unwrap();
    assert_eq!(used(&ns, a), (20, 1));
    unlink(&mut ns, a, "f2").unwrap();
    assert_eq!(used(&ns, a), (0, 0));
    assert_eq!(used(&ns, b), (20, 1));
    check(&ns);
}

#[test]
fn a_file_in_the_trash_counts_nowhere_until_restored() {
    let mut ns = Ns::new();
    ns.sys(Op::SetTrashRetention { seconds: 3600 }).unwrap();
    let q = ns.mkdir(1, "q");
    set(&mut ns, q, Some(100), None);
    let f = ns.create(q, "f");
    resize(&mut ns, f, 60).unwrap();
    unlink(&mut ns, q, "f").unwrap();
    assert_eq!(used(&ns, q), (0, 0));
    let g = ns.create(q, "g");
    resize(&mut ns, g, 60).unwrap();
    // Restoring would pass the limit.
    let restore = Op::RestoreTrash { ino: f, to: None };
    assert_eq!(ns.cmd(restore.clone()), Err(FsError::QuotaExceeded));
    resize(&mut ns, g, 0).unwrap();
    ns.cmd(restore).unwrap();
    assert_eq!(used(&ns, q), (60, 2));
    check(&ns);
}

#[test]
fn statfs_inside_a_quota_shows_the_quota() {
    let mut ns = Ns::new();
    let q = ns.mkdir(1, "q");
    let d = ns.mkdir(q, "d");
    let f = ns.create(d, "f");
    resize(&mut ns, f, 4096 * 3).unwrap();
    set(&mut ns, q, Some(4096 * 10), Some(100));
    let stat = |ns: &Ns, ino| match ns.q(Query::StatFsAt {
        ino,
        total_bytes: 1 << 40,
        total_files: 1 << 32,
    }) {
        Ok(Response::StatFs(s)) => s,
        other => panic!("{other:?}"),
    };
    for ino in [q, d, f] {
        let s: StatFs = stat(&ns, ino);
        assert_eq!((s.blocks, s.bfree, s.bavail), (10, 7, 7));
        assert_eq!((s.files, s.ffree), (100, 98));
    }
    let outside = stat(&ns, 1);
    assert_eq!(outside.blocks, (1 << 40) / 4096);
}

#[test]
fn unset_forgets_and_root_setattr_keeps_its_quota() {
    let mut ns = Ns::new();
    set(&mut ns, 1, Some(10), None);
    ns.cmd(Op::SetAttr {
        ino: 1,
        set: SetAttr {
            perm: Some(0o700),
            ..SetAttr::default()
        },
    })
    .unwrap();
    assert_eq!(quotas(&ns).len(), 1);
    ns.cmd(Op::UnsetQuota { ino: 1 }).unwrap();
    assert!(quotas(&ns).is_empty());
    assert_eq!(ns.cmd(Op::UnsetQuota { ino: 1 }), Err(FsError::NotFound));
    let f = ns.create(1, "f");
    assert_eq!(
        ns.cmd(Op::SetQuota {
            ino: f,
            bytes: None,
            inodes: None
        }),
        Err(FsError::NotDir)
    );
}

/// A pseudo-random mix of creates, links, unlinks, renames and resizes over three nested
/// and side-by-side quota directories, recounted after every step.
#[test]
fn random_histories_keep_usage_exact() {
    let mut ns = Ns::new();
    ns.sys(Op::SetTrashRetention { seconds: 3600 }).unwrap();
    let a = ns.mkdir(1, "a");
    let b = ns.mkdir(1, "b");
    let c = ns.mkdir(a, "c");
    let plain = ns.mkdir(1, "p");
    set(&mut ns, a, Some(5000), Some(40));
    set(&mut ns, b, Some(3000), None);
    set(&mut ns, c, None, Some(10));
    let mut dirs = vec![1, a, b, c, plain];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let names = ["x", "y", "z", "w"];
    for step in 0..600 {
        let d = dirs[next(dirs.len())];
        let n = names[next(names.len())];
        let d2 = dirs[next(dirs.len())];
        let n2 = names[next(names.len())];
        let _ = match next(7) {
            0 => ns.mknod(d, n, FileKind::Regular).map(|_| ()),
            1 => ns.mkdir_r(d, n.as_bytes()).map(|a| dirs.push(a.ino)),
            2 => match ns.lookup(d, n) {
                Ok(at) if at.kind == FileKind::Regular => link(&mut ns, at.ino, d2, n2),
                _ => Ok(()),
            },
            3 => unlink(&mut ns, d, n).or_else(|_| {
                ns.cmd(Op::Rmdir {
                    parent: d,
                    name: n.into(),
                })
                .map(|_| ())
            }),
            4 | 5 => ns.rename(d, n, d2, n2, RenameMode::Replace),
            _ => match ns.lookup(d, n) {
                Ok(at) if at.kind == FileKind::Regular => {
                    resize(&mut ns, at.ino, (next(20) * 100) as u64)
                }
                _ => Ok(()),
            },
        };
        dirs.retain(|&i| ns.attr(i).is_ok_and(|at| at.nlink > 0));
        for q in quotas(&ns) {
            let (bytes, inodes) = recount(&ns, q.ino);
            assert_eq!(
                (q.used_bytes, q.used_inodes),
                (bytes, inodes),
                "step {step}"
            );
            // Usage that the limits allow never goes past them (the quotas start empty).
            assert!(q.max_bytes.is_none_or(|m| bytes <= m), "step {step}");
            assert!(q.max_inodes.is_none_or(|m| inodes <= m), "step {step}");
        }
    }
}

#[test]
fn quotas_and_file_links_survive_dump_and_load() {
    let mut ns = Ns::new();
    let q = ns.mkdir(1, "q");
    let f = ns.create(q, "f");
    resize(&mut ns, f, 40).unwrap();
    set(&mut ns, q, Some(100), Some(5));
    let (image, _) = crate::dump::dump(&ns.store).unwrap();
    let mut fresh = Ns::new();
    fresh.sys(Op::LoadImage { image }).unwrap();
    assert_eq!(quotas(&fresh), quotas(&ns));
    let links = |ns: &Ns| {
        crate::StoreRead::scan(&ns.store, crate::Table::FileLinks, &[], None, usize::MAX).unwrap()
    };
    assert_eq!(links(&fresh), links(&ns), "file links rebuilt on load");
    // Accounting goes on from the loaded rows: the file's name is known.
    assert_eq!(resize(&mut fresh, f, 101), Err(FsError::QuotaExceeded));
    resize(&mut fresh, f, 100).unwrap();
    assert_eq!(used(&fresh, q), (100, 1));
    check(&fresh);
}
