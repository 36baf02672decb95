//! The sequential model of the checked namespace: what each call must answer from a given
//! state, as Linux answers it on a local file system.
//!
//! The state maps every name to nothing, a file or a directory, with the inode number the
//! file system showed for it (`None` until a call reveals it: a directory made by `mkdir`,
//! a file made by a call whose answer was lost). File contents are not modelled here:
//! [`crate::close_to_open`] checks them per inode, because a write is several syscalls
//! whose intermediate states (the truncation) other mounts may see.

use nix::errno::Errno;

use crate::history::{Kind, Name, Op, Ret};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub kind: Kind,
    pub ino: Option<u64>,
}

/// Every name's node. Entries `dN/fM` live at `entries[N * files + M]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    files: u8,
    dirs: Vec<Option<Node>>,
    entries: Vec<Option<Node>>,
    /// For each entry name, the node a rename last took away from it (see [`rename`]).
    renamed_away: Vec<Option<Node>>,
}

const ENOENT: i32 = Errno::ENOENT as i32;
const EEXIST: i32 = Errno::EEXIST as i32;
const EISDIR: i32 = Errno::EISDIR as i32;
const ENOTDIR: i32 = Errno::ENOTDIR as i32;
const ENOTEMPTY: i32 = Errno::ENOTEMPTY as i32;

/// The errnos the model explains; any other error is an unknown outcome.
pub fn explained(errno: i32) -> bool {
    [ENOENT, EEXIST, EISDIR, ENOTDIR, ENOTEMPTY].contains(&errno)
}

impl State {
    /// `dirs` existing, empty top directories of `files` entry names each.
    pub fn new(dirs: u8, files: u8) -> State {
        let dir = Some(Node {
            kind: Kind::Dir,
            ino: None,
        });
        State {
            files,
            dirs: vec![dir; dirs as usize],
            entries: vec![None; dirs as usize * files as usize],
            renamed_away: vec![None; dirs as usize * files as usize],
        }
    }

    pub fn get(&self, name: Name) -> Option<&Node> {
        match name {
            Name::Dir(d) => self.dirs[d as usize].as_ref(),
            Name::Entry(d, f) => {
                self.entries[d as usize * self.files as usize + f as usize].as_ref()
            }
        }
    }

    fn renamed_away(&mut self, name: Name) -> Option<&mut Option<Node>> {
        match name {
            Name::Dir(_) => None,
            Name::Entry(d, f) => {
                Some(&mut self.renamed_away[d as usize * self.files as usize + f as usize])
            }
        }
    }

    fn slot(&mut self, name: Name) -> &mut Option<Node> {
        match name {
            Name::Dir(d) => &mut self.dirs[d as usize],
            Name::Entry(d, f) => &mut self.entries[d as usize * self.files as usize + f as usize],
        }
    }

    /// The entry names present in top directory `d`, sorted.
    fn listing(&self, d: u8) -> Vec<String> {
        (0..self.files)
            .filter(|f| self.get(Name::Entry(d, *f)).is_some())
            .map(|f| format!("f{f}"))
            .collect()
    }

    fn parent_exists(&self, name: Name) -> bool {
        match name {
            Name::Dir(_) => true,
            Name::Entry(d, _) => self.dirs[d as usize].is_some(),
        }
    }

    /// One line per name that exists, for violation reports.
    pub fn describe(&self, only: &[Name]) -> String {
        let mut names: Vec<Name> = (0..self.dirs.len() as u8).map(Name::Dir).collect();
        for d in 0..self.dirs.len() as u8 {
            names.extend((0..self.files).map(|f| Name::Entry(d, f)));
        }
        let parts: Vec<String> = names
            .into_iter()
            .filter(|n| only.is_empty() || only.iter().any(|o| o == n || o.dir() == n.dir()))
            .map(|n| match self.get(n) {
                None => format!("{n}: -"),
                Some(node) => format!(
                    "{n}: {:?}{}",
                    node.kind,
                    node.ino.map(|i| format!(" {i}")).unwrap_or_default()
                ),
            })
            .collect();
        parts.join(", ")
    }
}

/// `Some(state after)` if `op` may answer `ret` in `state`, else `None`.
///
/// For an unknown outcome the call takes effect with whatever answer the model gives
/// (whether the call happened at all is the search's business, not the model's).
pub fn step(state: &State, op: &Op, ret: &Ret) -> Option<State> {
    let (answer, next) = apply(state, op);
    if let Ret::Unknown(_) = ret {
        return Some(next);
    }
    let next = matches(state, &answer, ret, op)?.unwrap_or(next);
    Some(next)
}

/// What the model answers. `Ino(None)`: an inode the model does not know yet.
#[derive(Debug)]
enum Answer {
    Ok,
    Err(&'static [i32]),
    /// One of the errors, or success without any change (see [`rename`]).
    ErrOrNothing(&'static [i32]),
    File(Option<u64>),
    Node(Kind, Option<u64>),
    Names(Vec<String>),
    /// A new file whose inode number the call's answer tells.
    Created,
}

/// Whether the observed `ret` fits the model's `answer`: `None` if not; `Some(Some(s))`
/// if it fits and teaches the model an inode number (state `s` records it).
fn matches(state: &State, answer: &Answer, ret: &Ret, op: &Op) -> Option<Option<State>> {
    let name = op.names()[0];
    let learn = |seen: u64, known: Option<u64>| -> Option<Option<State>> {
        match known {
            Some(k) if k == seen => Some(None),
            Some(_) => None,
            None => {
                let mut s = state.clone();
                if let Some(n) = s.slot(name).as_mut() {
                    n.ino = Some(seen);
                }
                Some(Some(s))
            }
        }
    };
    match (answer, ret) {
        (Answer::Ok, Ret::Ok) => Some(None),
        (Answer::Err(allowed) | Answer::ErrOrNothing(allowed), Ret::Err(e))
            if allowed.contains(e) =>
        {
            Some(None)
        }
        (Answer::ErrOrNothing(_), Ret::Ok) => Some(None),
        // A directory this small is listed as of one instant (the mount keeps a listing
        // read whole at offset 0 for the rest of the scan), so no name comes twice and a
        // renamed entry never shows under both names.
        (Answer::Names(want), Ret::Names(got)) if want == got => Some(None),
        (Answer::Created, Ret::Ino(seen)) => {
            let mut s = state.clone();
            *s.slot(name) = Some(Node {
                kind: Kind::File,
                ino: Some(*seen),
            });
            Some(Some(s))
        }
        (Answer::File(known), Ret::Ino(seen))
        | (Answer::File(known), Ret::Wrote { ino: seen, .. })
        | (Answer::File(known), Ret::Read { ino: seen, .. }) => learn(*seen, *known),
        (Answer::Node(kind, known), Ret::Stat { kind: k, ino }) if kind == k => learn(*ino, *known),
        _ => None,
    }
}

/// The model's answer to `op` in `state` and the state after it.
fn apply(state: &State, op: &Op) -> (Answer, State) {
    let mut next = state.clone();
    let missing_parent = op.names().iter().any(|n| !state.parent_exists(*n));
    if missing_parent {
        return (Answer::Err(&[ENOENT]), next);
    }
    let answer = match op {
        Op::Create { name, excl } => match state.get(*name) {
            None => {
                // Until the answer says which inode, the model knows there is a file.
                *next.slot(*name) = Some(Node {
                    kind: Kind::File,
                    ino: None,
                });
                Answer::Created
            }
            Some(_) if *excl => Answer::Err(&[EEXIST]),
            Some(Node {
                kind: Kind::Dir, ..
            }) => Answer::Err(&[EISDIR]),
            Some(n) => Answer::File(n.ino),
        },
        Op::Write { name, .. } => match state.get(*name) {
            None => Answer::Err(&[ENOENT]),
            Some(Node {
                kind: Kind::Dir, ..
            }) => Answer::Err(&[EISDIR]),
            Some(n) => Answer::File(n.ino),
        },
        Op::Read { name } => match state.get(*name) {
            None => Answer::Err(&[ENOENT]),
            // open(O_RDONLY) of a directory succeeds; read(2) then fails with EISDIR.
            Some(n) if n.kind == Kind::Dir => Answer::Err(&[EISDIR]),
            Some(n) => Answer::File(n.ino),
        },
        Op::Stat { name } => match state.get(*name) {
            None => Answer::Err(&[ENOENT]),
            Some(n) => Answer::Node(n.kind, n.ino),
        },
        Op::Readdir { name } => match (name, state.get(*name)) {
            (_, None) => Answer::Err(&[ENOENT]),
            (_, Some(n)) if n.kind == Kind::File => Answer::Err(&[ENOTDIR]),
            (Name::Dir(d), Some(_)) => Answer::Names(state.listing(*d)),
            // Directories made in entry slots stay empty: nothing is created inside them.
            (Name::Entry(..), Some(_)) => Answer::Names(Vec::new()),
        },
        Op::Unlink { name } => match state.get(*name) {
            None => Answer::Err(&[ENOENT]),
            // Linux answers unlink(2) of a directory with EISDIR (POSIX allows EPERM).
            Some(n) if n.kind == Kind::Dir => Answer::Err(&[EISDIR]),
            Some(_) => {
                *next.slot(*name) = None;
                Answer::Ok
            }
        },
        Op::Mkdir { name } => match state.get(*name) {
            Some(_) => Answer::Err(&[EEXIST]),
            None => {
                *next.slot(*name) = Some(Node {
                    kind: Kind::Dir,
                    ino: None,
                });
                Answer::Ok
            }
        },
        Op::Rmdir { name } => match state.get(*name) {
            None => Answer::Err(&[ENOENT]),
            Some(n) if n.kind == Kind::File => Answer::Err(&[ENOTDIR]),
            // POSIX allows EEXIST for a non-empty directory; Linux says ENOTEMPTY.
            Some(_) if matches!(name, Name::Dir(d) if !state.listing(*d).is_empty()) => {
                Answer::Err(&[ENOTEMPTY, EEXIST])
            }
            Some(_) => {
                *next.slot(*name) = None;
                Answer::Ok
            }
        },
        Op::Rename { from, to } => rename(state, &mut next, *from, *to),
    };
    (answer, next)
}

/// rename(2) between entry names (top directories are never renamed). Entry directories
/// are always empty, so a directory may replace a directory.
///
/// One answer no instant explains is Linux's: the kernel looks the source up, then the
/// target, and if both lead to the same inode it answers success without asking the file
/// system (two names of one file). Across mounts the two lookups may straddle another
/// mount's rename of that inode from the source to the target: the source's lookup still
/// saw it there, the target's sees it arrived. So a rename whose source is gone may also
/// succeed, changing nothing, when the target holds the very inode a rename took from the
/// source.
fn rename(state: &State, next: &mut State, from: Name, to: Name) -> Answer {
    let Some(src) = state.get(from) else {
        let mut probe = state.clone();
        let taken = probe.renamed_away(from).and_then(|t| t.clone());
        // The same inode at the target: by number, or (a directory made by `mkdir`, whose
        // number no call showed) a node of the same kind whose number is unknown too.
        let same = match (taken, state.get(to)) {
            (Some(t), Some(n)) => t.kind == n.kind && t.ino == n.ino,
            _ => false,
        };
        if same {
            return Answer::ErrOrNothing(&[ENOENT]);
        }
        return Answer::Err(&[ENOENT]);
    };
    if from == to {
        return Answer::Ok;
    }
    match (src.kind, state.get(to).map(|n| n.kind)) {
        (Kind::Dir, Some(Kind::File)) => Answer::Err(&[ENOTDIR]),
        (Kind::File, Some(Kind::Dir)) => Answer::Err(&[EISDIR]),
        _ => {
            let moved = src.clone();
            *next.slot(to) = next.slot(from).take();
            if let Some(t) = next.renamed_away(from) {
                *t = Some(moved);
            }
            Answer::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Name = Name::Entry(0, 0);
    const B: Name = Name::Entry(1, 0);

    fn run(state: &State, op: Op, ret: Ret) -> Option<State> {
        step(state, &op, &ret)
    }

    #[test]
    fn create_then_exclusive_create_fails_and_rename_moves_the_inode() {
        let s = State::new(2, 2);
        let s = run(
            &s,
            Op::Create {
                name: A,
                excl: true,
            },
            Ret::Ino(7),
        )
        .expect("create");
        assert!(
            run(
                &s,
                Op::Create {
                    name: A,
                    excl: true
                },
                Ret::Err(EEXIST)
            )
            .is_some()
        );
        assert!(
            run(
                &s,
                Op::Create {
                    name: A,
                    excl: true
                },
                Ret::Ino(7)
            )
            .is_none()
        );
        assert!(
            run(
                &s,
                Op::Create {
                    name: A,
                    excl: false
                },
                Ret::Ino(8)
            )
            .is_none()
        );
        let s = run(&s, Op::Rename { from: A, to: B }, Ret::Ok).expect("rename");
        let stat = |ino| Ret::Stat {
            kind: Kind::File,
            ino,
        };
        assert!(run(&s, Op::Stat { name: B }, stat(7)).is_some());
        assert!(run(&s, Op::Stat { name: B }, stat(8)).is_none());
        assert!(run(&s, Op::Stat { name: A }, Ret::Err(ENOENT)).is_some());
    }

    #[test]
    fn a_rename_that_met_its_own_move_may_succeed_without_effect() {
        let (a, b, c) = (Name::Entry(0, 0), Name::Entry(1, 0), Name::Entry(1, 1));
        let s = State::new(2, 2);
        let create = |name| Op::Create { name, excl: true };
        let s = run(&s, create(a), Ret::Ino(7)).expect("create");
        let s = run(&s, create(c), Ret::Ino(8)).expect("create");
        let s = run(&s, Op::Rename { from: a, to: b }, Ret::Ok).expect("rename");
        // The same rename again, raced by the first: success that changes nothing.
        let again = run(&s, Op::Rename { from: a, to: b }, Ret::Ok).expect("no-op");
        assert_eq!(again, s);
        assert!(run(&s, Op::Rename { from: a, to: b }, Ret::Err(ENOENT)).is_some());
        // Not when the target holds another inode, nor from a name nothing left.
        assert!(run(&s, Op::Rename { from: a, to: c }, Ret::Ok).is_none());
        assert!(run(&s, Op::Rename { from: c, to: a }, Ret::Ok).is_some());
        assert!(
            run(
                &s,
                Op::Rename {
                    from: Name::Entry(0, 1),
                    to: b
                },
                Ret::Ok
            )
            .is_none()
        );
        // A directory from mkdir: no number known, matched by kind.
        let (d, e) = (Name::Entry(0, 1), Name::Entry(1, 1));
        let s = run(&s, Op::Unlink { name: c }, Ret::Ok).expect("unlink");
        let s = run(&s, Op::Mkdir { name: d }, Ret::Ok).expect("mkdir");
        let s = run(&s, Op::Rename { from: d, to: e }, Ret::Ok).expect("rename");
        assert!(run(&s, Op::Rename { from: d, to: e }, Ret::Ok).is_some());
        assert!(run(&s, Op::Rename { from: d, to: b }, Ret::Ok).is_none());
    }

    #[test]
    fn rmdir_of_a_non_empty_directory_and_errors_by_kind() {
        let s = State::new(2, 2);
        let s = run(&s, Op::Mkdir { name: A }, Ret::Ok).expect("mkdir");
        let rmdir = Op::Rmdir { name: Name::Dir(0) };
        assert!(run(&s, rmdir.clone(), Ret::Err(ENOTEMPTY)).is_some());
        assert!(run(&s, rmdir, Ret::Ok).is_none());
        assert!(run(&s, Op::Unlink { name: A }, Ret::Err(EISDIR)).is_some());
        let s = run(
            &s,
            Op::Create {
                name: B,
                excl: false,
            },
            Ret::Ino(3),
        )
        .expect("create");
        assert!(run(&s, Op::Rename { from: A, to: B }, Ret::Err(ENOTDIR)).is_some());
        assert!(run(&s, Op::Rename { from: B, to: A }, Ret::Err(EISDIR)).is_some());
        assert!(run(&s, Op::Rmdir { name: B }, Ret::Err(ENOTDIR)).is_some());
        let listing = Ret::Names(vec!["f0".into()]);
        assert!(run(&s, Op::Readdir { name: Name::Dir(1) }, listing.clone()).is_some());
        assert!(run(&s, Op::Readdir { name: Name::Dir(0) }, listing).is_some());
        assert!(run(&s, Op::Readdir { name: Name::Dir(0) }, Ret::Names(vec![])).is_none());
    }

    #[test]
    fn a_missing_parent_fails_every_entry_call_with_enoent() {
        let s = State::new(1, 1);
        let s = run(&s, Op::Rmdir { name: Name::Dir(0) }, Ret::Ok).expect("rmdir");
        assert!(
            run(
                &s,
                Op::Create {
                    name: A,
                    excl: true
                },
                Ret::Err(ENOENT)
            )
            .is_some()
        );
        assert!(run(&s, Op::Mkdir { name: A }, Ret::Err(ENOENT)).is_some());
        assert!(run(&s, Op::Stat { name: Name::Dir(0) }, Ret::Err(ENOENT)).is_some());
    }
}
