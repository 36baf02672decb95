//! Inode flags (issue 12, point 6) with chattr/lsattr on real mounts: a flag set through one
//! mount binds the other at once (the namespace enforces it, and opens check the flags the
//! open itself returns); immutable stops every change, append-only lets a file grow at its
//! end only and a directory gain entries only; a caller without CAP_LINUX_IMMUTABLE cannot
//! set or clear either flag, even on its own file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_tests::mount::DevCluster;
use tessera_tests::script::bash;

/// argv: a mount and another mount of the same cluster. Run as root; `nobody` is the user
/// without the capability.
const FLAGS: &str = r#"
set -euo pipefail
a=$1 b=$2
fail() { echo "FAILED: $*"; exit 1; }
refused() { # a command that must fail with EPERM ("Operation not permitted")
  local out
  if out=$("$@" 2>&1); then fail "allowed: $*"; fi
  [[ $out == *"Operation not permitted"* ]] || fail "$* failed otherwise: $out"
}

# Immutable, set on one mount, binding the other.
echo content > "$a/i"
chattr +i "$a/i"
[[ $(lsattr -d "$b/i" | cut -c1-22) == *i* ]] || fail "lsattr on the other mount: $(lsattr "$b/i")"
refused sh -c "echo more >> '$b/i'"
refused sh -c "echo new > '$b/i'"
refused truncate -s 0 "$b/i"
refused rm -f "$b/i"
refused mv "$b/i" "$b/i2"
refused ln "$b/i" "$b/i3"
refused chmod 600 "$b/i"
refused chown nobody "$b/i"
refused touch "$b/i"
refused setfattr -n user.k -v v "$b/i"
echo other > "$b/o"
refused mv "$b/o" "$b/i"
[[ $(cat "$b/i") == content ]] || fail "immutable file changed: $(cat "$b/i")"
[[ $(stat -c %a "$b/i") == 644 ]] || fail "mode changed"

# Append-only file: appends pass, anything else does not.
echo line1 > "$a/log"
chattr +a "$a/log"
echo line2 >> "$b/log"
refused sh -c "echo over > '$b/log'"
refused truncate -s 0 "$b/log"
refused rm -f "$b/log"
refused mv "$b/log" "$b/log2"
refused chmod 600 "$b/log"
touch "$b/log" # times to "now" are allowed
[[ $(cat "$a/log") == $'line1\nline2' ]] || fail "append-only content: $(cat "$a/log")"

# Directories: append-only gains entries and loses none; immutable does neither.
mkdir "$a/d"
touch "$a/d/old"
chattr +a "$a/d"
touch "$b/d/new"
refused rm "$b/d/old"
refused mv "$b/d/old" "$b/d/renamed"
chattr -a "$a/d"
chattr +i "$a/d"
refused touch "$b/d/more"
refused mkdir "$b/d/sub"
refused rm "$b/d/new"
[[ $(ls "$b/d" | tr '\n' ' ') == "new old " ]] || fail "directory entries: $(ls "$b/d")"

# Without CAP_LINUX_IMMUTABLE the owner cannot set or clear the flags.
touch "$a/own"
chown nobody "$a/own"
refused setpriv --reuid=65534 --regid=65534 --clear-groups chattr +i "$b/own"
chattr +a "$a/own"
refused setpriv --reuid=65534 --regid=65534 --clear-groups chattr -a "$b/own"

# Cleared again, everything works.
chattr -i "$b/i" "$b/d"
chattr -a "$b/log" "$b/own"
[[ $(lsattr -d "$a/i" | cut -c1-22) != *i* ]] || fail "flag still set: $(lsattr "$a/i")"
echo changed > "$a/i"
rm "$a/i" "$a/log" "$a/own" "$a/o"
rm -r "$a/d"
echo ok
"#;

#[tokio::test(flavor = "multi_thread")]
async fn immutable_and_append_only_bind_every_mount() {
    let c = DevCluster::start_with("inode-flags", 1, 3, "2+1", 2).await;
    bash(FLAGS, &[c.mount(0).path(), c.mount(1).path()]);
}
