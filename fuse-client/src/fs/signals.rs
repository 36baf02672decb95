//! Whether the process behind a FUSE request has a signal waiting for it.
//!
//! A blocked `F_SETLKW` or `flock` must return `EINTR` when its caller gets a signal. The
//! kernel tells FUSE daemons with an INTERRUPT request, but fuser 0.18 answers every
//! INTERRUPT itself with `ENOSYS` and does not pass it on (`request.rs`: "TODO: handle
//! FUSE_INTERRUPT"), after which the kernel stops sending them. So a lock wait asks the
//! kernel directly, between attempts: `/proc/TID/status` lists the thread's pending
//! signals (`SigPnd`), the process's (`ShdPnd`), and which are blocked (`SigBlk`) or
//! ignored (`SigIgn`). A pending signal that is neither means the caller is interrupted:
//! the wait answers `EINTR` and the kernel delivers the signal.

/// Whether thread `tid` has a pending signal it neither blocks nor ignores. `false` when
/// the thread is gone or its status cannot be read (then the wait just goes on).
pub fn interrupted(tid: u32) -> bool {
    let Some(status) = status_of(tid) else {
        return false;
    };
    pending_unblocked(&status)
}

/// `/proc/TID/status` of a thread, `None` when it is gone.
pub(super) fn status_of(tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{tid}/status")).ok()
}

/// A hexadecimal mask line of a status file (`SigPnd:`, `CapEff:`), 0 when missing.
pub(super) fn hex_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn pending_unblocked(status: &str) -> bool {
    let mask = |name: &str| hex_field(status, name);
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    pending & !mask("SigBlk:") & !mask("SigIgn:") != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tpython3\nSigQ:\t0/95000\nSigPnd:\t0000000000000000\n\
        ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\n\
        SigCgt:\t0000000100004002\n";

    #[test]
    fn a_pending_signal_counts_unless_blocked_or_ignored() {
        assert!(!pending_unblocked(STATUS));
        // SIGALRM (14) pending for the process.
        let alarm = STATUS.replace("ShdPnd:\t0000000000000000", "ShdPnd:\t0000000000002000");
        assert!(pending_unblocked(&alarm));
        let blocked = alarm.replace("SigBlk:\t0000000000000000", "SigBlk:\t0000000000002000");
        assert!(!pending_unblocked(&blocked));
        // SIGPIPE (13) pending but ignored.
        let ignored = STATUS.replace("SigPnd:\t0000000000000000", "SigPnd:\t0000000000001000");
        assert!(!pending_unblocked(&ignored));
    }

    #[test]
    fn this_thread_has_nothing_pending() {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(std::process::id());
        assert!(!interrupted(tid));
        assert!(!interrupted(u32::MAX), "a thread that does not exist");
    }
}
