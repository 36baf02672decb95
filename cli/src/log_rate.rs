//! Repeated warnings and errors are rate-limited, so a failure that repeats (a dead peer
//! every heartbeat, a stripe that cannot be repaired every round) costs a few lines, not
//! megabytes.
//!
//! Per log statement (callsite), at most [`BURST`] WARN or ERROR lines pass per [`WINDOW`];
//! the rest are counted, and the first line let through after a suppression is preceded by
//! one line saying how many were dropped. Different statements never limit each other, and
//! INFO and below are not limited (they are not repeated per failure).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};

/// Lines per callsite per window.
pub const BURST: u32 = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Site {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

/// The filter's state: one entry per callsite that logged a warning or an error.
#[derive(Default)]
pub struct RateLimit {
    sites: Mutex<HashMap<Identifier, Site>>,
}

impl RateLimit {
    /// Whether an event at `meta` may be written now.
    pub fn allow(&self, meta: &Metadata<'_>) -> bool {
        if !meta.is_event() || *meta.level() > Level::WARN {
            return true;
        }
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let site = sites.entry(meta.callsite()).or_default();
        let now = Instant::now();
        if site
            .window_start
            .is_none_or(|t| now.duration_since(t) >= WINDOW)
        {
            if site.suppressed > 0 {
                // Written straight to the log (stderr): this filter cannot emit events.
                eprintln!(
                    "{} WARN {}: {} more lines from {}:{} were suppressed in the last {} s",
                    humantime_now(),
                    meta.target(),
                    site.suppressed,
                    meta.file().unwrap_or("?"),
                    meta.line().unwrap_or(0),
                    WINDOW.as_secs()
                );
            }
            *site = Site {
                window_start: Some(now),
                passed: 0,
                suppressed: 0,
            };
        }
        if site.passed < BURST {
            site.passed += 1;
            true
        } else {
            site.suppressed += 1;
            false
        }
    }
}

/// The time as the log lines print it (RFC 3339, UTC, microseconds).
fn humantime_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_428), (2025, 12, 6));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
