//! `mount -t tessera` and fstab lines: the binary run as `/sbin/mount.tessera` (or
//! `/sbin/mount.fuse.tessera`, for `-t fuse.tessera`), the way mount(8) calls helpers:
//!
//! ```text
//! mount.tessera SOURCE DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]
//! ```
//!
//! SOURCE is the metaserver list (`HOST:PORT,HOST:PORT`); OPTIONS carry `tessera mount`'s
//! flags (`secret_file=F`, `ec=4+2`, ...) and the usual mount options. The helper starts
//! `tessera mount --detach` and returns once the file system is mounted, as mount(8)
//! expects; `umount DIR` ends the mount process. Install with
//! `ln -s "$(command -v tessera)" /sbin/mount.tessera` (and `/sbin/mount.fuse.tessera`).

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::process::ExitCode;

/// The names mount(8) runs this binary by.
const HELPER_NAMES: [&str; 2] = ["mount.tessera", "mount.fuse.tessera"];

/// Options that take a value and become the `tessera mount` flag of the same name.
const VALUE_OPTIONS: [&str; 11] = [
    "secret_file",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "ec",
    "stripe_size",
    "attr_ttl_ms",
    "meta_timeout_ms",
    "session_lease_ms",
    "metrics_addr",
    "log_file",
];

/// Options mount(8), systemd or fstab conventions use that change nothing for the mount
/// process itself (`_netdev` orders it after the network at boot; `noauto`, `nofail` and
/// `user` are read by mount(8) and systemd).
const IGNORED_OPTIONS: [&str; 11] = [
    "defaults", "rw", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "exec",
    "async",
];

/// Whether this process was started under a helper name (`argv[0]`).
pub fn called_as_helper(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    HELPER_NAMES.contains(&name)
}

/// Runs the helper on mount(8)'s arguments (without `argv[0]`).
pub fn run(args: Vec<OsString>) -> ExitCode {
    match helper(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mount.tessera: {e:#}");
            // mount(8)'s "mount failure" status.
            ExitCode::from(32)
        }
    }
}

fn helper(args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let call = HelperCall::parse(args)?;
    let flags = mount_flags(&call.options)?;
    let mut argv: Vec<OsString> = vec!["mount".into(), call.dir.clone()];
    argv.push("--meta".into());
    argv.push(call.source.clone());
    argv.extend(flags.into_iter().map(OsString::from));
    argv.push("--detach".into());
    if call.verbose {
        eprintln!("mount.tessera: tessera {}", show(&argv));
    }
    if call.fake {
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("cannot find the tessera binary")?;
    let status = std::process::Command::new(exe)
        .args(&argv)
        .status()
        .context("cannot start `tessera mount`")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(32)
    })
}

fn show(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What mount(8) asked for.
#[derive(Debug, PartialEq)]
struct HelperCall {
    source: OsString,
    dir: OsString,
    options: Vec<String>,
    /// `-f`: do everything but mount.
    fake: bool,
    /// `-v`: say what runs.
    verbose: bool,
}

impl HelperCall {
    fn parse(args: Vec<OsString>) -> anyhow::Result<HelperCall> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let (mut fake, mut verbose) = (false, false);
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.to_str() {
                Some("-o") => {
                    let opts = it.next().context("-o needs a value")?;
                    let opts = opts.to_str().context("mount options must be UTF-8")?;
                    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
                }
                // The type (`tessera`, `fuse.tessera`) and the namespace mount(8) already
                // entered carry nothing for us.
                Some("-t" | "-N") => {
                    it.next();
                }
                Some(flags) if flags.starts_with('-') && flags.len() > 1 => {
                    for c in flags[1..].chars() {
                        match c {
                            'f' => fake = true,
                            'v' => verbose = true,
                            // -s (sloppy) and -n (no mtab) need nothing here.
                            's' | 'n' => {}
                            other => bail!("unknown helper flag -{other}"),
                        }
                    }
                }
                _ => positional.push(arg),
            }
        }
        let [source, dir]: [OsString; 2] = positional.try_into().map_err(|p: Vec<_>| {
            anyhow::anyhow!(
                "expected SOURCE and DIR (as mount(8) passes them), got {} arguments; SOURCE is the metaserver list, e.g. 10.0.0.1:7000,10.0.0.2:7000",
                p.len()
            )
        })?;
        Ok(HelperCall {
            source,
            dir,
            options,
            fake,
            verbose,
        })
    }
}

/// `tessera mount` flags for mount options; an option it does not know is an error that
/// names it, never silently dropped.
fn mount_flags(options: &[String]) -> anyhow::Result<Vec<String>> {
    let mut flags = Vec::new();
    let mut unknown = Vec::new();
    for opt in options {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt.as_str(), None),
        };
        match (name, value) {
            (n, Some(v)) if VALUE_OPTIONS.contains(&n) => {
                flags.push(format!("--{}", n.replace('_', "-")));
                flags.push(v.to_string());
            }
            ("dev" | "suid", None) => flags.push(format!("--{name}")),
            ("noacl", None) => flags.push("--no-acl".into()),
            ("acl", None) => {}
            ("nodev" | "nosuid", None) => {}
            ("relatime" | "strictatime" | "noatime", None) => {
                flags.push("--atime".into());
                flags.push(name.into());
            }
            (n, None) if IGNORED_OPTIONS.contains(&n) => {}
            // Comments and options meant for other programs (x-systemd.*, comment=...).
            (n, _) if n.starts_with("x-") || n == "comment" => {}
            _ => unknown.push(opt.as_str()),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "unsupported mount option(s): {}; Tessera takes {}, dev, suid, acl, noacl, relatime, strictatime, noatime and the usual defaults, rw, _netdev, nofail, noauto",
            unknown.join(","),
            VALUE_OPTIONS.map(|o| format!("{o}=")).join(", ")
        );
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> anyhow::Result<HelperCall> {
        HelperCall::parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn mount_8_arguments_parse() {
        let c = call(&[
            "h:1,h:2",
            "/mnt",
            "-n",
            "-o",
            "rw,secret_file=/s,ec=2+1",
            "-t",
            "fuse.tessera",
        ])
        .unwrap();
        assert_eq!(
            (c.source.as_os_str(), c.dir.as_os_str()),
            ("h:1,h:2".as_ref(), "/mnt".as_ref())
        );
        assert_eq!(c.options, ["rw", "secret_file=/s", "ec=2+1"]);
        assert!(!c.fake && !c.verbose);
        let c = call(&["h:1", "/mnt", "-fv"]).unwrap();
        assert!(c.fake && c.verbose);
        assert!(call(&["h:1"]).is_err());
        assert!(call(&["h:1", "/mnt", "-x"]).is_err());
    }

    #[test]
    fn options_become_flags_and_unknown_ones_are_named() {
        let opts = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            mount_flags(&opts(
                "defaults,_netdev,secret_file=/s,ec=6+3,noatime,dev,nosuid,x-systemd.requires=net"
            ))
            .unwrap(),
            [
                "--secret-file",
                "/s",
                "--ec",
                "6+3",
                "--atime",
                "noatime",
                "--dev"
            ]
        );
        let err = mount_flags(&opts("ro,secret_file=/s,bogus=1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ro,bogus=1"), "{err}");
        assert!(err.contains("secret_file="), "{err}");
    }

    #[test]
    fn helper_names() {
        assert!(called_as_helper("/sbin/mount.tessera".as_ref()));
        assert!(called_as_helper("mount.fuse.tessera".as_ref()));
        assert!(!called_as_helper("/usr/bin/tessera".as_ref()));
    }
}
