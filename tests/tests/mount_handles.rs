//! File handles (issue 12, point 7): `name_to_handle_at` on one mount and
//! `open_by_handle_at` later (after the kernel dropped its caches, and on a new mount that
//! never saw the file) open the same file or directory, as NFS re-export needs. A handle of
//! a file that was removed gives ESTALE.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tessera_tests::mount::DevCluster;
use tessera_tests::script::python;

/// argv: the mount where the files are made, then another mount of the same cluster.
/// Handles are taken on the first; they must open there after `drop_caches` and on the second
/// (a new superblock: the kernel knows none of the inodes and asks the mount to look up "."
/// in the inode number the handle carries, and ".." to place a directory).
const HANDLES: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
class Handle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * 128)]
def handle(path):
    h, mount_id = Handle(), ctypes.c_int()
    h.handle_bytes = 128
    if libc.name_to_handle_at(AT_FDCWD, path.encode(), ctypes.byref(h), ctypes.byref(mount_id), 0):
        raise OSError(ctypes.get_errno(), "name_to_handle_at " + path)
    return h
def open_by(mnt, h, flags=os.O_RDONLY):
    mfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(h), flags)
    err = ctypes.get_errno()
    os.close(mfd)
    if fd < 0:
        raise OSError(err, "open_by_handle_at in " + mnt)
    return fd
def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
a, b = sys.argv[1], sys.argv[2]
os.makedirs(a + "/d/e")
with open(a + "/d/e/f", "w") as f:
    f.write("hello")
with open(a + "/gone", "w") as f:
    f.write("bye")
file_h, dir_h, gone_h = handle(a + "/d/e/f"), handle(a + "/d/e"), handle(a + "/gone")
for mnt, when in ((a, "at once"), (a, "after drop_caches"), (b, "on another mount")):
    if when == "after drop_caches":
        drop_caches()
    fd = open_by(mnt, file_h, os.O_RDWR)
    assert os.read(fd, 10) == b"hello", when
    os.close(fd)
    fd = open_by(mnt, dir_h)
    assert os.listdir(fd) == ["f"], when
    # The directory is placed in the tree: its path is known again.
    assert os.readlink("/proc/self/fd/%d" % fd) == mnt + "/d/e", (when, os.readlink("/proc/self/fd/%d" % fd))
    os.close(fd)
os.unlink(b + "/gone")
drop_caches()
try:
    open_by(a, gone_h)
    sys.exit("a handle of a removed file still opened")
except OSError as e:
    assert e.errno == errno.ESTALE, e
print("ok")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn file_handles_open_after_cache_drops_and_on_another_mount() {
    let mut c = DevCluster::start_with("handles", 1, 3, "2+1", 1).await;
    let other = c.add_mount(&[]);
    let (a, b): (&Path, &Path) = (c.mount(0).path(), c.mount(other).path());
    python(HANDLES, &[a, b]);
}
