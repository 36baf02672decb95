//! Is a history's namespace behaviour linearizable? Every call must appear to take effect
//! at one instant between its start and its end, in an order that the sequential model
//! ([`crate::ns_model`]) accepts with the answers the calls really got.
//!
//! The search is Lowe's just-in-time linearisation (the algorithm Knossos calls `linear`),
//! a breadth-first form of Wing & Gong's: walking the calls' start and end events in time
//! order, it keeps every *configuration* (model state, which of the calls in flight have
//! already taken effect) that explains the history so far. When a call ends, each
//! configuration must be extended, by letting calls in flight take effect one at a time in
//! any order, until that call has; configurations that cannot are dropped. No
//! configuration left means no order explains the answers: a violation at that call.
//!
//! Why one global model rather than one per name: `rmdir dN` sees every entry of `dN`
//! (ENOTEMPTY), a rename ties two names in two directories, and a missing parent fails
//! every call below it, so no split into independent keys is exact. The global model stays
//! cheap because the namespace is small (a few dozen names) and the work per event depends
//! on how many calls are in flight at once (the workers, plus calls of unknown outcome),
//! not on the history's length: set-equal configurations are merged (the memoisation), and
//! a bound turns a search that would blow up into a failure that says so.
//!
//! Unknown outcomes: a call whose answer was lost never ends; it may take effect at any
//! later point, or never (it stays "in flight" to the end). A lost query changes nothing,
//! so it is left out.

use std::collections::HashSet;

use crate::history::{Name, Record, Ret, excerpt};
use crate::ns_model::{State, step};

/// At most this many calls may be in flight at once (a bit each in a `u64`).
const MAX_IN_FLIGHT: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Config {
    state: State,
    /// Bit `s` set: the call in slot `s` has taken effect.
    done: u64,
}

/// What a successful check saw.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub calls: usize,
    /// Calls of unknown outcome that may change the namespace.
    pub unknown: usize,
    /// The most configurations alive at once, and explored while one call ended.
    pub max_configs: usize,
    pub max_explored: usize,
}

/// Checks `history` from `initial`. `bound` caps the configurations explored while one call
/// ends. `Err` is a readable report: the call no order explains, the model states that were
/// possible just before it, and the history of the names it touched.
pub fn check(history: &[Record], initial: State, bound: usize) -> Result<Stats, String> {
    assert!(
        history.iter().enumerate().all(|(i, r)| r.id == i),
        "records must be numbered by their index (history::merge does)"
    );
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    let mut stats = Stats::default();
    for r in history {
        let unknown = matches!(r.ret, Ret::Unknown(_));
        if unknown && r.op.is_query() {
            continue;
        }
        stats.calls += 1;
        // (time, is_end, id): at equal times starts sort first, so touching calls count as
        // concurrent (the lenient reading of a tie).
        events.push((r.start, false, r.id));
        if unknown {
            stats.unknown += 1;
        } else {
            events.push((r.end, true, r.id));
        }
    }
    events.sort();

    let mut slots: Vec<Option<usize>> = vec![None; MAX_IN_FLIGHT];
    let mut slot_of = std::collections::HashMap::new();
    let mut configs: HashSet<Config> = HashSet::from([Config {
        state: initial,
        done: 0,
    }]);
    for (_, is_end, id) in events {
        if !is_end {
            let Some(s) = slots.iter().position(Option::is_none) else {
                return Err(format!(
                    "more than {MAX_IN_FLIGHT} calls in flight at call #{id}: too many \
                     unknown outcomes for this checker"
                ));
            };
            slots[s] = Some(id);
            slot_of.insert(id, s);
            continue;
        }
        let s = slot_of[&id];
        let (next, explored) = end_call(history, &slots, s, &configs, bound).map_err(|n| {
            format!("search bound exceeded: {n} configurations while call #{id} ended")
        })?;
        stats.max_explored = stats.max_explored.max(explored);
        if next.is_empty() {
            return Err(report(history, &history[id], &slots, &configs));
        }
        slots[s] = None;
        stats.max_configs = stats.max_configs.max(next.len());
        configs = next;
    }
    Ok(stats)
}

/// The configurations in which the call in slot `s` has taken effect (its bit cleared, as
/// the call leaves), reached from `configs` by letting calls in flight take effect; and how
/// many were explored. `Err(n)` past the bound.
fn end_call(
    history: &[Record],
    slots: &[Option<usize>],
    s: usize,
    configs: &HashSet<Config>,
    bound: usize,
) -> Result<(HashSet<Config>, usize), usize> {
    let bit = 1u64 << s;
    let mut next = HashSet::new();
    let mut seen = HashSet::new();
    let mut stack = Vec::new();
    for c in configs {
        if c.done & bit != 0 {
            next.insert(Config {
                done: c.done & !bit,
                state: c.state.clone(),
            });
        } else if seen.insert(c.clone()) {
            stack.push(c.clone());
        }
    }
    while let Some(c) = stack.pop() {
        for (t, id) in slots.iter().enumerate() {
            let Some(id) = id else { continue };
            if c.done & (1 << t) != 0 {
                continue;
            }
            let r = &history[*id];
            let Some(state) = step(&c.state, &r.op, &r.ret) else {
                continue;
            };
            if t == s {
                // Stop here: letting more calls take effect after this one is what later
                // ends will try.
                next.insert(Config {
                    state,
                    done: c.done,
                });
            } else {
                let c2 = Config {
                    state,
                    done: c.done | (1 << t),
                };
                if seen.insert(c2.clone()) {
                    stack.push(c2);
                }
            }
        }
        if seen.len() > bound {
            return Err(seen.len());
        }
    }
    Ok((next, seen.len()))
}

fn report(
    history: &[Record],
    r: &Record,
    slots: &[Option<usize>],
    configs: &HashSet<Config>,
) -> String {
    let names: Vec<Name> = r.op.names();
    let mut out = format!(
        "NOT LINEARIZABLE: no order of the calls in flight explains\n  {r}\n\
         Possible states of its directories just before (at most 4 of {}):\n",
        configs.len()
    );
    let states: HashSet<String> = configs.iter().map(|c| c.state.describe(&names)).collect();
    for st in states.iter().take(4) {
        out.push_str(&format!("  {st}\n"));
    }
    out.push_str("Calls in flight when it ended:\n");
    for id in slots.iter().flatten() {
        out.push_str(&format!("  {}\n", history[*id]));
    }
    out.push_str(&format!(
        "History of {} (12 earlier calls, then every call overlapping it):\n",
        names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for e in excerpt(history, &names, (r.start, r.end), 12) {
        let mark = if e.id == r.id { ">>" } else { "  " };
        out.push_str(&format!("{mark}{e}\n"));
    }
    out
}
