//! Hand-written histories for the consistency checkers: valid concurrent ones they must
//! accept, and broken ones they must reject (a checker that accepts everything is worth
//! nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::errno::Errno;

use crate::close_to_open;
use crate::history::{Content, Kind, Name, Op, Record, Ret, merge};
use crate::linearize;
use crate::ns_model::State;

const A: Name = Name::Entry(0, 0);
const B: Name = Name::Entry(1, 1);
const ENOENT: i32 = Errno::ENOENT as i32;
const EEXIST: i32 = Errno::EEXIST as i32;

fn rec(mount: usize, (start, end): (u64, u64), op: Op, ret: Ret) -> Record {
    Record {
        id: 0,
        mount,
        worker: mount,
        start,
        end,
        op,
        ret,
    }
}

fn lin(records: Vec<Record>) -> Result<linearize::Stats, String> {
    let h = merge([records]);
    linearize::check(&h, State::new(2, 2), 100_000)
}

fn c2o(records: Vec<Record>) -> Result<close_to_open::Stats, String> {
    close_to_open::check(&merge([records]))
}

fn create(mount: usize, t: (u64, u64), name: Name, ret: Ret) -> Record {
    rec(mount, t, Op::Create { name, excl: true }, ret)
}

fn stat(mount: usize, t: (u64, u64), name: Name, ret: Ret) -> Record {
    rec(mount, t, Op::Stat { name }, ret)
}

fn file(ino: u64) -> Ret {
    Ret::Stat {
        kind: Kind::File,
        ino,
    }
}

#[test]
fn a_valid_concurrent_history_is_accepted() {
    let h = vec![
        // Two exclusive creates race; the stat overlapping both may see nothing yet.
        create(0, (0, 10), A, Ret::Ino(5)),
        create(1, (5, 15), A, Ret::Err(EEXIST)),
        stat(2, (2, 8), A, Ret::Err(ENOENT)),
        stat(2, (16, 17), A, file(5)),
        // A rename is seen at its target by one mount before its call returns, and then
        // its source is gone for another.
        rec(0, (20, 100), Op::Rename { from: A, to: B }, Ret::Ok),
        stat(1, (30, 40), B, file(5)),
        stat(2, (50, 60), A, Ret::Err(ENOENT)),
        rec(
            1,
            (61, 62),
            Op::Readdir { name: Name::Dir(1) },
            Ret::Names(vec!["f1".into()]),
        ),
        rec(1, (63, 64), Op::Rmdir { name: Name::Dir(0) }, Ret::Ok),
        stat(2, (65, 66), A, Ret::Err(ENOENT)),
    ];
    let stats = lin(h).expect("a valid history must be accepted");
    assert_eq!(stats.calls, 10);
}

#[test]
fn a_stat_after_an_unlink_ended_that_still_finds_the_file_is_rejected() {
    let h = vec![
        create(0, (0, 10), A, Ret::Ino(5)),
        rec(0, (20, 30), Op::Unlink { name: A }, Ret::Ok),
        stat(1, (31, 32), A, file(5)),
    ];
    let err = lin(h).expect_err("a stale stat must be rejected");
    assert!(err.contains("NOT LINEARIZABLE"), "{err}");
    assert!(err.contains("stat d0/f0"), "{err}");
    assert!(err.contains("unlink d0/f0"), "{err}");
}

#[test]
fn two_exclusive_creates_that_both_succeed_are_rejected() {
    let h = vec![
        create(0, (0, 10), A, Ret::Ino(5)),
        create(1, (1, 11), A, Ret::Ino(6)),
    ];
    assert!(lin(h).is_err());
}

#[test]
fn a_rename_seen_and_then_unseen_is_rejected() {
    // While the rename is in flight, one mount sees the file at its target, and a later
    // stat (starting after that one ended) still sees it at its source.
    let h = vec![
        create(0, (0, 10), A, Ret::Ino(5)),
        rec(0, (20, 100), Op::Rename { from: A, to: B }, Ret::Ok),
        stat(1, (30, 40), B, file(5)),
        stat(2, (50, 60), A, file(5)),
    ];
    assert!(lin(h).is_err());
}

#[test]
fn an_rmdir_of_a_non_empty_directory_that_succeeds_is_rejected() {
    let h = vec![
        create(0, (0, 10), A, Ret::Ino(5)),
        rec(1, (11, 12), Op::Rmdir { name: Name::Dir(0) }, Ret::Ok),
    ];
    assert!(lin(h).is_err());
}

#[test]
fn a_readdir_that_misses_a_created_file_is_rejected() {
    let h = vec![
        create(0, (0, 10), A, Ret::Ino(5)),
        rec(
            1,
            (11, 12),
            Op::Readdir { name: Name::Dir(0) },
            Ret::Names(vec![]),
        ),
    ];
    assert!(lin(h).is_err());
}

#[test]
fn an_unknown_outcome_may_take_effect_late_but_not_be_undone() {
    let lost = || create(0, (0, 5), A, Ret::Unknown("killed".into()));
    let h = vec![
        lost(),
        stat(1, (10, 11), A, Ret::Err(ENOENT)),
        stat(1, (20, 21), A, file(9)),
        stat(2, (22, 23), A, file(9)),
    ];
    lin(h).expect("a lost create may take effect after it ended");
    let h = vec![lost(), stat(1, (10, 11), A, Ret::Err(ENOENT))];
    lin(h).expect("a lost create may never take effect");
    let h = vec![
        lost(),
        stat(1, (20, 21), A, file(9)),
        stat(1, (30, 31), A, Ret::Err(ENOENT)),
    ];
    assert!(lin(h).is_err(), "nothing removed the file");
    let h = vec![
        lost(),
        stat(1, (20, 21), A, file(9)),
        stat(1, (30, 31), A, file(10)),
    ];
    assert!(lin(h).is_err(), "the inode changed by itself");
}

fn write(mount: usize, t: (u64, u64), tag: u64, committed: bool) -> Record {
    let committed = if committed { Ok(()) } else { Err(5) };
    rec(
        mount,
        t,
        Op::Write {
            name: A,
            tag,
            fsync: false,
        },
        Ret::Wrote { ino: 5, committed },
    )
}

fn read(mount: usize, t: (u64, u64), content: Content) -> Record {
    rec(
        mount,
        t,
        Op::Read { name: A },
        Ret::Read { ino: 5, content },
    )
}

#[test]
fn close_to_open_accepts_the_latest_or_a_concurrent_write() {
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (20, 30), 2, true),
        read(2, (25, 35), Content::Tag(1)),
        read(2, (26, 36), Content::Empty),
        read(2, (27, 37), Content::Other(3, "abc".into())),
        read(2, (40, 50), Content::Tag(2)),
        write(0, (45, 60), 3, true),
        read(1, (55, 70), Content::Tag(3)),
    ];
    let stats = c2o(h).expect("valid reads must be accepted");
    assert_eq!(stats.reads, 5);
    assert_eq!(stats.torn_by_concurrent_write, 2);
}

#[test]
fn close_to_open_rejects_a_read_of_old_bytes_after_a_close() {
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (20, 30), 2, true),
        read(2, (40, 50), Content::Tag(1)),
    ];
    let err = c2o(h).expect_err("a stale read must be rejected");
    assert!(err.contains("STALE"), "{err}");
    assert!(err.contains("tag 0x2"), "{err}");
}

#[test]
fn close_to_open_rejects_empty_torn_and_future_reads() {
    let done = || write(0, (0, 10), 1, true);
    assert!(c2o(vec![done(), read(2, (40, 50), Content::Empty)]).is_err());
    assert!(
        c2o(vec![
            done(),
            read(2, (40, 50), Content::Other(2, "x".into()))
        ])
        .is_err()
    );
    assert!(c2o(vec![done(), read(2, (40, 50), Content::Tag(77))]).is_err());
    let future = vec![
        done(),
        read(2, (12, 15), Content::Tag(2)),
        write(1, (20, 30), 2, true),
    ];
    assert!(c2o(future).is_err());
    // An uncommitted write may land late: reading it is fine, and it does not make the
    // earlier committed write stale.
    let uncommitted = vec![
        write(0, (0, 10), 1, false),
        write(1, (20, 30), 2, true),
        read(2, (40, 50), Content::Tag(1)),
    ];
    c2o(uncommitted).expect("an uncommitted write may land at any time");
}

#[test]
fn close_to_open_accepts_two_overlapping_writes_mixed_but_not_two_sequential_ones() {
    let mixed = || read(2, (40, 50), Content::Mixed(vec![1, 2]));
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (5, 15), 2, true),
        mixed(),
    ];
    c2o(h).expect("both truncated before either wrote");
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (20, 30), 2, true),
        mixed(),
    ];
    assert!(
        c2o(h).is_err(),
        "the second write truncated after the first closed"
    );
}

#[test]
fn close_to_open_accepts_three_layers_only_if_every_two_writes_overlapped() {
    let layered = || read(2, (40, 50), Content::Mixed(vec![1, 2, 3]));
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (5, 15), 2, true),
        write(2, (8, 12), 3, true),
        layered(),
    ];
    c2o(h).expect("all three truncated before any wrote");
    let h = vec![
        write(0, (0, 10), 1, true),
        write(1, (5, 25), 2, true),
        write(2, (20, 30), 3, true),
        layered(),
    ];
    assert!(
        c2o(h).is_err(),
        "write 3 truncated after write 1 had closed, so 1's bytes cannot show under 3's"
    );
}

#[test]
fn identify_tells_a_write_a_mix_and_garbage_apart() {
    use crate::mount_workload::{content, identify};
    let (short, long) = (content(3), content(40));
    assert!(short.len() < long.len());
    assert_eq!(identify(&short), Content::Tag(3));
    let mut mix = short.clone();
    mix.extend_from_slice(&long[short.len()..]);
    assert_eq!(identify(&mix), Content::Mixed(vec![3, 40]));
    // Three layers: what three writers that all truncated before any wrote leave.
    let middle = content(20);
    let mut three = short.clone();
    three.extend_from_slice(&middle[short.len()..]);
    three.extend_from_slice(&long[middle.len()..]);
    assert_eq!(identify(&three), Content::Mixed(vec![3, 20, 40]));
    // The top write's bytes cut short at the bottom one's length are no layering.
    let mut cut = short.clone();
    cut.resize(long.len(), b'0');
    assert!(matches!(identify(&cut), Content::Other(..)));
    mix[short.len() + 1] = b'x';
    assert!(matches!(identify(&mix), Content::Other(..)));
    assert_eq!(identify(b""), Content::Empty);
}
