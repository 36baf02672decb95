//! What a caller may do that depends on its capabilities and groups rather than its uid.
//!
//! The kernel checks most permissions itself (`default_permissions`), but a few rules of
//! ext4 apply inside operations the kernel hands over whole: a `fallocate` by a caller
//! without `CAP_FSETID` clears the file's set-user-ID bit, and its set-group-ID bit when the
//! file is group-executable or the caller is not in the file's group, as a write does (the
//! kernel does this for FUSE writes, not for fallocate). FUSE requests carry only uid, gid
//! and pid, so capabilities and supplementary groups are read from the caller's
//! `/proc/TID/status` (`CapEff`, `Groups`), which also sees a root process that dropped
//! its capabilities.

use tessera_proto::fs::Attr;

use super::signals::{hex_field, status_of};

/// Linux `CAP_FSETID`.
const CAP_FSETID: u32 = 4;

/// Whether thread `tid` of user `uid` holds capability `cap` (by its uid alone when its
/// status cannot be read).
pub fn holds_cap(tid: u32, uid: u32, cap: u32) -> bool {
    match status_of(tid) {
        Some(status) => hex_field(&status, "CapEff:") & (1 << cap) != 0,
        None => uid == 0,
    }
}

/// The caller of a request, as far as set-ID rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetIdCaller {
    /// Holds `CAP_FSETID`: changes keep set-ID bits.
    keeps: bool,
    /// Its file-system gid and supplementary groups.
    groups: Vec<u32>,
}

impl SetIdCaller {
    /// Thread `tid` of user `uid` with file-system gid `gid`. A thread whose status cannot
    /// be read (it is gone) is judged by its uid and gid alone.
    pub fn of(tid: u32, uid: u32, gid: u32) -> SetIdCaller {
        match status_of(tid) {
            Some(status) => Self::from_status(&status, gid),
            None => SetIdCaller {
                keeps: uid == 0,
                groups: vec![gid],
            },
        }
    }

    fn from_status(status: &str, gid: u32) -> SetIdCaller {
        let mut groups: Vec<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        groups.push(gid);
        SetIdCaller {
            keeps: hex_field(status, "CapEff:") & (1 << CAP_FSETID) != 0,
            groups,
        }
    }

    /// The permission bits setting an access ACL on `a` leaves: Linux drops set-group-ID
    /// when the caller is neither in the file's group nor holds `CAP_FSETID`
    /// (`posix_acl_update_mode`); FUSE leaves that to the daemon.
    pub fn perm_after_acl(&self, a: &Attr) -> u16 {
        if self.keeps || self.groups.contains(&a.gid) {
            a.perm
        } else {
            a.perm & !0o2000
        }
    }

    /// The permission bits a change of the regular file `a` by this caller leaves.
    pub fn perm_after_change(&self, a: &Attr) -> u16 {
        if self.keeps {
            return a.perm;
        }
        let mut perm = a.perm & !0o4000;
        if perm & 0o010 != 0 || !self.groups.contains(&a.gid) {
            perm &= !0o2000;
        }
        perm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::FileKind;

    fn file(perm: u16, gid: u32) -> Attr {
        Attr {
            ino: 9,
            generation: 1,
            kind: FileKind::Regular,
            perm,
            nlink: 1,
            uid: 0,
            gid,
            rdev: 0,
            size: 0,
            blocks: 0,
            flags: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    const USER: &str =
        "Name:\tx\nGid:\t100\t100\t100\t100\nGroups:\t100 27 \nCapEff:\t0000000000000000\n";
    const ROOT: &str = "Name:\tx\nGid:\t0\t0\t0\t0\nGroups:\t0 \nCapEff:\t000001ffffffffff\n";

    #[test]
    fn an_acl_set_outside_the_group_drops_set_group_id() {
        let user = SetIdCaller::from_status(USER, 100);
        assert_eq!(user.perm_after_acl(&file(0o2770, 27)), 0o2770);
        assert_eq!(user.perm_after_acl(&file(0o2770, 5)), 0o0770);
        let root = SetIdCaller::from_status(ROOT, 0);
        assert_eq!(root.perm_after_acl(&file(0o2770, 5)), 0o2770);
    }

    #[test]
    fn set_group_id_goes_with_group_execute_or_outside_the_group() {
        let user = SetIdCaller::from_status(USER, 100);
        assert_eq!(user.perm_after_change(&file(0o6755, 100)), 0o0755);
        assert_eq!(user.perm_after_change(&file(0o2644, 100)), 0o2644);
        assert_eq!(user.perm_after_change(&file(0o2644, 27)), 0o2644);
        assert_eq!(user.perm_after_change(&file(0o2666, 0)), 0o0666);
        assert_eq!(user.perm_after_change(&file(0o4644, 100)), 0o0644);
        assert_eq!(user.perm_after_change(&file(0o1777, 0)), 0o1777);
        let root = SetIdCaller::from_status(ROOT, 0);
        assert_eq!(root.perm_after_change(&file(0o6775, 100)), 0o6775);
    }

    #[test]
    fn this_process_is_judged_by_its_status() {
        let me = std::process::id();
        let status = status_of(me).expect("own status");
        let keeps = hex_field(&status, "CapEff:") & (1 << CAP_FSETID) != 0;
        assert_eq!(SetIdCaller::of(me, 12345, 7).keeps, keeps);
        let gone = SetIdCaller::of(u32::MAX, 1000, 1000);
        assert_eq!(gone.perm_after_change(&file(0o2770, 1000)), 0o0770);
    }
}
