//! Close-to-open consistency of file contents across mounts, checked per inode.
//!
//! Every read records the inode it opened (`fstat` on its descriptor) and every write the
//! inode it truncated and wrote, so renames and unlinks between them do not matter here:
//! which inode a name led to is the namespace checker's business ([`crate::linearize`]).
//! The rule: once the `close` of a write has returned, a read whose `open` starts later
//! (through any mount) returns exactly those bytes, or those of a write not known to come
//! before it. In detail, a read of inode I that returned the bytes of write W violates it if
//! W wrote another inode, or started after the read ended, or a committed write W2 of I
//! started after W ended and ended before the read started (W is then stale). An empty
//! read, or bytes of no write, is explained only by a write of I that overlaps the read
//! (its `O_TRUNC` and its data land at different moments) or, for an empty read, by no
//! committed write of I having ended before the read started.
//!
//! Several writers of one file may all truncate before any writes; the file then holds the
//! shortest write's bytes over the rest of the next longer one's, and so on (layers). Such a
//! read is explained if every two of the writes overlapped in time (or one overlaps the
//! read) and none is stale.
//!
//! A write whose `fsync`/`close` failed, or whose answer was lost, may land at any moment
//! after it started: it is never stale and never makes another write stale.

use std::collections::HashMap;

use crate::history::{Content, Op, Record, Ret, excerpt};

/// What a successful check saw.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub reads: usize,
    /// Reads that started after some committed write of their inode had closed: the reads
    /// the rule constrains.
    pub constrained: usize,
    /// Empty or unrecognised reads explained by a write overlapping them.
    pub torn_by_concurrent_write: usize,
    /// Reads of writes' bytes layered (their writers all truncated before any wrote).
    pub mixed: usize,
}

struct WriteInfo<'a> {
    rec: &'a Record,
    /// `None`: the open's answer was lost, so the inode is unknown.
    ino: Option<u64>,
    committed: bool,
}

/// Checks every read in `history`; `Err` is a readable report of the first violation.
pub fn check(history: &[Record]) -> Result<Stats, String> {
    let mut by_tag: HashMap<u64, WriteInfo> = HashMap::new();
    for r in history {
        let Op::Write { tag, .. } = r.op else {
            continue;
        };
        let (ino, committed) = match &r.ret {
            Ret::Wrote { ino, committed } => (Some(*ino), committed.is_ok()),
            Ret::Unknown(_) => (None, false),
            _ => continue, // the open failed: nothing was written
        };
        by_tag.insert(
            tag,
            WriteInfo {
                rec: r,
                ino,
                committed,
            },
        );
    }
    let mut stats = Stats::default();
    for r in history {
        let Ret::Read { ino, content } = &r.ret else {
            continue;
        };
        stats.reads += 1;
        // Writes that may be of this inode.
        let of_ino: Vec<&WriteInfo> = by_tag
            .values()
            .filter(|w| w.ino.is_none_or(|i| i == *ino))
            .collect();
        let committed_before =
            |w: &WriteInfo| w.committed && w.ino == Some(*ino) && w.rec.end < r.start;
        if of_ino.iter().any(|w| committed_before(w)) {
            stats.constrained += 1;
        }
        let overlapping: Vec<&&WriteInfo> = of_ino
            .iter()
            .filter(|w| w.rec.start <= r.end && (!w.committed || w.rec.end >= r.start))
            .collect();
        // The write with tag `t`, if this read may return its bytes.
        let may_return =
            |t: u64| -> Result<&WriteInfo, (String, Option<&Record>, Option<&Record>)> {
                let Some(w) = by_tag.get(&t) else {
                    return Err((format!("read tag {t:#x}, which no write wrote"), None, None));
                };
                if w.ino.is_some_and(|i| i != *ino) {
                    let why = "read the bytes of a write to another inode";
                    return Err((why.into(), Some(w.rec), None));
                }
                if w.rec.start > r.end {
                    let why = "read bytes written after the read ended";
                    return Err((why.into(), Some(w.rec), None));
                }
                if w.committed
                    && let Some(w2) = of_ino
                        .iter()
                        .find(|w2| committed_before(w2) && w2.rec.start > w.rec.end)
                {
                    let why = "STALE: a later write had closed before this read opened";
                    return Err((why.into(), Some(w.rec), Some(w2.rec)));
                }
                Ok(w)
            };
        let verdict = match content {
            Content::Tag(t) => may_return(*t).map(drop),
            Content::Mixed(layers) => layers
                .iter()
                .map(|t| may_return(*t))
                .collect::<Result<Vec<_>, _>>()
                .and_then(|ws| {
                    // Every one truncated before any wrote: each pair overlapped, or one is
                    // still being written while this read runs.
                    let apart = ws.iter().enumerate().find_map(|(i, a)| {
                        let b = ws[i + 1..]
                            .iter()
                            .find(|b| a.rec.start > b.rec.end || b.rec.start > a.rec.end)?;
                        Some((a, b))
                    });
                    match apart {
                        Some((a, b)) if overlapping.is_empty() => {
                            let why = "read writes' bytes layered, but two of them did not overlap";
                            Err((why.into(), Some(a.rec), Some(b.rec)))
                        }
                        _ => {
                            stats.mixed += 1;
                            Ok(())
                        }
                    }
                }),
            Content::Empty | Content::Other(..) => {
                if !overlapping.is_empty() {
                    stats.torn_by_concurrent_write += 1;
                    Ok(())
                } else if *content != Content::Empty {
                    let why = "read bytes no write wrote, with no write in progress";
                    Err((why.into(), None, None))
                } else if let Some(w) = of_ino.iter().find(|w| committed_before(w)) {
                    let why = "read nothing, after a write had closed, with no write in progress";
                    Err((why.into(), Some(w.rec), None))
                } else {
                    Ok(())
                }
            }
        };
        if let Err((why, w, w2)) = verdict {
            return Err(report(history, r, &why, [w, w2]));
        }
    }
    Ok(stats)
}

fn report(history: &[Record], read: &Record, why: &str, writes: [Option<&Record>; 2]) -> String {
    let mut out = format!("CLOSE-TO-OPEN VIOLATED: {why}\n  read:   {read}\n");
    for w in writes.iter().flatten() {
        out.push_str(&format!("  write:  {w}\n"));
    }
    let mut names = read.op.names();
    let mut from = read.start;
    for w in writes.iter().flatten() {
        names.extend(w.op.names());
        from = from.min(w.start);
    }
    out.push_str("Calls on these names around them:\n");
    for e in excerpt(history, &names, (from, read.end), 8) {
        let mark = if e.id == read.id { ">>" } else { "  " };
        out.push_str(&format!("{mark}{e}\n"));
    }
    // The inode may have had other names (renames): its own history, by inode number.
    if let Ret::Read { ino, .. } = read.ret {
        let on_ino: Vec<&Record> = history
            .iter()
            .filter(|r| r.start <= read.end && inode_of(r) == Some(ino))
            .collect();
        out.push_str(&format!("Last calls that showed inode {ino}:\n"));
        for e in &on_ino[on_ino.len().saturating_sub(12)..] {
            let mark = if e.id == read.id { ">>" } else { "  " };
            out.push_str(&format!("{mark}{e}\n"));
        }
    }
    out
}

fn inode_of(r: &Record) -> Option<u64> {
    match r.ret {
        Ret::Ino(i) | Ret::Wrote { ino: i, .. } | Ret::Read { ino: i, .. } => Some(i),
        Ret::Stat { ino, .. } => Some(ino),
        _ => None,
    }
}
