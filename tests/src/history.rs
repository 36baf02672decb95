//! A recorded history of file system calls made through several mounts: what each call
//! asked, when it started and ended (one monotonic clock for every thread), and what it
//! returned. [`crate::linearize`] and [`crate::close_to_open`] judge it.
//!
//! The checked namespace is small on purpose, so calls collide across mounts: top
//! directories `d0..dD` and entries `dN/fM` under them.

use std::fmt;

/// A name in the checked namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Name {
    /// A top directory `d{n}`.
    Dir(u8),
    /// An entry `d{n}/f{m}` (a file, or an empty directory made by `mkdir`).
    Entry(u8, u8),
}

impl Name {
    /// The top directory this name is in (or is).
    pub fn dir(self) -> u8 {
        match self {
            Name::Dir(d) | Name::Entry(d, _) => d,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Dir(d) => write!(f, "d{d}"),
            Name::Entry(d, e) => write!(f, "d{d}/f{e}"),
        }
    }
}

/// One call, as the worker issued it. Compound calls are one operation each, because a
/// worker cannot tell the model which of their syscalls took effect when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `open(O_CREAT|O_WRONLY[|O_EXCL])`, `fstat`, `close`.
    Create {
        name: Name,
        excl: bool,
    },
    /// `open(O_WRONLY|O_TRUNC)`, `fstat`, one `write` of content tagged `tag`, optionally
    /// `fsync`, `close` (whose answer says whether the data committed).
    Write {
        name: Name,
        tag: u64,
        fsync: bool,
    },
    /// `open(O_RDONLY)`, `fstat`, read to the end, `close`.
    Read {
        name: Name,
    },
    Rename {
        from: Name,
        to: Name,
    },
    Unlink {
        name: Name,
    },
    Mkdir {
        name: Name,
    },
    Rmdir {
        name: Name,
    },
    /// `opendir`, read every entry, `closedir`.
    Readdir {
        name: Name,
    },
    /// `lstat`.
    Stat {
        name: Name,
    },
}

impl Op {
    /// The names this call reads or changes.
    pub fn names(&self) -> Vec<Name> {
        match self {
            Op::Rename { from, to } => vec![*from, *to],
            Op::Create { name, .. }
            | Op::Write { name, .. }
            | Op::Read { name }
            | Op::Unlink { name }
            | Op::Mkdir { name }
            | Op::Rmdir { name }
            | Op::Readdir { name }
            | Op::Stat { name } => vec![*name],
        }
    }

    /// True if the call cannot change the namespace (whatever it returned).
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Op::Write { .. } | Op::Read { .. } | Op::Readdir { .. } | Op::Stat { .. }
        )
    }

    /// A short name for counting calls by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Create { excl: true, .. } => "create-excl",
            Op::Create { excl: false, .. } => "create",
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::Rename { .. } => "rename",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::Rmdir { .. } => "rmdir",
            Op::Readdir { .. } => "readdir",
            Op::Stat { .. } => "stat",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { name, excl } => {
                write!(f, "create{} {name}", if *excl { "(excl)" } else { "" })
            }
            Op::Write { name, tag, fsync } => write!(
                f,
                "write {name} tag {tag:#x}{}",
                if *fsync { " +fsync" } else { "" }
            ),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            other => write!(f, "{} {}", other.kind(), other.names()[0]),
        }
    }
}

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
}

/// The bytes a read returned, as far as the checker cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Empty,
    /// Exactly the bytes the write with this tag wrote.
    Tag(u64),
    /// Writes layered, the top one first: all of the first write's bytes over the rest of the
    /// second's (which is longer), over the rest of the third's, and so on. What several
    /// writers' `O_TRUNC` + `write` leave when every one truncates before any writes.
    Mixed(Vec<u64>),
    /// Anything else: torn, mixed or foreign bytes (length and a prefix, for the report).
    Other(usize, String),
}

/// What a call returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ret {
    /// rename, unlink, mkdir, rmdir succeeded.
    Ok,
    /// create opened this inode.
    Ino(u64),
    /// write opened this inode; `committed` is the answer of `fsync` and `close`: `Err`
    /// means the data may or may not have landed.
    Wrote {
        ino: u64,
        committed: Result<(), i32>,
    },
    Read {
        ino: u64,
        content: Content,
    },
    /// Entry names, sorted.
    Names(Vec<String>),
    Stat {
        kind: Kind,
        ino: u64,
    },
    /// An errno the namespace model explains (ENOENT, EEXIST, ...).
    Err(i32),
    /// The outcome is not known: the mount was killed mid-call, or the call failed with an
    /// errno that says nothing about whether it took effect (EIO, ETIMEDOUT, ...). The call
    /// may have taken effect once, at any time after it started, or never.
    Unknown(String),
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ret::Ok => write!(f, "ok"),
            Ret::Ino(i) => write!(f, "ino {i}"),
            Ret::Wrote { ino, committed } => match committed {
                Ok(()) => write!(f, "ino {ino}, committed"),
                Err(e) => write!(f, "ino {ino}, data NOT committed: {}", errno_name(*e)),
            },
            Ret::Read { ino, content } => match content {
                Content::Empty => write!(f, "ino {ino}, empty"),
                Content::Tag(t) => write!(f, "ino {ino}, tag {t:#x}"),
                Content::Mixed(layers) => {
                    let tags: Vec<String> = layers.iter().map(|t| format!("{t:#x}")).collect();
                    write!(f, "ino {ino}, tags {} layered", tags.join(" over "))
                }
                Content::Other(len, p) => write!(f, "ino {ino}, {len} unknown bytes {p:?}"),
            },
            Ret::Names(n) => write!(f, "[{}]", n.join(" ")),
            Ret::Stat { kind, ino } => write!(f, "{kind:?} ino {ino}"),
            Ret::Err(e) => write!(f, "{}", errno_name(*e)),
            Ret::Unknown(why) => write!(f, "UNKNOWN ({why})"),
        }
    }
}

/// `ENOENT` etc. for an errno value.
pub fn errno_name(e: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

/// One call in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Index in the history (sorted by start).
    pub id: usize,
    pub mount: usize,
    pub worker: usize,
    /// Nanoseconds since the run's clock started: just before the first syscall and just
    /// after the last.
    pub start: u64,
    pub end: u64,
    pub op: Op,
    pub ret: Ret,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<6} mount {} w{:<2} [{:>10.6} .. {:>10.6}] {:<34} = {}",
            self.id,
            self.mount,
            self.worker,
            self.start as f64 / 1e9,
            self.end as f64 / 1e9,
            self.op.to_string(),
            self.ret
        )
    }
}

/// Merges the workers' records into one history sorted by start time, numbered.
pub fn merge(parts: impl IntoIterator<Item = Vec<Record>>) -> Vec<Record> {
    let mut all: Vec<Record> = parts.into_iter().flatten().collect();
    all.sort_by_key(|r| (r.start, r.end, r.mount, r.worker));
    for (i, r) in all.iter_mut().enumerate() {
        r.id = i;
    }
    all
}

/// The records whose calls touch any of `names` (or, for a top directory, any entry in
/// it), overlapping `[from, to]` or among the `before` last ones ending before `from`:
/// enough history to see why a call's answer is wrong, without the rest.
pub fn excerpt<'a>(
    history: &'a [Record],
    names: &[Name],
    (from, to): (u64, u64),
    before: usize,
) -> Vec<&'a Record> {
    let touches = |r: &Record| {
        r.op.names().iter().any(|n| {
            names.iter().any(|m| {
                n == m
                    || matches!((n, m), (Name::Dir(d), Name::Entry(e, _)) | (Name::Entry(e, _), Name::Dir(d)) if d == e)
            })
        })
    };
    let relevant: Vec<&Record> = history.iter().filter(|r| touches(r)).collect();
    let earlier: Vec<&Record> = relevant.iter().copied().filter(|r| r.end < from).collect();
    let skip = earlier.len().saturating_sub(before);
    let mut out: Vec<&Record> = earlier.into_iter().skip(skip).collect();
    out.extend(
        relevant
            .into_iter()
            .filter(|r| r.end >= from && r.start <= to),
    );
    out.sort_by_key(|r| r.id);
    out
}

/// Counts of calls by kind and by answer class (ok, each errno, unknown), for the report.
pub fn summary(history: &[Record]) -> String {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for r in history {
        let class = match &r.ret {
            Ret::Err(e) => errno_name(*e),
            Ret::Unknown(_) => "unknown".to_string(),
            Ret::Wrote {
                committed: Err(_), ..
            } => "uncommitted".to_string(),
            _ => "ok".to_string(),
        };
        *by.entry(r.op.kind()).or_default().entry(class).or_default() += 1;
    }
    let mut s = format!("{} calls:", history.len());
    for (kind, classes) in by {
        let total: usize = classes.values().sum();
        let parts: Vec<String> = classes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        s.push_str(&format!(
            "\n  {kind:<12} {total:>7}  ({})",
            parts.join(", ")
        ));
    }
    s
}
