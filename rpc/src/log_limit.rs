//! Keeps a misbehaving peer from flooding the log: one line per address per interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows one log line per peer address per interval.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    last: Mutex<HashMap<IpAddr, Instant>>,
}

/// Addresses remembered at most; past this the table is cleared (a flood from many
/// addresses then logs again, which is what an operator would want to see).
const MAX_TRACKED: usize = 4096;

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a line about `ip` may be logged now.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.len() >= MAX_TRACKED {
            last.clear();
        }
        match last.get(&ip) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            _ => {
                last.insert(ip, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_line_within_interval_is_suppressed() {
        let l = LogLimiter::new(Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(l.allow(ip));
        assert!(!l.allow(ip));
        assert!(l.allow([127, 0, 0, 2].into()));
    }
}
