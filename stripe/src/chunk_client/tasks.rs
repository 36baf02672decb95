//! A set of spawned calls, each tagged with what it was for.
//!
//! Shard calls are spawned rather than polled in the caller's task so that the BLAKE3 checks
//! of several shards run on several cores. A `JoinSet` alone loses the tag of a task that
//! ended without a value (panicked or aborted); keeping the tags by task id means every
//! call ends as a result for a known shard, never as a silent gap. Dropping the set aborts
//! whatever is still running, so a caller that gives up leaves nothing behind.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};

pub(crate) struct Tasks<K, T> {
    set: JoinSet<T>,
    keys: HashMap<Id, K>,
}

impl<K, T: Send + 'static> Tasks<K, T> {
    pub fn new() -> Self {
        Tasks {
            set: JoinSet::new(),
            keys: HashMap::new(),
        }
    }

    /// Spawns `fut` tagged with `key`.
    pub fn spawn<F>(&mut self, key: K, fut: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let handle = self.set.spawn(fut);
        self.keys.insert(handle.id(), key);
    }

    /// The next finished call with its tag; `Err` (with the reason) if the task ended
    /// without a value. `None` when nothing is left.
    pub async fn next(&mut self) -> Option<(K, Result<T, String>)> {
        loop {
            let (id, out) = match self.set.join_next_with_id().await? {
                Ok((id, value)) => (id, Ok(value)),
                Err(e) => (e.id(), Err(e.to_string())),
            };
            if let Some(key) = self.keys.remove(&id) {
                return Some((key, out));
            }
        }
    }

    /// Tags of the calls still running.
    pub fn running(&self) -> impl Iterator<Item = &K> {
        self.keys.values()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_keep_their_tags_even_when_a_task_panics() {
        let mut tasks: Tasks<&str, u32> = Tasks::new();
        tasks.spawn("one", async { 1 });
        tasks.spawn("boom", async { panic!("test panic") });
        let mut seen = Vec::new();
        while let Some((key, out)) = tasks.next().await {
            seen.push((key, out.is_ok()));
        }
        seen.sort();
        assert_eq!(seen, vec![("boom", false), ("one", true)]);
        assert!(tasks.is_empty());
    }
}
