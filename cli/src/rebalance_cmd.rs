//! `tessera rebalance`: ask the leader for a rebalance round now, show how far the
//! chunkservers' used fractions are from the mean, and with `--wait` follow the moves until
//! every server is within the band.

use clap::Args;
use std::time::{Duration, Instant};
use tessera_client::cluster::Retry;
use tessera_proto::meta::{Rebalance, RebalanceRequest, RebalanceStatus};

use crate::cluster::{ClusterArgs, runtime};
use crate::progress::Progress;
use crate::units;

/// Flags of `tessera rebalance`.
#[derive(Debug, Args)]
pub struct RebalanceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Wait until every chunkserver is within the band, showing the moves' progress.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long, in ms (rebalancing continues on the leader).
    #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
    wait_ms: u64,
    /// Only report; do not start a round.
    #[arg(long)]
    status: bool,
    /// Print the leader's answer as JSON (once, without waiting).
    #[arg(long)]
    json: bool,
}

/// One line on where rebalancing stands, for this command and `tessera status`.
pub fn describe(s: &RebalanceStatus) -> String {
    let spread = format!(
        "spread {:.1}% of capacity (band {:.1}%)",
        s.spread * 100.0,
        s.band * 100.0
    );
    let moved = if s.moved_shards > 0 || s.failed_moves > 0 {
        format!(
            "; {} shards moved, {} moves failed since the leader started",
            s.moved_shards, s.failed_moves
        )
    } else {
        String::new()
    };
    if s.balanced && !s.running {
        format!("balanced: {spread}{moved}")
    } else if s.running && s.planned_bytes > 0 {
        format!(
            "moving shards: {} of {} this round, {spread}{moved}",
            units::bytes(s.moved_bytes),
            units::bytes(s.planned_bytes)
        )
    } else if s.running {
        format!("starting: {spread}{moved}")
    } else {
        let how = if s.auto {
            "the leader starts a round within 30 s"
        } else {
            "run `tessera rebalance` to start a round"
        };
        format!("out of band: {spread}; {how}{moved}")
    }
}

pub fn run(args: RebalanceArgs) -> anyhow::Result<bool> {
    let meta = args.cluster.admin_client()?;
    let once = Retry::once(args.cluster.timeout(5_000));
    let ask = |start: bool| {
        let (meta, once) = (&meta, &once);
        async move {
            meta.cluster()
                .call::<Rebalance, _, _>(&RebalanceRequest { start }, once)
                .await
        }
    };
    runtime()?.block_on(async {
        let first: RebalanceStatus = ask(!args.status).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&first)?);
            return Ok(true);
        }
        if !args.wait {
            println!("{}", describe(&first));
            return Ok(true);
        }
        let deadline = Instant::now() + Duration::from_millis(args.wait_ms);
        let mut bar = Progress::lines();
        let mut status = first;
        loop {
            bar.show(
                &describe(&status),
                (status.planned_bytes > 0).then_some((status.moved_bytes, status.planned_bytes)),
            );
            if status.balanced && !status.running {
                bar.finish();
                println!("every chunkserver is within the band");
                return Ok(true);
            }
            if Instant::now() >= deadline {
                bar.finish();
                println!("gave up waiting; rebalancing continues on the leader");
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Asking again when nothing runs and the servers are out of band carries the
            // request over a leader change (a new leader starts with no request).
            let again = !args.status && !status.running && !status.balanced;
            status = ask(again).await?;
        }
    })
}
