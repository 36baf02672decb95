//! `tessera status`: the health of the whole cluster in one screen (or one JSON object).
//!
//! Exit status: 0 when every metaserver answers and one leads, every chunkserver is up and
//! every stripe has all its shards; 1 when anything is degraded; 2 when no metaserver answers.

use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;
use tessera_client::cluster::{ClusterClient, Retry};
use tessera_proto::meta::{
    ChunkserverInfo, ChunkserverState, ClusterHealth, ListChunkservers, MetaStatusReply, Rebalance,
    RebalanceRequest, RebalanceStatus, StripeHealth,
};

use crate::cluster::{ClusterArgs, runtime};
use crate::units;

/// Flags of `tessera status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,

    /// Print one JSON object (stable field names, documented in docs/operations.md) instead
    /// of tables [default: tables].
    #[arg(long)]
    json: bool,
}

/// One metadata member in the report.
#[derive(Debug, Serialize)]
struct MetaMember {
    id: u64,
    addr: String,
    /// "leader", "follower", "candidate", "learner" or "down".
    role: String,
    term: Option<u64>,
    last_log_index: Option<u64>,
    applied_index: Option<u64>,
}

/// One chunkserver in the report.
#[derive(Debug, Serialize)]
struct Chunk {
    id: String,
    addr: String,
    /// "up", "suspect" or "down".
    state: &'static str,
    capacity: u64,
    used: u64,
    shards: u64,
    full: bool,
    last_heartbeat_ms: u64,
    /// Being drained: `shards` counts down to 0.
    draining: bool,
}

/// The whole report (`--json` prints exactly this).
#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    meta: Vec<MetaMember>,
    chunkservers: Vec<Chunk>,
    stripes: Option<StripeHealth>,
    /// Shown in the tables only: `--json` keeps its documented fields.
    #[serde(skip)]
    rebalance: Option<RebalanceStatus>,
    /// The trash line (tables only, as `rebalance`).
    #[serde(skip)]
    trash: Option<String>,
}

fn state_name(s: ChunkserverState) -> &'static str {
    match s {
        ChunkserverState::Up => "up",
        ChunkserverState::Suspect => "suspect",
        ChunkserverState::Down => "down",
        ChunkserverState::Unreachable => "unreachable from mounts",
    }
}

async fn gather(args: &StatusArgs, cluster: &ClusterClient) -> anyhow::Result<Report> {
    let timeout = args.cluster.timeout(2_000);
    let answers: BTreeMap<String, MetaStatusReply> =
        cluster.statuses(timeout).await?.into_iter().collect();
    // Members as the group itself lists them, so a member left out of --meta is still shown.
    let mut members: BTreeMap<u64, String> = BTreeMap::new();
    for s in answers.values() {
        members.extend(s.members.iter().cloned());
    }
    let mut meta = Vec::new();
    for (id, addr) in &members {
        let status = match answers.get(addr) {
            Some(s) => Some(s.clone()),
            None => cluster.status_of(addr, timeout).await.ok(),
        };
        meta.push(match status {
            Some(s) => MetaMember {
                id: *id,
                addr: addr.clone(),
                role: s.role,
                term: Some(s.term),
                last_log_index: s.last_log_index,
                applied_index: s.applied_index,
            },
            None => MetaMember {
                id: *id,
                addr: addr.clone(),
                role: "down".into(),
                term: None,
                last_log_index: None,
                applied_index: None,
            },
        });
    }
    let leader = meta
        .iter()
        .find(|m| m.role == "leader")
        .map(|m| m.addr.clone());
    let (mut chunks, mut stripes, mut rebalance, mut trash) = (Vec::new(), None, None, None);
    if leader.is_some() {
        let once = Retry::once(timeout);
        if let Ok(list) = cluster.call::<ListChunkservers, _, _>(&(), &once).await {
            chunks = list.into_iter().map(chunk_row).collect();
        }
        let slow = Retry::once(timeout * 5);
        if let Ok(h) = cluster.call::<ClusterHealth, _, _>(&(), &slow).await {
            stripes = Some(h);
        }
        let ask = RebalanceRequest { start: false };
        rebalance = cluster.call::<Rebalance, _, _>(&ask, &once).await.ok();
        let meta = args.cluster.meta_client(Retry::once(timeout * 5))?;
        trash = crate::trash_cmd::status_line(&meta).await.ok();
    }
    let healthy = leader.is_some()
        && meta.iter().all(|m| m.role != "down")
        && chunks.iter().all(|c| c.state == "up")
        && stripes.is_some_and(|s| s.degraded == 0 && s.lost == 0);
    Ok(Report {
        healthy,
        meta,
        chunkservers: chunks,
        stripes,
        rebalance,
        trash,
    })
}

fn chunk_row(c: ChunkserverInfo) -> Chunk {
    Chunk {
        id: format!("{:016x}", c.id),
        addr: c.addr,
        state: state_name(c.state),
        capacity: c.capacity,
        used: c.used,
        shards: c.shards,
        full: c.full,
        last_heartbeat_ms: c.last_heartbeat_ms,
        draining: c.draining,
    }
}

/// Stripe health, with repair's progress: the share of stripes that have all their shards.
fn stripes_line(s: &StripeHealth) -> String {
    let total = s.healthy + s.degraded + s.lost;
    let mut line = format!(
        "{} healthy, {} degraded, {} lost",
        s.healthy, s.degraded, s.lost
    );
    if s.degraded + s.lost > 0 {
        line.push_str(&format!(
            "; repair: {} of {total} stripes whole ({})",
            s.healthy,
            units::percent(s.healthy, total)
        ));
    }
    line
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn print_tables(r: &Report) {
    println!("metadata servers");
    println!(
        "  {:>3}  {:<22} {:<10} {:>6} {:>10} {:>10}",
        "id", "address", "role", "term", "last log", "applied"
    );
    for m in &r.meta {
        println!(
            "  {:>3}  {:<22} {:<10} {:>6} {:>10} {:>10}",
            m.id,
            m.addr,
            m.role,
            opt(m.term),
            opt(m.last_log_index),
            opt(m.applied_index)
        );
    }
    println!("chunkservers");
    println!(
        "  {:<16}  {:<22} {:<8} {:>11} {:>11} {:>6} {:>8} {:>9}",
        "id", "address", "state", "capacity", "used", "used%", "shards", "last hb"
    );
    for c in &r.chunkservers {
        println!(
            "  {:<16}  {:<22} {:<8} {:>11} {:>11} {:>6} {:>8} {:>7}ms{}",
            c.id,
            c.addr,
            c.state,
            units::bytes(c.capacity),
            units::bytes(c.used),
            units::percent(c.used, c.capacity),
            c.shards,
            c.last_heartbeat_ms,
            match (c.full, c.draining) {
                (true, _) => "  FULL",
                (false, true) => "  DRAINING (shards moving off)",
                (false, false) => "",
            }
        );
    }
    let (capacity, used) = r
        .chunkservers
        .iter()
        .fold((0u64, 0u64), |(c, u), s| (c + s.capacity, u + s.used));
    println!(
        "  total: {} used of {} ({}) on {} chunkservers",
        units::bytes(used),
        units::bytes(capacity),
        units::percent(used, capacity),
        r.chunkservers.len()
    );
    match &r.stripes {
        Some(s) => println!("stripes: {}", stripes_line(s)),
        None => println!("stripes: unknown (no leader answered)"),
    }
    if let Some(b) = &r.rebalance {
        println!("rebalance: {}", crate::rebalance_cmd::describe(b));
    }
    if let Some(t) = &r.trash {
        println!("trash: {t}");
    }
    let draining: Vec<&Chunk> = r.chunkservers.iter().filter(|c| c.draining).collect();
    for c in draining {
        println!(
            "drain: {} ({}) has {} shards left to move",
            c.id, c.addr, c.shards
        );
    }
    println!(
        "overall: {}",
        if r.healthy { "healthy" } else { "DEGRADED" }
    );
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let cluster = args.cluster.cluster()?;
    let report = runtime()?.block_on(gather(&args, &cluster))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stripes_line_shows_repair_progress_only_while_stripes_are_missing_shards() {
        let whole = StripeHealth {
            healthy: 10,
            degraded: 0,
            lost: 0,
        };
        assert_eq!(stripes_line(&whole), "10 healthy, 0 degraded, 0 lost");
        let repairing = StripeHealth {
            healthy: 3,
            degraded: 1,
            lost: 0,
        };
        assert_eq!(
            stripes_line(&repairing),
            "3 healthy, 1 degraded, 0 lost; repair: 3 of 4 stripes whole (75.0%)"
        );
    }
}
