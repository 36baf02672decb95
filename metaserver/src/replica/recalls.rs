//! Recalls of capabilities, in the leader's memory: which caps it wants back from which
//! session, the long polls (`WaitRecall`) that carry those wishes to the mounts, and the
//! wake-up of commands waiting for caps to be given back.
//!
//! Nothing here needs to survive a change of leader: the caps themselves are replicated,
//! and a command waiting for a recall runs on the leader that proposed it. When leadership
//! moves, the client sends the command again to the new leader, which finds the same caps
//! in its state and recalls them itself.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tessera_proto::fs::Ino;
use tessera_proto::meta::CapHolder;
use tokio::sync::Notify;

/// The longest a `WaitRecall` waits before answering "nothing" (a mount asks again).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Wanted {
    inos: BTreeSet<Ino>,
    /// Wakes the session's long poll (a permit is kept if none waits yet).
    wake: Arc<Notify>,
}

#[derive(Debug, Default)]
pub struct Recalls {
    wanted: Mutex<HashMap<u64, Wanted>>,
    /// Caps were given back, or a session ended: waiting commands look again.
    given_back: Notify,
}

impl Recalls {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Wanted>> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the holders for these caps (delivered by their next or current long poll).
    pub fn post(&self, holders: &[CapHolder]) {
        let mut t = self.table();
        for h in holders {
            let w = t.entry(h.session).or_default();
            w.inos.insert(h.ino);
            w.wake.notify_one();
        }
    }

    /// What `session` is asked to give back, waiting up to `wait` for something to be
    /// asked (empty if nothing was). What is returned is taken off the board: a command
    /// still waiting posts it again if the cap is not given back.
    pub async fn wait_for(&self, session: u64, wait: Duration) -> Vec<Ino> {
        let wake = {
            let mut t = self.table();
            let w = t.entry(session).or_default();
            if !w.inos.is_empty() {
                return std::mem::take(&mut w.inos).into_iter().collect();
            }
            w.wake.clone()
        };
        let _ = tokio::time::timeout(wait.min(MAX_WAIT), wake.notified()).await;
        drop(wake);
        let mut t = self.table();
        let taken = t.get_mut(&session).map(|w| std::mem::take(&mut w.inos));
        // Forget sessions with nothing asked and no one waiting, so ended ones do not pile up.
        if t.get(&session)
            .is_some_and(|w| w.inos.is_empty() && Arc::strong_count(&w.wake) == 1)
        {
            t.remove(&session);
        }
        taken.into_iter().flatten().collect()
    }

    /// Called when caps were given back or a session ended.
    pub fn given_back(&self) {
        self.given_back.notify_waiters();
    }

    /// Waits until [`given_back`](Self::given_back) is called or `wait` passed.
    pub async fn wait_given_back(&self, wait: Duration) {
        let _ = tokio::time::timeout(wait, self.given_back.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(ino: Ino, session: u64) -> CapHolder {
        CapHolder {
            ino,
            session,
            exclusive: false,
        }
    }

    #[tokio::test]
    async fn a_posted_recall_reaches_a_waiting_poll_and_only_its_session() {
        let r = Arc::new(Recalls::default());
        let poll = tokio::spawn({
            let r = r.clone();
            async move { r.wait_for(7, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.post(&[holder(3, 7), holder(4, 8), holder(5, 7)]);
        assert_eq!(poll.await.unwrap(), vec![3, 5]);
        // Posted before the poll: answered at once; taken, so the next poll waits.
        assert_eq!(r.wait_for(8, Duration::from_secs(10)).await, vec![4]);
        assert!(r.wait_for(8, Duration::from_millis(10)).await.is_empty());
    }
}
