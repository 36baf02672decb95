//! The leader's clock: the only wall-clock time that enters the namespace, stamped into each
//! command when it is proposed (so applying a command never reads a clock, and every replica
//! applies the same time). Background jobs read it too, to compare with stamped times.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 if the system clock is set before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
