//! Identity and membership (issue 4, acceptance 5): a restart keeps the chunkserver id and
//! its shards and registers again; `NotLeader` hints are followed; an unreachable metadata
//! service does not stop the chunk service; clean exit on SIGTERM; a data directory of an
//! unknown format is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tessera_proto::chunk::PutOutcome;
use tessera_tests::chunk::{ChunkOptions, Chunkserver, shard};
use tessera_tests::fake_meta::Role;
use tessera_tests::process::write_secret;
use tessera_tests::{FakeMeta, TempDir, TesseraProcess, free_port};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_the_id_and_shards_and_registers_again() {
    let dir = TempDir::new("chunk-restart");
    let (path, secret) = write_secret(dir.path());
    let meta = FakeMeta::start(&secret).await;
    let opts = ChunkOptions {
        meta: vec![meta.addr()],
        ..ChunkOptions::default()
    };
    let mut server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let first = meta.wait_registrations(WAIT, 1).await[0].clone();
    assert_ne!(first.id, 0);
    assert_eq!(first.addr, server.addr);
    assert!(first.capacity > 0);

    let c = server.client();
    let shards: Vec<_> = (0..5).map(|s| shard(70_000 * (s + 1), s as u64)).collect();
    for (id, data) in &shards {
        c.put(*id, data.clone()).await.unwrap();
    }
    meta.wait_heartbeat(WAIT, |h| h.id == first.id && h.shards == 5)
        .await;

    // A clean stop on SIGTERM, then the same id, the same shards, a new registration.
    let status = server.process.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(server.process.log().contains("chunkserver stopped"));
    server.restart().await;
    let regs = meta.wait_registrations(WAIT, 2).await;
    assert_eq!(
        regs[1].id, first.id,
        "a restart must keep the chunkserver id"
    );
    assert_eq!(regs[1].shards, 5);
    let c = server.client();
    for (id, data) in &shards {
        assert!(c.get(*id, None).await.unwrap() == *data);
    }
    let beats = meta.heartbeats().len();
    meta.wait_heartbeat_since(beats, WAIT, |h| h.id == first.id && h.shards == 5)
        .await;

    // And after a crash.
    server.kill9();
    server.restart().await;
    let regs = meta.wait_registrations(WAIT, 3).await;
    assert_eq!(regs[2].id, first.id);

    // A leader that lost our registration gets a new one instead of silence.
    meta.forget_registrations();
    let regs = meta.wait_registrations(WAIT, 4).await;
    assert_eq!(regs[3].id, first.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_leader_hints_are_followed() {
    let dir = TempDir::new("chunk-notleader");
    let (path, secret) = write_secret(dir.path());
    let leader = FakeMeta::start(&secret).await;
    let follower = FakeMeta::start_on(
        "127.0.0.1:0",
        &secret,
        Role::Follower {
            hint: Some(leader.addr()),
        },
    )
    .await;
    // Only the follower is named: the leader is found through its hint.
    let opts = ChunkOptions {
        meta: vec![follower.addr()],
        ..ChunkOptions::default()
    };
    let _server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let reg = leader.wait_registrations(WAIT, 1).await[0].clone();
    leader.wait_heartbeat(WAIT, |h| h.id == reg.id).await;
    assert!(follower.refused() >= 1);
    assert!(follower.registrations().is_empty());

    // Leadership moves back to the first one: the old leader's hint leads there.
    follower.set_role(Role::Leader);
    leader.set_role(Role::Follower {
        hint: Some(follower.addr()),
    });
    let moved = follower.wait_registrations(WAIT, 1).await[0].clone();
    assert_eq!(moved.id, reg.id);
    follower.wait_heartbeat(WAIT, |h| h.id == reg.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_without_a_metadata_service_and_registers_when_it_appears() {
    let dir = TempDir::new("chunk-nometa");
    let (path, secret) = write_secret(dir.path());
    let meta_addr = format!("127.0.0.1:{}", free_port());
    let opts = ChunkOptions {
        meta: vec![meta_addr.clone()],
        heartbeat_ms: 50,
        ..ChunkOptions::default()
    };
    let server =
        Chunkserver::start(&dir, "chunk", &dir.join("data"), (&path, &secret), &opts).await;
    let c = server.client();
    let (id, data) = shard(10_000, 1);
    assert_eq!(c.put(id, data.clone()).await, Ok(PutOutcome::Stored));
    assert!(c.get(id, None).await.unwrap() == data);
    // Many ticks pass; the outage is logged once, not on every tick.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = server.process.log();
    assert_eq!(
        log.matches("no metadata leader reachable").count(),
        1,
        "log:\n{log}"
    );

    let meta = FakeMeta::start_on(&meta_addr, &secret, Role::Leader).await;
    let reg = meta.wait_registrations(WAIT, 1).await[0].clone();
    assert_eq!(reg.shards, 1);
    meta.wait_heartbeat(WAIT, |h| h.id == reg.id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_data_format_is_refused_with_one_line() {
    let dir = TempDir::new("chunk-format");
    let (path, _) = write_secret(dir.path());
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("FORMAT"), "tessera-chunk-data 99\n").unwrap();
    let mut p = TesseraProcess::spawn(
        "chunk",
        dir.path(),
        [
            "chunk",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data",
            data.to_str().unwrap(),
            "--meta",
            "127.0.0.1:1",
            "--secret-file",
            path.to_str().unwrap(),
        ],
    );
    let status = p.wait_exit(Duration::from_secs(10));
    assert!(!status.success());
    let log = p.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("tessera: ")).collect();
    assert_eq!(errors.len(), 1, "log:\n{log}");
    assert!(errors[0].contains("tessera-chunk-data 99"), "{}", errors[0]);
    assert!(
        !log.contains("panicked") && !log.contains("backtrace"),
        "{log}"
    );
    // Nothing was created in the refused directory.
    assert!(!data.join("shards").exists());
}
