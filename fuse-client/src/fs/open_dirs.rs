//! Directories this mount has open, with the attributes last seen for each.
//!
//! POSIX lets a process `fstat` a directory it holds open after it was removed (by `rmdir`, or by
//! a `rename` of another directory over it): ext4 answers with the directory's attributes
//! and a link count of 0. The metadata service forgets a removed directory at once, so the
//! mount keeps what it last saw of every directory it has open and answers from that.

use std::collections::HashMap;
use std::sync::Mutex;

use tessera_proto::fs::{Attr, Ino};

#[derive(Debug)]
struct OpenDir {
    handles: u32,
    attr: Attr,
}

#[derive(Debug, Default)]
pub struct OpenDirs {
    open: Mutex<HashMap<Ino, OpenDir>>,
}

impl OpenDirs {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Ino, OpenDir>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more handle on the directory `attr` describes.
    pub fn opened(&self, attr: Attr) {
        let mut t = self.table();
        let d = t.entry(attr.ino).or_insert(OpenDir {
            handles: 0,
            attr: attr.clone(),
        });
        d.handles += 1;
        d.attr = attr;
    }

    /// One more handle on `ino` if it is open here already (its attributes could not be
    /// read again); false if it is not.
    pub fn opened_again(&self, ino: Ino) -> bool {
        match self.table().get_mut(&ino) {
            Some(d) => {
                d.handles += 1;
                true
            }
            None => false,
        }
    }

    /// One handle fewer on `ino`.
    pub fn released(&self, ino: Ino) {
        let mut t = self.table();
        if let Some(d) = t.get_mut(&ino) {
            d.handles = d.handles.saturating_sub(1);
            if d.handles == 0 {
                t.remove(&ino);
            }
        }
    }

    /// Newer attributes of `attr.ino`, if it is open here.
    pub fn saw(&self, attr: &Attr) {
        if let Some(d) = self.table().get_mut(&attr.ino) {
            d.attr = attr.clone();
        }
    }

    /// What `fstat` of the removed directory `ino` shows, if it is open here: its last
    /// attributes with no links.
    pub fn removed(&self, ino: Ino) -> Option<Attr> {
        self.table().get(&ino).map(|d| Attr {
            nlink: 0,
            ..d.attr.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::fs::FileKind;

    fn dir(ino: Ino, perm: u16) -> Attr {
        Attr {
            ino,
            generation: 1,
            kind: FileKind::Directory,
            perm,
            nlink: 2,
            uid: 7,
            gid: 8,
            rdev: 0,
            size: 0,
            blocks: 0,
            flags: 0,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
        }
    }

    #[test]
    fn a_removed_directory_is_shown_while_a_handle_stays_open() {
        let d = OpenDirs::default();
        assert_eq!(d.removed(5), None);
        d.opened(dir(5, 0o755));
        d.opened(dir(5, 0o755));
        d.saw(&dir(5, 0o700));
        d.released(5);
        let a = d.removed(5).expect("one handle is still open");
        assert_eq!((a.nlink, a.perm, a.uid), (0, 0o700, 7));
        d.released(5);
        assert_eq!(d.removed(5), None);
        assert!(!d.opened_again(5));
        d.opened(dir(5, 0o755));
        assert!(d.opened_again(5));
        d.released(5);
        assert!(d.removed(5).is_some(), "one of two handles is still open");
    }
}
