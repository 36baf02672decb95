//! POSIX ACLs (issue 12, point 5), with setfacl/getfacl on real mounts: a grant to another
//! user lets that user in through another mount and a revoke shuts them out again (the
//! kernel enforces, Tessera stores); the mode's group bits are the mask and `chmod` moves
//! the mask; a directory's default ACL is inherited by new files and directories instead
//! of the umask; a `--no-acl` mount refuses ACLs as ext4's `noacl` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tessera_tests::mount::DevCluster;
use tessera_tests::script::bash;

/// argv: a mount, another mount of the same cluster, a `--no-acl` mount. Run as root;
/// `nobody` is the other user. Each step waits out the attribute cache (1 s) before the
/// other mount looks, as the kernel keeps cached ACLs with cached attributes.
const ACLS: &str = r#"
set -euo pipefail
a=$1 b=$2 noacl=$3
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
fail() { echo "FAILED: $*"; exit 1; }
settle() { sleep 1.5; }
umask 022
mkdir "$a/d"
echo secret > "$a/d/f"
chmod 600 "$a/d/f"
settle
as_nobody cat "$b/d/f" 2>/dev/null && fail "nobody read a 0600 file"

# Grant: the entry is stored, the mode's group bits show the mask, the other mount lets
# nobody in.
setfacl -m u:nobody:r "$a/d/f"
getfacl -c "$a/d/f" | grep -qx 'user:nobody:r--' || fail "grant not stored: $(getfacl -c "$a/d/f")"
[[ $(stat -c %A "$a/d/f") == -rw-r-----* ]] || fail "mode after grant: $(stat -c %A "$a/d/f")"
ls -l "$a/d/f" | grep -q '^-rw-r-----+' || fail "ls shows no ACL: $(ls -l "$a/d/f")"
settle
[[ $(as_nobody cat "$b/d/f") == secret ]] || fail "nobody cannot read after the grant"

# chmod moves the mask: 600 leaves the grant without effect.
chmod 600 "$a/d/f"
getfacl -c "$a/d/f" | grep -qx 'mask::---' || fail "chmod did not move the mask: $(getfacl -c "$a/d/f")"
settle
as_nobody cat "$b/d/f" 2>/dev/null && fail "nobody read through a mask of ---"
chmod 640 "$a/d/f"
settle
[[ $(as_nobody cat "$b/d/f") == secret ]] || fail "nobody cannot read after the mask came back"

# Revoke.
setfacl -x u:nobody "$a/d/f"
settle
as_nobody cat "$b/d/f" 2>/dev/null && fail "nobody read after the revoke"
setfacl -b "$a/d/f"
getfacl -c "$a/d/f" | grep -q nobody && fail "setfacl -b left an entry"

# Inheritance: a default ACL replaces the umask for new nodes, a new directory inherits
# the default ACL too, and nobody may write where it grants.
setfacl -d -m u:nobody:rwx,g::rwx "$a/d"
touch "$a/d/new"
mkdir "$a/d/sub"
[[ $(stat -c %a "$a/d/new") == 664 ]] || fail "inherited file mode $(stat -c %a "$a/d/new")"
[[ $(stat -c %a "$a/d/sub") == 775 ]] || fail "inherited directory mode $(stat -c %a "$a/d/sub")"
getfacl -c "$a/d/new" | grep -q '^user:nobody:rwx' || fail "file did not inherit: $(getfacl -c "$a/d/new")"
getfacl -c "$a/d/sub" | grep -q '^default:user:nobody:rwx' || fail "directory did not inherit the default ACL"
umask 077
touch "$a/d/new77"
[[ $(stat -c %a "$a/d/new77") == 664 ]] || fail "the umask applied under a default ACL: $(stat -c %a "$a/d/new77")"
touch "$a/plain77"
[[ $(stat -c %a "$a/plain77") == 600 ]] || fail "the umask did not apply without a default ACL"
settle
as_nobody sh -c "echo hello > '$b/d/new'" || fail "nobody cannot write an inherited grant"
[[ $(cat "$a/d/new") == hello ]] || fail "write by nobody lost"

# A --no-acl mount refuses ACLs as a noacl file system does.
setfacl -m u:nobody:r "$noacl/plain77" 2>/dev/null && fail "--no-acl mount took an ACL"
echo ok
"#;

#[tokio::test(flavor = "multi_thread")]
async fn acls_are_stored_inherited_and_enforced_across_mounts() {
    let mut c = DevCluster::start_with("acl", 1, 3, "2+1", 2).await;
    let noacl = c.add_mount(&["--no-acl"]);
    let (a, b, n): (&Path, &Path, &Path) =
        (c.mount(0).path(), c.mount(1).path(), c.mount(noacl).path());
    bash(ACLS, &[a, b, n]);
}
