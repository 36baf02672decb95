//! Workers that make random namespace and data calls through a mount, on a small shared set
//! of names so that calls from different mounts collide, and record each one
//! ([`crate::history`]) for the consistency checkers.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::history::{Content, Kind, Name, Op, Record, Ret};
use crate::ns_model::explained;

/// The directory, under each mount, that holds the checked namespace.
pub const ROOT: &str = "consistency";

/// The shape of the checked namespace.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub dirs: u8,
    pub files: u8,
}

/// Makes `ROOT` and its top directories through one mount (before the history starts).
pub fn setup(mount: &Path, plan: Plan) -> std::io::Result<()> {
    std::fs::create_dir(mount.join(ROOT))?;
    for d in 0..plan.dirs {
        std::fs::create_dir(mount.join(ROOT).join(Name::Dir(d).to_string()))?;
    }
    Ok(())
}

/// The bytes a write with `tag` writes: the tag in hex, repeated (17 to 850 bytes), so a read
/// tells which write it saw and whether it saw all of it.
pub fn content(tag: u64) -> Vec<u8> {
    let unit = format!("{tag:016x};");
    unit.repeat(1 + (tag % 50) as usize).into_bytes()
}

/// Which write's bytes `data` are: one write's, or several layered (each a proper prefix
/// of the one under it), or none.
pub fn identify(data: &[u8]) -> Content {
    if data.is_empty() {
        return Content::Empty;
    }
    let tag = |at: usize| {
        let h = data.get(at..at + 16)?;
        u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    // Peel layers from the top: each next one is named by the tag just past the bytes the
    // ones above it cover, and must supply exactly the bytes from there to its own end.
    let mut layers = Vec::new();
    let mut covered = 0;
    while covered < data.len() {
        let Some(t) = tag(covered) else { break };
        let c = content(t);
        if c.len() <= covered || c.len() > data.len() || c[covered..] != data[covered..c.len()] {
            break;
        }
        layers.push(t);
        covered = c.len();
    }
    match layers.len() {
        _ if covered != data.len() => {
            let at = |from: usize| String::from_utf8_lossy(&data[from..data.len().min(from + 20)]);
            // Where the layering stopped explaining the bytes, for the report.
            let mut seen = at(0).into_owned();
            if covered > 0 {
                seen.push_str(&format!(" ... byte {covered}: {}", at(covered)));
            }
            Content::Other(data.len(), seen)
        }
        1 => Content::Tag(layers[0]),
        _ => Content::Mixed(layers),
    }
}

/// What ended a mount's calls: the time (on the run's clock) its process was killed;
/// `u64::MAX` while it lives. Calls that end after it have an unknown outcome.
pub type KillTime = Arc<AtomicU64>;

/// One worker: its mount, its identity and its random stream.
#[derive(Debug)]
pub struct Worker {
    pub mount: usize,
    /// Unique across the run (it is in every tag this worker writes).
    pub worker: usize,
    pub root: PathBuf,
    pub plan: Plan,
    pub t0: Instant,
    pub rng: u64,
    pub killed: KillTime,
    seq: u64,
}

impl Worker {
    pub fn new(mount: usize, worker: usize, mount_path: &Path, plan: Plan, t0: Instant) -> Self {
        Worker {
            mount,
            worker,
            root: mount_path.join(ROOT),
            plan,
            t0,
            rng: 0x9E37_79B9_7F4A_7C15,
            killed: Arc::new(AtomicU64::new(u64::MAX)),
            seq: 0,
        }
    }

    /// Calls until `stop` or until the mount is killed; returns the records.
    pub fn run(mut self, stop: &AtomicBool) -> Vec<Record> {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let op = self.pick();
            let mut r = self.call(op);
            let killed = self.killed.load(Ordering::SeqCst);
            if r.start >= killed {
                // Started on a dead (lazily unmounted) path: it never reached the mount.
                break;
            }
            if r.end >= killed {
                r.ret = Ret::Unknown("the mount was killed during the call".into());
            }
            out.push(r);
        }
        out
    }

    fn next(&mut self) -> u64 {
        let x = &mut self.rng;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn entry(&mut self) -> Name {
        let d = self.below(self.plan.dirs as u64) as u8;
        Name::Entry(d, self.below(self.plan.files as u64) as u8)
    }

    fn any_name(&mut self) -> Name {
        if self.below(4) == 0 {
            Name::Dir(self.below(self.plan.dirs as u64) as u8)
        } else {
            self.entry()
        }
    }

    /// A random call. Weights favour files and data; directories come and go now and then.
    fn pick(&mut self) -> Op {
        let roll = self.below(100);
        match roll {
            0..10 => Op::Create {
                name: self.entry(),
                excl: true,
            },
            10..16 => Op::Create {
                name: self.entry(),
                excl: false,
            },
            16..34 => {
                self.seq += 1;
                Op::Write {
                    name: self.entry(),
                    tag: ((self.worker as u64) << 40) | self.seq,
                    fsync: self.below(2) == 0,
                }
            }
            34..52 => Op::Read { name: self.entry() },
            52..62 => Op::Rename {
                from: self.entry(),
                to: self.entry(),
            },
            62..70 => Op::Unlink { name: self.entry() },
            70..75 => Op::Mkdir {
                name: self.any_name(),
            },
            75..80 => Op::Rmdir {
                name: self.any_name(),
            },
            80..88 => Op::Readdir {
                name: self.any_name(),
            },
            _ => Op::Stat {
                name: self.any_name(),
            },
        }
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Makes the call and records it.
    pub fn call(&mut self, op: Op) -> Record {
        let start = self.now();
        let ret = perform(&self.root, &op);
        let end = self.now();
        Record {
            id: 0,
            mount: self.mount,
            worker: self.worker,
            start,
            end,
            op,
            ret,
        }
    }
}

/// An error as the model sees it: an errno it explains, or an unknown outcome.
fn failed(e: std::io::Error) -> Ret {
    match e.raw_os_error() {
        Some(n) if explained(n) => Ret::Err(n),
        Some(n) => Ret::Unknown(crate::history::errno_name(n)),
        None => Ret::Unknown(format!("{e}")),
    }
}

fn path(root: &Path, name: Name) -> PathBuf {
    root.join(name.to_string())
}

/// Runs `op` under `root` with real syscalls and says what it returned.
pub fn perform(root: &Path, op: &Op) -> Ret {
    let result = match op {
        Op::Create { name, excl } => {
            let mut o = std::fs::OpenOptions::new();
            o.write(true);
            if *excl {
                o.create_new(true);
            } else {
                o.create(true);
            }
            // The file exists once open returns; close has nothing to flush.
            o.open(path(root, *name))
                .and_then(|f| f.metadata())
                .map(|m| Ret::Ino(m.ino()))
        }
        Op::Write { name, tag, fsync } => return write(&path(root, *name), *tag, *fsync),
        Op::Read { name } => std::fs::File::open(path(root, *name)).and_then(|mut f| {
            let ino = f.metadata()?.ino();
            let mut data = Vec::new();
            f.read_to_end(&mut data)?;
            Ok(Ret::Read {
                ino,
                content: identify(&data),
            })
        }),
        Op::Rename { from, to } => {
            std::fs::rename(path(root, *from), path(root, *to)).map(|()| Ret::Ok)
        }
        Op::Unlink { name } => std::fs::remove_file(path(root, *name)).map(|()| Ret::Ok),
        Op::Mkdir { name } => std::fs::create_dir(path(root, *name)).map(|()| Ret::Ok),
        Op::Rmdir { name } => std::fs::remove_dir(path(root, *name)).map(|()| Ret::Ok),
        Op::Readdir { name } => std::fs::read_dir(path(root, *name)).and_then(|it| {
            let mut names = it
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<_>>>()?;
            names.sort();
            Ok(Ret::Names(names))
        }),
        Op::Stat { name } => std::fs::symlink_metadata(path(root, *name)).map(|m| Ret::Stat {
            kind: if m.is_dir() { Kind::Dir } else { Kind::File },
            ino: m.ino(),
        }),
    };
    result.unwrap_or_else(failed)
}

/// open(O_WRONLY|O_TRUNC), fstat, write, [fsync], close: the namespace answer is the open's;
/// whether the data committed is the answer of write, fsync and close together.
fn write(p: &Path, tag: u64, fsync: bool) -> Ret {
    let f = match std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p)
    {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let ino = match f.metadata() {
        Ok(m) => m.ino(),
        // The open succeeded (nothing written yet) but the inode is not known.
        Err(e) => return Ret::Unknown(format!("fstat after open: {e}")),
    };
    let mut f = f;
    let data = f
        .write_all(&content(tag))
        .and_then(|()| if fsync { f.sync_all() } else { Ok(()) });
    // close(2) through nix, because std's drop of a File ignores close's answer, and close is
    // when a FUSE mount flushes (close-to-open).
    let closed = nix::unistd::close(f).map_err(|e| e as i32);
    let committed = match data {
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
        Ok(()) => closed,
    };
    Ret::Wrote { ino, committed }
}

/// Every name looked at once, one call at a time, through one mount: after the workers
/// stopped, so each live mount's final view joins the history.
pub fn sweep(
    mount: usize,
    worker: usize,
    mount_path: &Path,
    plan: Plan,
    t0: Instant,
) -> Vec<Record> {
    let mut w = Worker::new(mount, worker, mount_path, plan, t0);
    let mut out = Vec::new();
    for d in 0..plan.dirs {
        out.push(w.call(Op::Stat { name: Name::Dir(d) }));
        out.push(w.call(Op::Readdir { name: Name::Dir(d) }));
        for f in 0..plan.files {
            out.push(w.call(Op::Stat {
                name: Name::Entry(d, f),
            }));
            out.push(w.call(Op::Read {
                name: Name::Entry(d, f),
            }));
        }
    }
    out
}
