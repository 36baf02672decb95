//! `tessera meta add|remove|transfer-leader`: membership changes of the metadata group, all
//! sent to the leader, which serialises them (a new member joins as a learner, catches up,
//! then is promoted to voter).

use anyhow::bail;
use clap::Subcommand;
use tessera_proto::meta::{ChangeMembership, MembershipChange};

use std::time::Duration;
use tessera_client::cluster::Retry;

use crate::cluster::{ClusterArgs, runtime};

/// Membership subcommands of `tessera meta`.
#[derive(Debug, Subcommand)]
pub enum MembershipCmd {
    /// Add a metaserver: start it first with `tessera meta --id ID --listen ADDR --peers
    /// ID=ADDR --data DIR` (no --init); this adds it as a learner, waits until it has caught
    /// up with the log, then makes it a voter.
    Add {
        /// The new member as ID=HOST:PORT (required).
        #[arg(value_name = "ID=ADDR")]
        member: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Remove a metaserver from the group (stop its process afterwards).
    Remove {
        /// Node id of the member to remove (required).
        #[arg(value_name = "ID")]
        id: u64,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Move the leadership to another voter (e.g. before stopping the leader's machine).
    TransferLeader {
        /// Node id of the member to lead (required).
        #[arg(value_name = "ID")]
        id: u64,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

pub fn run(cmd: MembershipCmd) -> anyhow::Result<()> {
    let (change, cluster) = match cmd {
        MembershipCmd::Add { member, cluster } => {
            let Some((id, addr)) = member.split_once('=') else {
                bail!("{member:?} is not ID=HOST:PORT");
            };
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{id:?} in {member:?} is not a node id"))?;
            let addr = addr.trim().to_string();
            (MembershipChange::Add { id, addr }, cluster)
        }
        MembershipCmd::Remove { id, cluster } => (MembershipChange::Remove { id }, cluster),
        MembershipCmd::TransferLeader { id, cluster } => {
            (MembershipChange::TransferLeader { id }, cluster)
        }
    };
    // Catching up a new member can take a while: give the leader time.
    let retry = Retry::once(cluster.timeout(5_000).max(Duration::from_secs(120)));
    let client = cluster.cluster()?;
    let reply = runtime()?.block_on(client.call::<ChangeMembership, _, _>(&change, &retry))?;
    println!("{reply}");
    Ok(())
}
