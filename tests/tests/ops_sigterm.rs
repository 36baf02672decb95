//! Every process stops promptly on SIGTERM, so a supervisor or `scripts/dev-cluster.sh down`
//! never waits: a mount (after unmounting and flushing), a chunkserver and a metaserver each
//! exit within 1 s, with status 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};
use tessera_tests::mount::DevCluster;

/// The longest a process may take to exit after SIGTERM.
const PROMPT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_exits_within_a_second_of_sigterm() {
    let mut c = DevCluster::start_with("sigterm", 3, 6, "4+2", 1).await;
    // Something buffered and open, so the mount has work to finish.
    std::fs::write(c.mount(0).join("f"), vec![7u8; 300_000]).unwrap();

    let mut took = Vec::new();
    let mount = c.mounts[0].process_mut().unwrap();
    let started = Instant::now();
    let status = mount.terminate(Duration::from_secs(10));
    took.push(("mount", started.elapsed(), status));

    let started = Instant::now();
    let status = c.chunks[0].process.terminate(Duration::from_secs(10));
    took.push(("chunkserver", started.elapsed(), status));

    let member = *c.meta.members.keys().next().unwrap();
    let meta = c.meta.members.get_mut(&member).unwrap();
    let started = Instant::now();
    let status = meta.process.terminate(Duration::from_secs(10));
    took.push(("metaserver", started.elapsed(), status));

    for (role, t, status) in &took {
        eprintln!(
            "{role}: exited {status} {:.3} s after SIGTERM",
            t.as_secs_f64()
        );
    }
    for (role, t, status) in took {
        assert!(status.success(), "{role} exited {status}");
        assert!(t <= PROMPT, "{role} took {t:?} to exit after SIGTERM");
    }
}
