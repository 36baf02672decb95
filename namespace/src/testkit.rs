//! A small harness for the handler unit tests: a formatted in-memory namespace with one
//! client session, and shorthands for the common commands.

use super::command::{Command, Op, Query, Reply, Response, SYSTEM_SESSION};
use super::store::MemStore;
use super::{apply, query};
use tessera_proto::fs::{
    Attr, FileKind, FsError, Ino, ROOT_INO, RenameMode, ShardId, ShardPlace, StripeId, StripeInfo,
    StripeLayout,
};

#[derive(Debug)]
pub(crate) struct Ns {
    pub store: MemStore,
    pub session: u64,
    pub seq: u64,
    pub now: i64,
}

impl Ns {
    /// A formatted namespace with one open session.
    pub fn new() -> Ns {
        let mut ns = Ns {
            store: MemStore::new(),
            session: SYSTEM_SESSION,
            seq: 0,
            now: 1_000,
        };
        ns.sys(Op::Format {
            uid: 0,
            gid: 0,
            perm: 0o755,
        })
        .unwrap();
        match ns.sys(Op::OpenSession {
            client: "test".into(),
            lease_ns: 1_000_000,
        }) {
            Ok(Response::Session { id, .. }) => ns.session = id,
            other => panic!("open session: {other:?}"),
        }
        ns
    }

    /// The command as the client would send it next (time and seq advance).
    pub fn next(&mut self, op: Op) -> Command {
        self.seq += 1;
        self.now += 10;
        Command {
            session: self.session,
            seq: self.seq,
            seq_floor: 0,
            now_ns: self.now,
            op,
        }
    }

    pub fn send(&mut self, cmd: &Command) -> Reply {
        apply(&mut self.store, cmd).unwrap()
    }

    pub fn cmd(&mut self, op: Op) -> Reply {
        let c = self.next(op);
        self.send(&c)
    }

    pub fn sys(&mut self, op: Op) -> Reply {
        self.now += 10;
        let c = Command {
            session: SYSTEM_SESSION,
            seq: 0,
            seq_floor: 0,
            now_ns: self.now,
            op,
        };
        self.send(&c)
    }

    pub fn q(&self, q: Query) -> Reply {
        query(&self.store, &q).unwrap()
    }

    pub fn attr_reply(r: Reply) -> Result<Attr, FsError> {
        match r? {
            Response::Attr(a) => Ok(a),
            other => panic!("expected Attr, got {other:?}"),
        }
    }

    pub fn mknod(&mut self, parent: Ino, name: &str, kind: FileKind) -> Result<Attr, FsError> {
        let r = self.cmd(Op::Mknod {
            parent,
            name: name.into(),
            kind,
            perm: 0o644,
            uid: 1,
            gid: 1,
            rdev: 0,
            open: false,
        });
        Ns::attr_reply(r)
    }

    pub fn create(&mut self, parent: Ino, name: &str) -> Ino {
        self.mknod(parent, name, FileKind::Regular).unwrap().ino
    }

    pub fn mkdir_r(&mut self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
        let r = self.cmd(Op::Mkdir {
            parent,
            name: name.to_vec(),
            perm: 0o755,
            uid: 1,
            gid: 1,
        });
        Ns::attr_reply(r)
    }

    pub fn mkdir(&mut self, parent: Ino, name: &str) -> Ino {
        self.mkdir_r(parent, name.as_bytes()).unwrap().ino
    }

    /// `Rename` of `p`/`n` to `np`/`nn`.
    pub fn rename(
        &mut self,
        p: Ino,
        n: &str,
        np: Ino,
        nn: &str,
        mode: RenameMode,
    ) -> Result<(), FsError> {
        self.cmd(Op::Rename {
            parent: p,
            name: n.into(),
            new_parent: np,
            new_name: nn.into(),
            mode,
        })
        .map(|_| ())
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr, FsError> {
        Ns::attr_reply(self.q(Query::GetAttr { ino }))
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        Ns::attr_reply(self.q(Query::Lookup {
            parent,
            name: name.into(),
        }))
    }

    /// Entry names of a directory (without "." and ".."), in readdir order.
    pub fn names(&self, dir: Ino) -> Vec<String> {
        match self.q(Query::ReadDir {
            ino: dir,
            after: 2,
            limit: u32::MAX,
            plus: false,
        }) {
            Ok(Response::Entries(e)) => e
                .into_iter()
                .map(|e| String::from_utf8(e.name).unwrap())
                .collect(),
            other => panic!("readdir: {other:?}"),
        }
    }

    pub fn root(&self) -> Ino {
        ROOT_INO
    }
}

/// A 2+1 stripe `n` (id, shard ids and servers derived from `n`) holding `data_len` bytes.
pub(crate) fn stripe(n: u8, data_len: u64) -> StripeInfo {
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
