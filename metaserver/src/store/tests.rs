use super::*;
use tessera_namespace::{MemStore, Op, Query, Response, query};
use tessera_proto::fs::FsError;

fn cmd(session: u64, seq: u64, now_ns: i64, op: Op) -> Command {
    Command {
        session,
        seq,
        seq_floor: 0,
        now_ns,
        op,
    }
}

fn script() -> Vec<(LogPos, Command)> {
    let ops = vec![
        cmd(
            0,
            0,
            1,
            Op::Format {
                uid: 0,
                gid: 0,
                perm: 0o755,
            },
        ),
        cmd(
            0,
            0,
            2,
            Op::OpenSession {
                client: "c".into(),
                lease_ns: 100,
            },
        ),
        cmd(
            1,
            1,
            3,
            Op::Mkdir {
                parent: 1,
                name: "d".into(),
                perm: 0o700,
                uid: 5,
                gid: 5,
            },
        ),
        cmd(
            1,
            2,
            4,
            Op::Mkdir {
                parent: 1,
                name: "d".into(),
                perm: 0o700,
                uid: 5,
                gid: 5,
            },
        ),
        cmd(
            1,
            3,
            5,
            Op::Unlink {
                parent: 1,
                name: "d".into(),
            },
        ),
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, c)| {
            (
                LogPos {
                    term: 1,
                    index: i as u64 + 1,
                },
                c,
            )
        })
        .collect()
}

#[test]
fn batch_matches_the_memory_store_byte_for_byte() {
    let entries = script();
    let mut mem = MemStore::new();
    let mem_replies: Vec<Reply> = entries
        .iter()
        .map(|(_, c)| apply(&mut mem, c).unwrap())
        .collect();
    let mut db = RedbStore::in_memory().unwrap();
    let replies = db.apply_batch(&entries[..2]).unwrap();
    let mut all = replies;
    all.extend(db.apply_batch(&entries[2..]).unwrap());
    assert_eq!(all, mem_replies);
    assert_eq!(all[3], Err(FsError::Exists));
    assert_eq!(db.digest().unwrap(), digest(&mem).unwrap());
    assert_eq!(
        db.last_applied().unwrap(),
        Some(LogPos { term: 1, index: 5 })
    );
    let view = db.read_view().unwrap();
    assert!(matches!(
        query(
            &view,
            &Query::Lookup {
                parent: 1,
                name: "d".into()
            }
        ),
        Ok(Ok(Response::Attr(_)))
    ));
}

#[test]
fn replaying_applied_entries_is_harmless() {
    let entries = script();
    let mut db = RedbStore::in_memory().unwrap();
    let first = db.apply_batch(&entries).unwrap();
    let state = db.digest().unwrap();
    let again = db.apply_batch(&entries).unwrap();
    assert_eq!(db.digest().unwrap(), state);
    // Deduplicated commands get their first reply; the others cannot be answered.
    assert_eq!(again[2..], first[2..]);
    assert_eq!(again[0], Err(FsError::Stale));
}

#[test]
fn state_survives_reopen() {
    let path = std::env::temp_dir().join(format!("tessera-meta-test-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let entries = script();
    let state = {
        let mut db = RedbStore::open(&path).unwrap();
        db.apply_batch(&entries).unwrap();
        db.digest().unwrap()
    };
    let db = RedbStore::open(&path).unwrap();
    assert_eq!(db.digest().unwrap(), state);
    assert_eq!(db.last_applied().unwrap().map(|p| p.index), Some(5));
    drop(db);
    std::fs::remove_file(&path).unwrap();
}
