//! The model's locks: per-byte ownership for fcntl, one kind per owner for flock.

use super::*;
use tessera_namespace::Response;

impl Model {
    // ----- locks -----

    /// (start, end, kind) runs of one owner's hold, in byte order.
    fn runs(held: &Held) -> Vec<(u64, u64, LockKind)> {
        match held {
            Held::Flock(k) => vec![(0, u64::MAX, *k)],
            Held::Posix(bytes) => {
                let mut out: Vec<(u64, u64, LockKind)> = Vec::new();
                for (i, b) in bytes.iter().enumerate() {
                    let Some(k) = b else { continue };
                    match out.last_mut() {
                        Some(last) if last.2 == *k && last.1 + 1 == i as u64 => last.1 = i as u64,
                        _ => out.push((i as u64, i as u64, *k)),
                    }
                }
                out
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn conflict(
        &self,
        ino: Ino,
        flavor: LockFlavor,
        session: u64,
        owner: u64,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Option<LockInfo> {
        for ((i, f, s, o), held) in &self.locks {
            if *i != ino || *f != flavor || (*s, *o) == (session, owner) {
                continue;
            }
            for (rs, re, rk) in Model::runs(held) {
                let overlap = rs <= end && start <= re;
                if overlap && (rk == LockKind::Exclusive || kind == LockKind::Exclusive) {
                    return Some(LockInfo {
                        kind: rk,
                        start: rs,
                        end: re,
                        pid: *o as u32,
                    });
                }
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_lock(
        &mut self,
        session: u64,
        ino: Ino,
        owner: u64,
        flavor: LockFlavor,
        kind: LockKind,
        start: u64,
        end: u64,
    ) -> Reply {
        let (start, end) = match flavor {
            LockFlavor::Flock => (0, u64::MAX),
            LockFlavor::Posix => (start, end),
        };
        if start > end {
            return Err(FsError::Invalid);
        }
        if !self.sessions[&session].opens.contains_key(&ino) {
            return Err(FsError::BadHandle);
        }
        if kind != LockKind::Unlock
            && self
                .conflict(ino, flavor, session, owner, kind, start, end)
                .is_some()
        {
            return Err(FsError::WouldBlock);
        }
        let key = (ino, flavor, session, owner);
        let new = match flavor {
            LockFlavor::Flock => (kind != LockKind::Unlock).then_some(Held::Flock(kind)),
            LockFlavor::Posix => {
                let mut bytes = match self.locks.get(&key) {
                    Some(Held::Posix(b)) => *b,
                    _ => [None; LOCK_BYTES],
                };
                for (i, b) in bytes.iter_mut().enumerate() {
                    if (start..=end).contains(&(i as u64)) {
                        *b = (kind != LockKind::Unlock).then_some(kind);
                    }
                }
                bytes
                    .iter()
                    .any(Option::is_some)
                    .then_some(Held::Posix(bytes))
            }
        };
        match new {
            Some(h) => self.locks.insert(key, h),
            None => self.locks.remove(&key),
        };
        Ok(Response::Done)
    }
}
