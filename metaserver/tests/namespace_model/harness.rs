//! Drives the core over both stores and the model in lockstep and compares everything.

use super::LEASE;
use super::model::Model;
use super::strategy::{Step, bytes, stripes};
use proptest::prelude::*;
use tessera_metaserver::store::{LogPos, RedbStore};
use tessera_namespace::{
    Command, MemStore, Op, Query, Reply, Response, StoreRead, apply, digest, query,
};
use tessera_proto::fs::*;

/// The three implementations under comparison, plus the bookkeeping to drive them.
pub struct Harness {
    model: Model,
    mem: MemStore,
    db: RedbStore,
    /// Commands applied to `mem` and the model but not yet to `db`, with the agreed reply.
    pending: Vec<(LogPos, Command, Reply)>,
    sent: Vec<Command>,
    seqs: [u64; 3],
    index: u64,
    now: i64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            model: Model::new(),
            mem: MemStore::new(),
            db: RedbStore::in_memory().expect("in-memory redb"),
            pending: Vec::new(),
            sent: Vec::new(),
            seqs: [0; 3],
            index: 0,
            now: 1_000,
        }
    }

    fn send(&mut self, cmd: Command) -> Result<(), TestCaseError> {
        let expected = self.model.apply(&cmd);
        let got = apply(&mut self.mem, &cmd).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&got, &expected, "reply to {}", cmd);
        self.index += 1;
        let pos = LogPos {
            term: 1,
            index: self.index,
        };
        self.pending.push((pos, cmd.clone(), expected.clone()));
        if std::env::var_os("MODEL_STATS").is_some() {
            let kind = format!("{cmd}")
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            eprintln!(
                "STAT {kind} {:?}",
                expected.as_ref().map(|_| ()).map_err(|e| *e)
            );
        }
        self.sent.push(cmd);
        Ok(())
    }

    fn command(&mut self, who: usize, op: Op) -> Result<(), TestCaseError> {
        let seq = if who == 0 {
            0
        } else {
            self.seqs[who] += 1;
            self.seqs[who]
        };
        self.now += 1;
        self.send(Command {
            session: who as u64,
            seq,
            seq_floor: 0,
            now_ns: self.now,
            op,
        })
    }

    /// Applies the pending commands to redb in one batch and checks its replies.
    fn flush(&mut self) -> Result<(), TestCaseError> {
        let entries: Vec<(LogPos, Command)> = self
            .pending
            .iter()
            .map(|(p, c, _)| (*p, c.clone()))
            .collect();
        let replies = self
            .db
            .apply_batch(&entries)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for ((_, cmd, expected), got) in self.pending.iter().zip(&replies) {
            prop_assert_eq!(got, expected, "redb reply to {}", cmd);
        }
        self.pending.clear();
        Ok(())
    }

    fn check_query(&mut self, q: &Query) -> Result<(), TestCaseError> {
        self.flush()?;
        let expected = self.model.query(q);
        let mem = query(&self.mem, q).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&mem, &expected, "mem {:?}", q);
        let view = self
            .db
            .read_view()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let db = query(&view, q).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&db, &expected, "redb {:?}", q);
        Ok(())
    }

    pub fn run(&mut self, steps: &[Step]) -> Result<(), TestCaseError> {
        self.command(
            0,
            Op::Format {
                uid: 0,
                gid: 0,
                perm: 0o755,
            },
        )?;
        for client in ["one", "two"] {
            self.command(
                0,
                Op::OpenSession {
                    client: client.into(),
                    lease_ns: LEASE,
                },
            )?;
        }
        self.seed()?;
        for step in steps {
            match step {
                Step::Cmd { who, op } => {
                    self.command(*who, op.clone())?;
                }
                Step::Replay(i) => {
                    if !self.sent.is_empty() {
                        let mut cmd = self.sent[i % self.sent.len()].clone();
                        // A retry is a new proposal: the leader stamps a new time.
                        self.now += 1;
                        cmd.now_ns = self.now;
                        self.send(cmd)?;
                    }
                }
                Step::Query(q) => self.check_query(q)?,
                Step::Sleep => self.now += 2 * LEASE,
            }
        }
        self.flush()?;
        self.check_final()
    }

    /// A small starting tree so that most generated commands find something to act on:
    /// 2 = /a, 3 = /b, 4 = /a/a (directories), 5 = /c, 6 = /a/b (files), 7 = /b/c (symlink),
    /// with both files open in both sessions, a stripe in the GC queue and two locks held.
    fn seed(&mut self) -> Result<(), TestCaseError> {
        let dir = |parent: Ino, name: &str| Op::Mkdir {
            parent,
            name: bytes(name),
            perm: 0o755,
            uid: 0,
            gid: 0,
        };
        let file = |parent: Ino, name: &str| Op::Mknod {
            parent,
            name: bytes(name),
            kind: FileKind::Regular,
            perm: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
            open: false,
        };
        let link = Op::Symlink {
            parent: 3,
            name: bytes("c"),
            target: bytes("../c"),
            uid: 0,
            gid: 0,
        };
        for op in [
            dir(1, "a"),
            dir(1, "b"),
            dir(2, "a"),
            file(1, "c"),
            file(2, "b"),
            link,
        ] {
            self.command(0, op)?;
        }
        // Both sessions hold the files open (twice, so one release keeps their locks), so
        // locks, releases and orphans happen early.
        for who in [1, 2, 1, 2] {
            for ino in [5, 6] {
                self.command(who, Op::Open { ino })?;
            }
        }
        // Stripe 1 is written and truncated away (so it waits for GC); stripe 2 is in use.
        for (ino, n) in [(5, 1u8), (6, 2)] {
            let slice = Slice {
                offset: 0,
                len: 10,
                data: Some(StripeRef {
                    stripe: StripeId([n; 32]),
                    offset: 0,
                }),
            };
            self.command(
                1,
                Op::CommitSlice {
                    ino,
                    slices: vec![ChunkSlice { chunk: 0, slice }],
                    stripes: stripes(),
                },
            )?;
        }
        let set = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        self.command(1, Op::SetAttr { ino: 5, set })?;
        // Session 2 holds locks for later requests to run into.
        for (ino, flavor, kind) in [
            (5, LockFlavor::Posix, LockKind::Exclusive),
            (6, LockFlavor::Flock, LockKind::Shared),
        ] {
            self.command(
                2,
                Op::SetLock {
                    ino,
                    owner: 1,
                    flavor,
                    kind,
                    start: 4,
                    end: 8,
                    pid: 1,
                },
            )?;
        }
        Ok(())
    }

    fn check_final(&mut self) -> Result<(), TestCaseError> {
        prop_assert_eq!(core_tree(&self.mem)?, self.model.tree());
        let everything = |ino: Ino| {
            vec![
                Query::GetAttr { ino },
                Query::ListXattr { ino },
                Query::ReadLink { ino },
                Query::Layout {
                    ino,
                    first: 0,
                    last: u64::MAX,
                },
                Query::ReadDir {
                    ino,
                    after: 0,
                    limit: u32::MAX,
                    plus: true,
                },
            ]
        };
        for ino in 1..=self.model.max_ino() {
            for q in everything(ino) {
                self.check_query(&q)?;
            }
        }
        self.check_query(&Query::GcQueue { limit: u32::MAX })?;
        self.check_query(&Query::StatFs {
            total_bytes: 1 << 30,
            total_files: 1000,
        })?;
        let mem = digest(&self.mem).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let db = self
            .db
            .digest()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(mem, db, "digests of the two stores");
        Ok(())
    }
}

/// The tree reached from the root through the core's own readdir, as (path, attr) pairs.
fn core_tree(s: &impl StoreRead) -> Result<Vec<(Vec<u8>, Attr)>, TestCaseError> {
    let ask = |q: Query| query(s, &q).map_err(|e| TestCaseError::fail(e.to_string()));
    let mut out = Vec::new();
    let Ok(Response::Attr(root)) = ask(Query::GetAttr { ino: ROOT_INO })? else {
        return Ok(out);
    };
    out.push((b"/".to_vec(), root));
    let mut stack = vec![(b"/".to_vec(), ROOT_INO)];
    while let Some((path, ino)) = stack.pop() {
        let q = Query::ReadDir {
            ino,
            after: COOKIE_DOTDOT,
            limit: u32::MAX,
            plus: true,
        };
        let Ok(Response::Entries(entries)) = ask(q)? else {
            return Err(TestCaseError::fail(format!("readdir {ino} failed")));
        };
        for e in entries {
            let mut p = path.clone();
            if p.len() > 1 {
                p.push(b'/');
            }
            p.extend_from_slice(&e.name);
            let attr = e
                .attr
                .ok_or_else(|| TestCaseError::fail("readdirplus without attr"))?;
            if e.kind == FileKind::Directory {
                stack.push((p.clone(), e.ino));
            }
            out.push((p, attr));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
