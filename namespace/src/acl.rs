//! POSIX ACLs kept in step with the mode, as Linux keeps them.
//!
//! With FUSE's POSIX ACL support the kernel enforces ACLs (it reads
//! `system.posix_acl_access` and caches it) but leaves three things to the file system,
//! done here in the same command as the change that needs them:
//! - setting an access ACL sets the mode's permission bits from it, and an ACL that says no
//!   more than the mode is not stored at all (`posix_acl_update_mode`);
//! - `chmod` rewrites the stored access ACL's owner, mask (or group) and other entries
//!   (`posix_acl_chmod`);
//! - a node created in a directory with a default ACL gets it as its access ACL, masked by
//!   the mode asked for, instead of the umask; a new directory also inherits the default
//!   ACL itself (`posix_acl_create`).
//!
//! The value is the kernel's xattr form: a little-endian `u32` version (2), then 8-byte
//! entries `(tag: u16, perm: u16, id: u32)`, sorted by tag and id.

use super::command::Response;
use super::dir;
use super::nodes::NewInode;
use super::state::{OpResult, Tables, TablesMut, counter, keys};
use super::store::{Store, StoreRead, Table};
use tessera_proto::fs::{FsError, Ino};

pub use tessera_proto::fs::{XATTR_ACL_ACCESS as ACCESS, XATTR_ACL_DEFAULT as DEFAULT};

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// A parsed ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

impl Acl {
    /// Parses the xattr form; anything malformed is `EINVAL` (never a panic).
    pub fn parse(bytes: &[u8]) -> Result<Acl, FsError> {
        let (head, body) = bytes.split_at_checked(4).ok_or(FsError::Invalid)?;
        if u32::from_le_bytes(head.try_into().map_err(|_| FsError::Invalid)?) != VERSION
            || body.len() % 8 != 0
        {
            return Err(FsError::Invalid);
        }
        let entries: Vec<Entry> = body
            .chunks_exact(8)
            .map(|e| Entry {
                tag: u16::from_le_bytes([e[0], e[1]]),
                perm: u16::from_le_bytes([e[2], e[3]]),
                id: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            })
            .collect();
        let acl = Acl { entries };
        acl.check()?;
        Ok(acl)
    }

    /// The rules of `posix_acl_valid`: one owner, owning-group and other entry each, named
    /// entries only with a mask, at most one mask, permissions within rwx, known tags.
    fn check(&self) -> Result<(), FsError> {
        let count = |tag| self.entries.iter().filter(|e| e.tag == tag).count();
        let known = [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER];
        let valid = self
            .entries
            .iter()
            .all(|e| known.contains(&e.tag) && e.perm & !7 == 0)
            && count(USER_OBJ) == 1
            && count(GROUP_OBJ) == 1
            && count(OTHER) == 1
            && count(MASK) <= 1
            && (count(USER) + count(GROUP) == 0 || count(MASK) == 1);
        if valid { Ok(()) } else { Err(FsError::Invalid) }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        for e in &self.entries {
            out.extend_from_slice(&e.tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.id.to_le_bytes());
        }
        out
    }

    fn perm(&self, tag: u16) -> u16 {
        self.entries
            .iter()
            .find(|e| e.tag == tag)
            .map_or(0, |e| e.perm)
    }

    fn has(&self, tag: u16) -> bool {
        self.entries.iter().any(|e| e.tag == tag)
    }

    /// Whether the ACL says more than permission bits can (named entries or a mask).
    fn extended(&self) -> bool {
        self.has(USER) || self.has(GROUP) || self.has(MASK)
    }

    /// `mode` (permission bits and the set-ID and sticky bits above them) with its
    /// permission bits taken from the ACL: owner, mask (else owning group), other.
    pub fn mode_bits(&self, mode: u16) -> u16 {
        let group = if self.has(MASK) {
            self.perm(MASK)
        } else {
            self.perm(GROUP_OBJ)
        };
        (mode & !0o777) | self.perm(USER_OBJ) << 6 | group << 3 | self.perm(OTHER)
    }

    /// `chmod`: owner, mask (else owning group) and other entries follow `mode`.
    pub fn chmod(&mut self, mode: u16) {
        let group_tag = if self.has(MASK) { MASK } else { GROUP_OBJ };
        for e in &mut self.entries {
            match e.tag {
                USER_OBJ => e.perm = (mode >> 6) & 7,
                OTHER => e.perm = mode & 7,
                t if t == group_tag => e.perm = (mode >> 3) & 7,
                _ => {}
            }
        }
    }

    /// `posix_acl_create_masq`: a default ACL becomes a new node's access ACL, each class
    /// masked by `mode`; returns the ACL (`None` when the mode says it all) and the mode.
    fn create_masq(mut self, mode: u16) -> (Option<Acl>, u16) {
        let mut bits = mode & 0o777;
        let group_tag = if self.has(MASK) { MASK } else { GROUP_OBJ };
        for e in &mut self.entries {
            match e.tag {
                USER_OBJ => {
                    e.perm &= (bits >> 6) & 7;
                    bits &= (e.perm << 6) | !0o700;
                }
                OTHER => {
                    e.perm &= bits & 7;
                    bits &= e.perm | !0o007;
                }
                _ => {}
            }
        }
        for e in &mut self.entries {
            if e.tag == group_tag {
                e.perm &= (bits >> 3) & 7;
                bits &= (e.perm << 3) | !0o070;
            }
        }
        let mode = (mode & !0o777) | (bits & 0o777);
        let acl = self.extended().then_some(self);
        (acl, mode)
    }
}

/// Setting `system.posix_acl_access` to `value`: the mode's permission bits follow the ACL,
/// and the ACL is stored only if it says more than them. Returns whether it is stored.
pub(crate) fn set_access<S: Store + ?Sized>(s: &mut S, ino: Ino, value: &[u8]) -> OpResult<bool> {
    let acl = Acl::parse(value)?;
    let perm = s.need_inode(ino)?.perm;
    s.update_inode(ino, |r| r.perm = acl.mode_bits(perm))?;
    let key = keys::xattr(ino, ACCESS);
    if acl.extended() {
        s.put_rec(Table::Xattrs, &key, &acl.encode())?;
        mark_used(s)?;
        Ok(true)
    } else {
        s.delete(Table::Xattrs, &key)?;
        Ok(false)
    }
}

/// Records that an ACL is stored somewhere (see [`counter::ACLS_USED`]).
pub(crate) fn mark_used<S: Store + ?Sized>(s: &mut S) -> OpResult<()> {
    if s.counter(counter::ACLS_USED)? == 0 {
        s.put_counter(counter::ACLS_USED, 1)?;
    }
    Ok(())
}

/// Whether any ACL was ever stored.
pub(crate) fn used<S: StoreRead + ?Sized>(s: &S) -> OpResult<bool> {
    Ok(s.counter(counter::ACLS_USED)? != 0)
}

/// After `chmod` of `ino` to `perm`: its stored access ACL follows.
pub(crate) fn follow_chmod<S: Store + ?Sized>(s: &mut S, ino: Ino, perm: u16) -> OpResult<()> {
    let key = keys::xattr(ino, ACCESS);
    let Some(value) = s.rec::<Vec<u8>>(Table::Xattrs, &key)? else {
        return Ok(());
    };
    // A stored ACL that does not parse was not written through here; leave it to be
    // replaced rather than fail the chmod.
    if let Ok(mut acl) = Acl::parse(&value) {
        acl.chmod(perm);
        s.put_rec(Table::Xattrs, &key, &acl.encode())?;
    }
    Ok(())
}

/// `dir::make` under POSIX ACL rules: when `parent` has a default ACL the new node gets it
/// (as its access ACL, masked by the requested mode, and a directory also as its default
/// ACL) and the umask is ignored; otherwise the permission bits lose the `umask` bits.
pub(crate) fn make<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    name: &[u8],
    new: NewInode,
    umask: u16,
    open_in: Option<u64>,
    now: i64,
) -> OpResult<Response> {
    make_with(s, parent, new, umask, |s, new| {
        dir::make(s, parent, name, new, open_in, now)
    })
}

/// `make` for a file with no name (`O_TMPFILE`), opened by `session`.
pub(crate) fn make_unnamed<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    new: NewInode,
    umask: u16,
    session: u64,
    now: i64,
) -> OpResult<Response> {
    make_with(s, parent, new, umask, |s, new| {
        dir::make_unnamed(s, parent, new, session, now)
    })
}

/// Decides the new node's mode and ACLs from `parent`'s default ACL (or `umask`), has
/// `create` make it, then stores the ACLs it inherits.
fn make_with<S: Store + ?Sized>(
    s: &mut S,
    parent: Ino,
    mut new: NewInode,
    umask: u16,
    create: impl FnOnce(&mut S, NewInode) -> OpResult<Response>,
) -> OpResult<Response> {
    let default = s.rec::<Vec<u8>>(Table::Xattrs, &keys::xattr(parent, DEFAULT))?;
    // A stored default ACL that does not parse was not written through here: the node is
    // made as if there were none.
    let default = default.and_then(|bytes| Some((Acl::parse(&bytes).ok()?, bytes)));
    let (access, default) = match default {
        Some((acl, bytes)) => {
            let (access, mode) = acl.create_masq(new.perm);
            new.perm = mode;
            (access, Some(bytes))
        }
        None => {
            new.perm &= !umask;
            (None, None)
        }
    };
    let is_dir = new.kind.is_dir();
    let made = create(s, new)?;
    if let Response::Attr(a) = &made {
        if let Some(access) = access {
            s.put_rec(Table::Xattrs, &keys::xattr(a.ino, ACCESS), &access.encode())?;
        }
        if let Some(default) = default.filter(|_| is_dir) {
            s.put_rec(Table::Xattrs, &keys::xattr(a.ino, DEFAULT), &default)?;
        }
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Acl {
        Acl {
            entries: entries
                .iter()
                .map(|&(tag, perm, id)| Entry { tag, perm, id })
                .collect(),
        }
    }

    #[test]
    fn parse_round_trips_and_refuses_malformed_values() {
        let a = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 6, 1000),
            (GROUP_OBJ, 5, 0),
            (MASK, 6, 0),
            (OTHER, 4, 0),
        ]);
        assert_eq!(Acl::parse(&a.encode()), Ok(a.clone()));
        let bytes = a.encode();
        assert_eq!(Acl::parse(&bytes[..bytes.len() - 1]), Err(FsError::Invalid));
        assert_eq!(Acl::parse(&bytes[..2]), Err(FsError::Invalid));
        assert_eq!(Acl::parse(&[]), Err(FsError::Invalid));
        let mut v3 = bytes.clone();
        v3[0] = 3;
        assert_eq!(Acl::parse(&v3), Err(FsError::Invalid));
        // A named entry without a mask, a missing owner, a permission past rwx.
        for bad in [
            acl(&[
                (USER_OBJ, 7, 0),
                (USER, 6, 1),
                (GROUP_OBJ, 5, 0),
                (OTHER, 4, 0),
            ]),
            acl(&[(GROUP_OBJ, 5, 0), (OTHER, 4, 0)]),
            acl(&[(USER_OBJ, 8, 0), (GROUP_OBJ, 5, 0), (OTHER, 4, 0)]),
        ] {
            assert_eq!(Acl::parse(&bad.encode()), Err(FsError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn mode_bits_take_the_mask_for_the_group_class() {
        let a = acl(&[
            (USER_OBJ, 6, 0),
            (USER, 7, 5),
            (GROUP_OBJ, 4, 0),
            (MASK, 5, 0),
            (OTHER, 0, 0),
        ]);
        assert_eq!(a.mode_bits(0o2777), 0o2650);
        assert!(a.extended());
        let plain = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 4, 0), (OTHER, 4, 0)]);
        assert_eq!(plain.mode_bits(0), 0o644);
        assert!(!plain.extended());
    }

    #[test]
    fn chmod_moves_the_mask_not_the_owning_group() {
        let mut a = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 5),
            (GROUP_OBJ, 5, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]);
        a.chmod(0o640);
        assert_eq!(
            a,
            acl(&[
                (USER_OBJ, 6, 0),
                (USER, 7, 5),
                (GROUP_OBJ, 5, 0),
                (MASK, 4, 0),
                (OTHER, 0, 0)
            ])
        );
    }

    #[test]
    fn create_masks_the_default_acl_with_the_mode() {
        let default = acl(&[
            (USER_OBJ, 7, 0),
            (USER, 7, 5),
            (GROUP_OBJ, 5, 0),
            (MASK, 7, 0),
            (OTHER, 5, 0),
        ]);
        let (access, mode) = default.clone().create_masq(0o100666);
        assert_eq!(mode, 0o100664);
        assert_eq!(
            access,
            Some(acl(&[
                (USER_OBJ, 6, 0),
                (USER, 7, 5),
                (GROUP_OBJ, 5, 0),
                (MASK, 6, 0),
                (OTHER, 4, 0)
            ]))
        );
        // Only the three base entries: the mode says it all, nothing is stored.
        let base = acl(&[(USER_OBJ, 7, 0), (GROUP_OBJ, 5, 0), (OTHER, 0, 0)]);
        assert_eq!(base.create_masq(0o777), (None, 0o750));
    }

    mod through_commands {
        use super::*;
        use crate::command::{Op, Query, Response};
        use crate::testkit::Ns;
        use tessera_proto::fs::{FileKind, SetAttr, XattrMode};

        fn set(ns: &mut Ns, ino: Ino, name: &[u8], a: &Acl) -> Result<Response, FsError> {
            ns.cmd(Op::SetXattr {
                ino,
                name: name.to_vec(),
                value: a.encode(),
                mode: XattrMode::Upsert,
            })
        }

        fn get(ns: &Ns, ino: Ino, name: &[u8]) -> Result<Acl, FsError> {
            match ns.q(Query::GetXattr {
                ino,
                name: name.to_vec(),
            })? {
                Response::Xattr(v) => Acl::parse(&v),
                other => panic!("{other:?}"),
            }
        }

        fn used(ns: &Ns) -> bool {
            ns.q(Query::AclsUsed) == Ok(Response::Flag(true))
        }

        #[test]
        fn an_access_acl_sets_the_mode_and_chmod_moves_its_mask() {
            let mut ns = Ns::new();
            let root = ns.root();
            let f = ns.create(root, "f");
            assert!(!used(&ns));
            // Only base entries: the mode changes, nothing is stored.
            let base = acl(&[(USER_OBJ, 6, 0), (GROUP_OBJ, 0, 0), (OTHER, 0, 0)]);
            set(&mut ns, f, ACCESS, &base).unwrap();
            assert_eq!(ns.attr(f).unwrap().perm, 0o600);
            assert_eq!(get(&ns, f, ACCESS), Err(FsError::NoData));
            assert!(!used(&ns));
            let grant = acl(&[
                (USER_OBJ, 6, 0),
                (USER, 4, 65534),
                (GROUP_OBJ, 0, 0),
                (MASK, 4, 0),
                (OTHER, 0, 0),
            ]);
            set(&mut ns, f, ACCESS, &grant).unwrap();
            assert_eq!(ns.attr(f).unwrap().perm, 0o640);
            assert_eq!(get(&ns, f, ACCESS), Ok(grant));
            assert!(used(&ns));
            let chmod = SetAttr {
                perm: Some(0o600),
                ..SetAttr::default()
            };
            ns.cmd(Op::SetAttr { ino: f, set: chmod }).unwrap();
            assert_eq!(get(&ns, f, ACCESS).unwrap().perm(MASK), 0);
            let junk = ns.cmd(Op::SetXattr {
                ino: f,
                name: ACCESS.to_vec(),
                value: vec![2, 0, 0],
                mode: XattrMode::Upsert,
            });
            assert_eq!(junk, Err(FsError::Invalid));
        }

        #[test]
        fn new_nodes_take_the_default_acl_instead_of_the_umask() {
            let mut ns = Ns::new();
            let root = ns.root();
            let d = ns.mkdir(root, "d");
            let default = acl(&[
                (USER_OBJ, 7, 0),
                (USER, 7, 65534),
                (GROUP_OBJ, 7, 0),
                (MASK, 7, 0),
                (OTHER, 5, 0),
            ]);
            set(&mut ns, d, DEFAULT, &default).unwrap();
            let make = |ns: &mut Ns, parent, name: &str, kind, perm| {
                let r = ns.cmd(Op::MakeNode {
                    parent,
                    name: name.into(),
                    kind,
                    perm,
                    umask: 0o077,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    open: false,
                });
                match r {
                    Ok(Response::Attr(a)) => a,
                    other => panic!("{other:?}"),
                }
            };
            let f = make(&mut ns, d, "f", FileKind::Regular, 0o666);
            assert_eq!(f.perm, 0o664);
            assert_eq!(get(&ns, f.ino, ACCESS).unwrap().perm(MASK), 6);
            assert_eq!(get(&ns, f.ino, DEFAULT), Err(FsError::NoData));
            let sub = make(&mut ns, d, "sub", FileKind::Directory, 0o777);
            assert_eq!(sub.perm, 0o775);
            assert_eq!(get(&ns, sub.ino, DEFAULT), Ok(default));
            // Without a default ACL the umask applies.
            let plain = make(&mut ns, root, "plain", FileKind::Regular, 0o666);
            assert_eq!(plain.perm, 0o600);
            assert_eq!(get(&ns, plain.ino, ACCESS), Err(FsError::NoData));
        }
    }
}
