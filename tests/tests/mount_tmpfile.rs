//! O_TMPFILE (issue 12, point 7) on real mounts, through the vendored fuser's FUSE_TMPFILE:
//! an unnamed file that `linkat` names (seen with its content from another mount), or that
//! goes with its last close; O_EXCL makes it unlinkable, as on ext4.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tessera_tests::mount::DevCluster;
use tessera_tests::script::python;

/// argv: a directory on one mount and the same directory on another.
const TMPFILE: &str = r#"
import ctypes, errno, os, stat, sys, time
a, b = sys.argv[1], sys.argv[2]
os.mkdir(a)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_EMPTY_PATH = -100, 0x1000
def linkat(fd, path):
    if libc.linkat(fd, b"", AT_FDCWD, path.encode(), AT_EMPTY_PATH) != 0:
        return errno.errorcode[ctypes.get_errno()]
    return "ok"
def inodes_used():
    s = os.statvfs(a)
    return s.f_files - s.f_ffree
def settles_at(want):
    for _ in range(100):
        if inodes_used() == want:
            return
        time.sleep(0.1)
    raise AssertionError("inodes used %d, want %d" % (inodes_used(), want))

before = inodes_used()
os.umask(0o022)
fd = os.open(a, os.O_TMPFILE | os.O_RDWR, 0o666)
st = os.fstat(fd)
assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644, oct(st.st_mode)
assert st.st_nlink == 0, st.st_nlink
assert os.listdir(a) == [] and os.listdir(b) == [], (os.listdir(a), os.listdir(b))
data = os.urandom(300000)
os.write(fd, data)
assert linkat(fd, os.path.join(a, "named")) == "ok"
assert os.fstat(fd).st_nlink == 1
# Named once: a second link is an ordinary hard link.
assert linkat(fd, os.path.join(a, "again")) == "ok"
os.close(fd)
time.sleep(1.2)  # the other mount's cached listing
assert sorted(os.listdir(b)) == ["again", "named"], os.listdir(b)
with open(os.path.join(b, "named"), "rb") as f:
    assert f.read() == data
assert os.stat(os.path.join(b, "named")).st_nlink == 2

# Never named: gone at close, space and inode with it. O_EXCL: linkat refuses.
used = inodes_used()
fd = os.open(a, os.O_TMPFILE | os.O_WRONLY | os.O_EXCL, 0o600)
os.write(fd, b"x" * 100000)
assert linkat(fd, os.path.join(a, "excl")) == "ENOENT"
assert inodes_used() == used + 1
os.close(fd)
settles_at(used)
fd = os.open(a, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"y" * 1000)
os.close(fd)
settles_at(used)
assert sorted(os.listdir(a)) == ["again", "named"], os.listdir(a)
print("ok: %d inodes before, %d after" % (before, inodes_used()))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn tmpfiles_are_named_by_linkat_or_go_at_close() {
    let c = DevCluster::start_with("tmpfile", 1, 3, "2+1", 2).await;
    let said = python(TMPFILE, &[&c.mount(0).join("t"), &c.mount(1).join("t")]);
    eprintln!("{said}");
}
