//! Membership changes of the metadata group, all through one path on the leader and one at
//! a time: a new member is added as a learner and the call waits until it has caught up
//! with the log; only then is it promoted to voter (joint consensus, so the group never
//! loses its majority on the way). Removal demotes and drops a voter the same way.

use super::refusal::refused;
use super::types::Raft;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{BasicNode, ChangeMembers};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tessera_proto::meta::{MembershipChange, ServiceError};

/// How long a leadership transfer may take before the call reports it did not happen.
pub(super) const TRANSFER_WAIT: Duration = Duration::from_secs(10);

/// Applies one change; the reply describes the membership afterwards.
pub(super) async fn change(
    raft: &Raft,
    serialise: &tokio::sync::Mutex<()>,
    change: MembershipChange,
) -> Result<String, ServiceError> {
    let _one_at_a_time = serialise.lock().await;
    match change {
        MembershipChange::Add { id, addr } => {
            // Blocks until the learner has the whole log (or a snapshot of it).
            raft.add_learner(id, BasicNode { addr: addr.clone() }, true)
                .await
                .map_err(|e| refused(&e))?;
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| refused(&e))?;
            tracing::info!(id, %addr, "metaserver added as a voter");
        }
        MembershipChange::Remove { id } => {
            raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
                .map_err(|e| refused(&e))?;
            tracing::info!(id, "metaserver removed from the group");
        }
        MembershipChange::TransferLeader { id } => {
            let voters = voters(raft);
            if !voters.contains_key(&id) {
                return Err(ServiceError::Unavailable {
                    reason: format!("member {id} is not a voter of the group"),
                });
            }
            raft.trigger()
                .transfer_leader(id)
                .await
                .map_err(|e| ServiceError::Unavailable {
                    reason: e.to_string(),
                })?;
            let started = Instant::now();
            while raft.metrics().borrow_watched().current_leader != Some(id) {
                if started.elapsed() > TRANSFER_WAIT {
                    return Err(ServiceError::Unavailable {
                        reason: format!("member {id} did not take over within {TRANSFER_WAIT:?}"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tracing::info!(id, "leadership transferred");
        }
    }
    Ok(describe(raft))
}

/// Voters with their addresses.
fn voters(raft: &Raft) -> BTreeMap<u64, String> {
    let m = raft.metrics().borrow_watched().clone();
    let config = m.membership_config.membership();
    let ids: BTreeSet<u64> = config.voter_ids().collect();
    config
        .nodes()
        .filter(|(id, _)| ids.contains(id))
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect()
}

fn describe(raft: &Raft) -> String {
    let voters = voters(raft);
    let list: Vec<String> = voters.iter().map(|(id, a)| format!("{id}={a}")).collect();
    format!("voters: {}", list.join(","))
}
