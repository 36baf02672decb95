//! The mount when the metadata service is gone, and when a client dies (issue #6, points 5
//! and 8): calls fail with EIO within the configured wait instead of hanging, the same mount
//! works again once the metaservers are back, and a dead client's flock is released after
//! its session lease.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tessera_tests::fault::{noise, wait_for};
use tessera_tests::mount::DevCluster;

fn is_eio(r: std::io::Result<impl Sized>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc_eio()))
}

const fn libc_eio() -> i32 {
    5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_fail_with_eio_while_no_metaserver_answers_then_work_again() {
    let mut c = DevCluster::start_with("fault-eio", 3, 6, "4+2", 0).await;
    let m = c.add_mount(&["--meta-timeout-ms", "5000", "--attr-ttl-ms", "100"]);
    let path = c.mount(m).join("f");
    let data = noise(1 << 20, 7);
    std::fs::write(&path, &data).unwrap();
    std::fs::create_dir(c.mount(m).join("d")).unwrap();

    for id in 1..=3 {
        c.meta.kill9(id);
    }
    // Past the kernel's attribute cache.
    std::thread::sleep(Duration::from_millis(300));
    let dir = c.mount(m).path().to_path_buf();
    type Check<'a> = Box<dyn Fn() -> bool + 'a>;
    let checks: [(&str, Check); 3] = [
        (
            "stat",
            Box::new(|| is_eio(std::fs::metadata(dir.join("g")))),
        ),
        ("ls", Box::new(|| is_eio(std::fs::read_dir(dir.join("d"))))),
        ("cat", Box::new(|| is_eio(std::fs::read(dir.join("f"))))),
    ];
    for (what, check) in &checks {
        let t = Instant::now();
        assert!(check(), "{what} with no metaserver must fail with EIO");
        let took = t.elapsed();
        eprintln!("{what}: EIO after {:.2} s", took.as_secs_f64());
        assert!(took < Duration::from_secs(15), "{what} took {took:?}");
    }

    for id in 1..=3 {
        c.meta.restart(id).await;
    }
    let got = wait_for(
        "the same mount to serve the file again",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || std::fs::read(&path).ok(),
    )
    .await;
    assert!(got == data, "the file changed across the outage");
    std::fs::write(c.mount(m).join("after"), b"back").unwrap();
    assert_eq!(std::fs::read(c.mount(m).join("after")).unwrap(), b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_clients_flock_is_released_after_its_lease() {
    let mut c = DevCluster::start_with("fault-flock", 3, 6, "4+2", 0).await;
    let a = c.add_mount(&["--session-lease-ms", "3000"]);
    let b = c.add_mount(&[]);
    let file_a = c.mount(a).join("lock");
    std::fs::write(&file_a, b"x").unwrap();
    let file_b = c.mount(b).join("lock");

    let mut holder = Command::new("flock")
        .args(["-x"])
        .arg(&file_a)
        .args(["sleep", "600"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let try_lock = || {
        Command::new("flock")
            .args(["-n", "-x"])
            .arg(&file_b)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    wait_for(
        "the holder to take the lock",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (!try_lock()).then_some(()),
    )
    .await;

    c.mounts[a].kill9();
    let killed = Instant::now();
    wait_for(
        "the other mount to get the lock",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || try_lock().then_some(()),
    )
    .await;
    let took = killed.elapsed();
    eprintln!(
        "lock free {:.2} s after the client was killed (lease 3 s)",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(3 + 5), "took {took:?}");
    let _ = holder.kill();
    let _ = holder.wait();
}
