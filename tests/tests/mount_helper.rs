//! Mounting the way Linux mounts (issue 15, point 6): `mount -t tessera`, `mount -t
//! fuse.tessera` and an fstab line (`mount -T FSTAB DIR`) run the binary as
//! `/sbin/mount.tessera`; the mount's source is the metaserver list, its type
//! `fuse.tessera`, its options are honoured or refused by name, and `umount` ends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use tessera_tests::bin::tessera_bin;
use tessera_tests::fault::wait_for;
use tessera_tests::mount::{DevCluster, unmount};
use tessera_tests::tempdir::TempDir;

const HELPERS: [&str; 2] = ["/sbin/mount.tessera", "/sbin/mount.fuse.tessera"];

/// The helper links mount(8) looks for, removed again when dropped (only if they still
/// point at this build's binary).
struct HelperLinks;

impl HelperLinks {
    fn install() -> HelperLinks {
        for link in HELPERS {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(tessera_bin(), link)
                .unwrap_or_else(|e| panic!("cannot link {link}: {e}"));
        }
        HelperLinks
    }
}

impl Drop for HelperLinks {
    fn drop(&mut self) {
        for link in HELPERS {
            if std::fs::read_link(link).is_ok_and(|t| t == tessera_bin()) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// A directory mounted through mount(8): unmounted and its process killed when dropped,
/// whatever the test did.
struct HelperMount {
    dir: PathBuf,
    pid: Option<i32>,
}

impl Drop for HelperMount {
    fn drop(&mut self) {
        unmount(&self.dir);
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run mount(8)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Mounts with `cmd` (a mount(8) call for `dir`), which must succeed, and returns the guard.
fn mounted(cmd: &mut Command, dir: &Path) -> HelperMount {
    let out = run(cmd);
    assert!(out.status.success(), "mount failed: {}", text(&out));
    // `tessera mount --detach` says "mounted DIR (pid N)".
    let said = text(&out);
    let pid = said
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok());
    assert!(pid.is_some(), "no pid in {said:?}");
    HelperMount {
        dir: dir.to_path_buf(),
        pid,
    }
}

/// `findmnt`'s SOURCE, FSTYPE and OPTIONS of the mount at `dir`.
fn findmnt(dir: &Path) -> (String, String, String) {
    let out = run(Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE,OPTIONS"])
        .arg(dir));
    assert!(out.status.success(), "{} is not mounted", dir.display());
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{line}");
    (f[0].into(), f[1].into(), f[2].into())
}

/// `umount DIR` ends the mount and its process.
async fn umount(m: &mut HelperMount) {
    let out = run(Command::new("umount").arg(&m.dir));
    assert!(out.status.success(), "umount: {}", text(&out));
    let pid = m.pid.expect("pid");
    wait_for(
        "the mount process to exit after umount",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
    )
    .await;
    m.pid = None;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_t_tessera_fstab_lines_and_umount() {
    let c = DevCluster::start_with("mount-helper", 1, 3, "2+1", 1).await;
    let _links = HelperLinks::install();
    let source = c.meta.addrs().join(",");
    let secret = c.secret_file.display().to_string();
    let dirs = TempDir::new("mount-helper-dirs");
    let dir = |n: &str| {
        let d = dirs.join(n);
        std::fs::create_dir(&d).unwrap();
        d
    };

    // mount -t tessera, with tessera's own options and the usual ones.
    let a = dir("a");
    let mut ma = mounted(
        Command::new("mount")
            .args(["-t", "tessera", "-o"])
            .arg(format!(
                "secret_file={secret},ec=2+1,noatime,_netdev,defaults"
            ))
            .arg(&source)
            .arg(&a),
        &a,
    );
    let (src, fstype, opts) = findmnt(&a);
    assert_eq!(
        (src.as_str(), fstype.as_str()),
        (source.as_str(), "fuse.tessera")
    );
    assert!(opts.split(',').any(|o| o == "noatime"), "{opts}");
    std::fs::write(a.join("through-helper"), "helper\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(c.mount(0).join("through-helper")).unwrap(),
        "helper\n"
    );

    // mount -t fuse.tessera.
    let b = dir("b");
    let mut mb = mounted(
        Command::new("mount")
            .args(["-t", "fuse.tessera", "-o"])
            .arg(format!("secret_file={secret}"))
            .arg(&source)
            .arg(&b),
        &b,
    );
    assert_eq!(findmnt(&b).1, "fuse.tessera");
    assert_eq!(
        std::fs::read_to_string(b.join("through-helper")).unwrap(),
        "helper\n"
    );

    // An fstab line, mounted by its directory alone.
    let f = dir("f");
    let fstab = dirs.join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "{source} {} tessera secret_file={secret},ec=2+1,_netdev,nofail,x-systemd.device-timeout=10 0 0\n",
            f.display()
        ),
    )
    .unwrap();
    let mut mf = mounted(Command::new("mount").arg("-T").arg(&fstab).arg(&f), &f);
    assert_eq!(findmnt(&f).0, source);
    assert!(f.join("through-helper").exists());

    // An option Tessera does not know fails the mount and is named.
    let bad = dir("bad");
    let out = run(Command::new("mount")
        .args(["-t", "tessera", "-o"])
        .arg(format!("secret_file={secret},bogus=1"))
        .arg(&source)
        .arg(&bad));
    assert!(!out.status.success(), "a bogus option mounted");
    assert!(text(&out).contains("bogus=1"), "{}", text(&out));
    assert!(
        Command::new("findmnt")
            .arg(&bad)
            .status()
            .is_ok_and(|s| !s.success()),
        "{} is mounted",
        bad.display()
    );

    for m in [&mut ma, &mut mb, &mut mf] {
        umount(m).await;
    }
}
