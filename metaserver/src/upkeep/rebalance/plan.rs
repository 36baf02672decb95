//! Which shards a rebalance round moves: a pure function of the servers' use and the stripe
//! table, so it is tested without a cluster.
//!
//! Greedy: the server furthest above the mean gives a shard to the server furthest below it
//! (or, when that one already holds a shard of every stripe the giver has, to the next
//! emptiest), as long as the move brings both closer to the mean, until every server is
//! within the band or the round's byte budget is spent. Use is simulated as moves are
//! planned, so one round does not overshoot while heartbeats still show the old figures.

use std::collections::{HashMap, HashSet};
use tessera_proto::fs::StripeInfo;

/// One server's capacity and use, as its heartbeats report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub id: u64,
    pub capacity: u64,
    pub used: u64,
    /// May receive shards (up, not full, not draining); others may only give.
    pub writable: bool,
}

/// One planned move: shard `index` of `stripe` from server `from` to server `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub stripe: StripeInfo,
    pub index: usize,
    pub from: u64,
    pub to: u64,
    pub bytes: u64,
}

/// The mean used fraction (total use over total capacity) and the largest distance of one
/// server's fraction from it. Servers without capacity are left out.
pub fn spread(loads: &[Load]) -> (f64, f64) {
    let counted: Vec<&Load> = loads.iter().filter(|l| l.capacity > 0).collect();
    let capacity: u64 = counted.iter().map(|l| l.capacity).sum();
    if capacity == 0 {
        return (0.0, 0.0);
    }
    let mean = counted.iter().map(|l| l.used).sum::<u64>() as f64 / capacity as f64;
    let spread = counted
        .iter()
        .map(|l| (fraction(l.used, l.capacity) - mean).abs())
        .fold(0.0, f64::max);
    (mean, spread)
}

fn fraction(used: u64, capacity: u64) -> f64 {
    used as f64 / capacity as f64
}

/// Plans moves until every server is within `band` of the mean or `budget` bytes are
/// planned. Only stripes whose every shard is stored on one of `loads`' servers take part
/// (a stripe missing a shard is repair's), and a shard never goes to a server that holds
/// (or is planned to receive) a shard of the same stripe.
pub fn plan(loads: &[Load], stripes: &[StripeInfo], band: f64, budget: u64) -> Vec<Move> {
    let mut used: HashMap<u64, u64> = HashMap::new();
    let mut capacity: HashMap<u64, u64> = HashMap::new();
    let mut writable: HashSet<u64> = HashSet::new();
    for l in loads.iter().filter(|l| l.capacity > 0) {
        used.insert(l.id, l.used);
        capacity.insert(l.id, l.capacity);
        if l.writable {
            writable.insert(l.id);
        }
    }
    let (mean, _) = spread(loads);
    // Each server's shards that may move: (stripe position, shard index), in stripe order.
    let mut held: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for (at, stripe) in stripes.iter().enumerate() {
        let shards = &stripe.layout.shards;
        if !shards
            .iter()
            .all(|p| p.is_stored() && capacity.contains_key(&p.server))
        {
            continue;
        }
        for (index, p) in shards.iter().enumerate() {
            held.entry(p.server).or_default().push((at, index));
        }
    }
    let frac = |used: &HashMap<u64, u64>, id: u64| fraction(used[&id], capacity[&id]);
    // Where each stripe's shards are once the moves planned so far are made.
    let mut places: Vec<Vec<u64>> = stripes
        .iter()
        .map(|s| s.layout.shards.iter().map(|p| p.server).collect())
        .collect();
    let mut exhausted: HashSet<u64> = HashSet::new();
    let mut moves = Vec::new();
    let mut planned = 0u64;
    while planned < budget {
        let mut ids: Vec<u64> = capacity.keys().copied().collect();
        ids.sort_by(|a, b| frac(&used, *a).total_cmp(&frac(&used, *b)).then(a.cmp(b)));
        let Some(&lowest) = ids.iter().find(|id| writable.contains(id)) else {
            break;
        };
        let Some(&giver) = ids.iter().rev().find(|id| !exhausted.contains(id)) else {
            break;
        };
        let within = |id: u64, used: &HashMap<u64, u64>| (frac(used, id) - mean).abs() <= band;
        if within(giver, &used) && within(lowest, &used) {
            break;
        }
        let found = ids
            .iter()
            .filter(|to| writable.contains(to) && **to != giver)
            .find_map(|&to| {
                let shards = held.get(&giver)?;
                shards
                    .iter()
                    .position(|&(at, index)| {
                        let bytes = stripes[at].layout.shard_len;
                        !places[at].contains(&to)
                            && improves(
                                (frac(&used, giver), capacity[&giver]),
                                (frac(&used, to), capacity[&to]),
                                bytes,
                                mean,
                            )
                            && places[at][index] == giver
                    })
                    .map(|pos| (to, pos))
            });
        let Some((to, pos)) = found else {
            exhausted.insert(giver);
            continue;
        };
        let (at, index) = held
            .get_mut(&giver)
            .expect("giver holds shards")
            .remove(pos);
        let stripe = &stripes[at];
        let bytes = stripe.layout.shard_len;
        places[at][index] = to;
        *used.get_mut(&giver).expect("known") -= bytes.min(used[&giver]);
        *used.get_mut(&to).expect("known") += bytes;
        planned += bytes;
        moves.push(Move {
            stripe: stripe.clone(),
            index,
            from: giver,
            to,
            bytes,
        });
    }
    moves
}

/// Whether moving `bytes` from a server at fraction `from` to one at `to` (each with its
/// capacity) brings the pair closer to the mean: the larger of the two distances shrinks.
fn improves(from: (f64, u64), to: (f64, u64), bytes: u64, mean: f64) -> bool {
    let before = (from.0 - mean).abs().max((to.0 - mean).abs());
    let from_after = from.0 - bytes as f64 / from.1 as f64;
    let to_after = to.0 + bytes as f64 / to.1 as f64;
    let after = (from_after - mean).abs().max((to_after - mean).abs());
    after < before
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::ShardId;
    use tessera_proto::fs::{ShardPlace, StripeId, StripeLayout};

    /// A 2+1 stripe of 1,000-byte shards on the given servers.
    fn stripe(n: u8, servers: [u64; 3]) -> StripeInfo {
        StripeInfo {
            id: StripeId([n; 32]),
            layout: StripeLayout {
                k: 2,
                m: 1,
                shard_len: 1_000,
                data_len: 2_000,
                shards: servers
                    .iter()
                    .enumerate()
                    .map(|(i, &server)| ShardPlace {
                        server,
                        shard: ShardId([n.wrapping_mul(3).wrapping_add(i as u8); 32]),
                    })
                    .collect(),
            },
        }
    }

    fn load(id: u64, used: u64) -> Load {
        Load {
            id,
            capacity: 10_000,
            used,
            writable: true,
        }
    }

    /// Applies the moves to the loads and the stripes, as the cluster would.
    fn after(loads: &[Load], moves: &[Move]) -> Vec<Load> {
        let mut out = loads.to_vec();
        for m in moves {
            out.iter_mut().find(|l| l.id == m.from).unwrap().used -= m.bytes;
            out.iter_mut().find(|l| l.id == m.to).unwrap().used += m.bytes;
        }
        out
    }

    /// Three full servers holding 6 stripes, three empty ones joined.
    fn joined() -> (Vec<Load>, Vec<StripeInfo>) {
        let stripes: Vec<StripeInfo> = (0..6).map(|n| stripe(n, [1, 2, 3])).collect();
        let loads = vec![
            load(1, 6_000),
            load(2, 6_000),
            load(3, 6_000),
            load(4, 0),
            load(5, 0),
            load(6, 0),
        ];
        (loads, stripes)
    }

    #[test]
    fn new_servers_are_filled_until_every_server_is_within_the_band() {
        let (loads, stripes) = joined();
        assert!(spread(&loads).1 > 0.25);
        let moves = plan(&loads, &stripes, 0.05, u64::MAX);
        assert!(!moves.is_empty());
        let (mean, spread_after) = spread(&after(&loads, &moves));
        assert!((mean - 0.3).abs() < 1e-9);
        assert!(spread_after <= 0.05 + 1e-9, "spread after: {spread_after}");
        for m in &moves {
            assert!(m.from <= 3 && m.to >= 4, "{m:?}");
            // No server ends up with two shards of one stripe.
            assert!(!m.stripe.layout.shards.iter().any(|p| p.server == m.to));
            assert_eq!(m.stripe.layout.shards[m.index].server, m.from);
        }
        // No stripe gets two shards on one server, whatever the order the moves run in.
        for s in &stripes {
            let mut servers: Vec<u64> = s.layout.shards.iter().map(|p| p.server).collect();
            for m in moves.iter().filter(|m| m.stripe.id == s.id) {
                servers[m.index] = m.to;
            }
            let distinct: HashSet<u64> = servers.iter().copied().collect();
            assert_eq!(distinct.len(), servers.len(), "{servers:?}");
        }
    }

    #[test]
    fn a_balanced_cluster_plans_nothing() {
        let stripes: Vec<StripeInfo> = (0..4).map(|n| stripe(n, [1, 2, 3])).collect();
        let loads = vec![load(1, 4_000), load(2, 4_000), load(3, 3_600)];
        assert!(plan(&loads, &stripes, 0.05, u64::MAX).is_empty());
    }

    #[test]
    fn the_budget_bounds_one_round() {
        let (loads, stripes) = joined();
        let moves = plan(&loads, &stripes, 0.05, 2_500);
        // Planning stops at the first move that reaches the budget.
        assert_eq!(moves.len(), 3);
    }

    #[test]
    fn stripes_missing_a_shard_or_on_unknown_servers_are_left_to_repair() {
        let mut stripes: Vec<StripeInfo> = (0..3).map(|n| stripe(n, [1, 2, 3])).collect();
        stripes[0].layout.shards[1].server = ShardPlace::NOWHERE;
        stripes[1].layout.shards[2].server = 99;
        let loads = vec![load(1, 3_000), load(2, 3_000), load(3, 3_000), load(4, 0)];
        let moves = plan(&loads, &stripes, 0.01, u64::MAX);
        assert!(!moves.is_empty());
        assert!(moves.iter().all(|m| m.stripe.id == stripes[2].id));
    }

    #[test]
    fn servers_that_may_not_receive_only_give() {
        let (mut loads, stripes) = joined();
        loads[3].writable = false; // server 4: full or draining
        let moves = plan(&loads, &stripes, 0.05, u64::MAX);
        assert!(!moves.is_empty());
        assert!(moves.iter().all(|m| m.to != 4));
    }

    #[test]
    fn a_move_that_would_overshoot_is_not_made() {
        // A 1,000-byte shard is 0.1 of a server: moving one from a server 0.01 above the
        // mean to one 0.03 below leaves the pair further apart, so nothing moves even
        // with a band of zero.
        let stripes: Vec<StripeInfo> = (0..3).map(|n| stripe(n, [1, 2, 3])).collect();
        let loads = vec![
            load(1, 3_000),
            load(2, 3_000),
            load(3, 3_000),
            load(4, 2_600),
        ];
        assert!(plan(&loads, &stripes, 0.0, u64::MAX).is_empty());
    }
}
