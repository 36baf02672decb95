//! overlayfs with its upper and work directories on Tessera, as container runtimes use it
//! (issue 12, point 4): the kernel checks `RENAME_WHITEOUT` when it mounts the overlay, and
//! deleting or renaming a lower file leaves a whiteout (character device 0:0) in the upper
//! directory, which every Tessera mount must see as such.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_tests::mount::DevCluster;
use tessera_tests::script::python;
use tessera_tests::tempdir::TempDir;

/// An overlay mount, unmounted (lazily if busy) when dropped, so a failing test leaves none.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn mount(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> Overlay {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(merged)
            .output()
            .expect("run mount");
        let dmesg = Command::new("dmesg").output().map(|o| o.stdout);
        let tail = String::from_utf8_lossy(dmesg.as_deref().unwrap_or_default())
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            out.status.success(),
            "mounting the overlay failed: {}\nkernel log, newest first:\n{tail}",
            String::from_utf8_lossy(&out.stderr)
        );
        Overlay {
            merged: merged.to_path_buf(),
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.merged)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Whether `p` is a whiteout: a character device with device number 0:0.
fn is_whiteout(p: &Path) -> bool {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    m.file_type().is_char_device() && m.rdev() == 0
}

/// What the overlay must show after the changes made through it.
fn assert_merged_view(merged: &Path) {
    assert_eq!(names(merged), ["change", "kept", "ldir", "new"]);
    assert_eq!(read(&merged.join("change")), "lower\nupper\n");
    assert_eq!(read(&merged.join("kept")), "keep\n");
    assert_eq!(read(&merged.join("new")), "new\n");
    // Removed and made again: the lower directory's entries stay hidden.
    assert_eq!(names(&merged.join("ldir")), ["fresh"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn overlayfs_works_with_its_upper_and_work_directories_on_tessera() {
    let mut c = DevCluster::start_with("overlay", 1, 3, "2+1", 1).await;
    let other = c.add_mount(&[]);
    let lower = TempDir::new("overlay-lower");
    let merged = TempDir::new("overlay-merged");
    for (name, body) in [
        ("keep", "keep\n"),
        ("change", "lower\n"),
        ("gone", "gone\n"),
    ] {
        std::fs::write(lower.join(name), body).unwrap();
    }
    std::fs::create_dir_all(lower.join("ldir/inner")).unwrap();
    std::fs::write(lower.join("ldir/inner/deep"), "deep\n").unwrap();
    let (upper, work) = (c.mount(0).join("upper"), c.mount(0).join("work"));
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();

    {
        let _ovl = Overlay::mount(lower.path(), &upper, &work, merged.path());
        let m = merged.path();
        std::fs::write(m.join("new"), "new\n").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("change"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"upper\n").unwrap();
        drop(f);
        std::fs::remove_file(m.join("gone")).unwrap();
        std::fs::rename(m.join("keep"), m.join("kept")).unwrap();
        std::fs::remove_dir_all(m.join("ldir")).unwrap();
        std::fs::create_dir(m.join("ldir")).unwrap();
        std::fs::write(m.join("ldir/fresh"), "").unwrap();
        assert_merged_view(m);
    }

    // The upper directory as another Tessera mount sees it: the deleted and the renamed
    // lower files are whiteouts.
    let seen = c.mount(other).join("upper");
    for gone in ["gone", "keep"] {
        assert!(is_whiteout(&seen.join(gone)), "{gone} is not a whiteout");
    }
    assert_eq!(read(&seen.join("change")), "lower\nupper\n");
    // The lower directory was never touched.
    assert_eq!(names(lower.path()), ["change", "gone", "keep", "ldir"]);
    assert_eq!(read(&lower.join("change")), "lower\n");

    // A new overlay over the same directories shows the same tree.
    let _ovl = Overlay::mount(lower.path(), &upper, &work, merged.path());
    assert_merged_view(merged.path());
}

/// `renameat2(RENAME_WHITEOUT)` called directly: the source's name becomes a whiteout owned
/// by the caller in the same step, `NOREPLACE` still refuses a target, and `EXCHANGE` does
/// not combine with it.
const RENAME_WHITEOUT: &str = r#"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, NOREPLACE, EXCHANGE, WHITEOUT = -100, 1, 2, 4
def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        return ctypes.get_errno()
    return 0
d = sys.argv[1]
a, b, c = (os.path.join(d, n) for n in "abc")
for p in (a, c):
    with open(p, "w") as f:
        f.write(p)
assert renameat2(a, b, WHITEOUT | EXCHANGE) == errno.EINVAL
assert renameat2(a, c, WHITEOUT | NOREPLACE) == errno.EEXIST
assert renameat2(a, b, WHITEOUT) == 0
st = os.lstat(a)
assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (0, 0) and st.st_mode == 0o20000, oct(st.st_mode)
assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
assert open(b).read() == a
print("ok")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn rename_whiteout_leaves_a_whiteout_in_the_same_step() {
    let mut c = DevCluster::start_with("whiteout", 1, 3, "2+1", 1).await;
    let other = c.add_mount(&[]);
    let dir = c.mount(0).path().to_path_buf();
    python(RENAME_WHITEOUT, &[&dir]);
    assert!(is_whiteout(&c.mount(other).join("a")));
    assert_eq!(names(c.mount(other).path()), ["a", "b", "c"]);
}
