//! How hard one call to the metadata leader tries before it gives up.

use std::time::Duration;

/// Deadline, timeouts and backoff of [`crate::ClusterClient::call`].
#[derive(Debug, Clone)]
pub struct Retry {
    /// How long one call keeps trying (across servers and leader changes).
    pub deadline: Duration,
    /// Timeout of a single attempt against one server.
    pub attempt_timeout: Duration,
    /// First pause after a failed attempt; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Also give up once this many failed attempts per known server came in a row (a hint
    /// followed is no failure); 0: only the deadline ends the call.
    pub rounds: u32,
    /// Retry an `Unavailable` answer on the next server (a mount waits out an election);
    /// `false` hands it back at once (an admin command reports the leader's refusal).
    pub retry_unavailable: bool,
}

impl Default for Retry {
    /// What a mount uses: keep trying for 30 s, 5 s per attempt.
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            rounds: 0,
            retry_unavailable: true,
        }
    }
}

impl Retry {
    /// An admin command's call: every address once (hints followed), `timeout` per
    /// attempt, and the leader's refusal reported as it is.
    pub fn once(timeout: Duration) -> Self {
        Self {
            deadline: timeout.saturating_mul(8),
            attempt_timeout: timeout,
            rounds: 1,
            retry_unavailable: false,
            ..Self::default()
        }
    }
}
