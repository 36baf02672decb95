//! Help and error output of the `tessera` binary: every flag explained with its default, and
//! wrong flags or an unreachable cluster reported in one line with what to try.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use tessera_tests::{TempDir, tessera_bin};

const COMMANDS: [&str; 10] = [
    "gen-secret",
    "chunk",
    "meta",
    "status",
    "mount",
    "info",
    "layout",
    "dump",
    "load",
    "help",
];

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(tessera_bin())
        .args(args)
        .env_remove("TESSERA_META")
        .env_remove("TESSERA_SECRET_FILE")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn top_level_help_lists_every_command_and_the_environment() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for c in COMMANDS {
        assert!(out.contains(&format!("  {c} ")), "{c} missing:\n{out}");
    }
    assert!(out.contains("TESSERA_META") && out.contains("TESSERA_SECRET_FILE"));
}

/// Admin commands with subcommands, each checked as a command of its own.
const SUBCOMMANDS: [&str; 4] = ["quota set", "quota get", "quota list", "quota unset"];

#[test]
fn every_flag_is_explained_and_value_flags_say_their_default() {
    let commands = COMMANDS.iter().filter(|c| **c != "help").copied();
    for c in commands.chain(SUBCOMMANDS) {
        let mut args: Vec<&str> = c.split(' ').collect();
        args.push("--help");
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{c}: {err}");
        let mut options = 0;
        for line in out.lines() {
            let t = line.trim_start();
            if !t.starts_with("--") || t.starts_with("--help") || t.starts_with("--version") {
                continue;
            }
            options += 1;
            // "--flag <VALUE>  description" or "--flag  description".
            let (flag, text) = t.split_once("  ").unwrap_or((t, ""));
            assert!(!text.trim().is_empty(), "{c}: {flag} has no description");
            if flag.contains('<') {
                assert!(
                    text.contains("[default") || text.contains("required"),
                    "{c}: {flag} says neither its default nor that it is required: {text}"
                );
            }
        }
        if c != "gen-secret" && !c.contains(' ') {
            assert!(options > 0, "{c} lists no options:\n{out}");
        }
    }
}

#[test]
fn a_wrong_flag_is_one_cause_and_a_hint() {
    let (code, _, err) = run(&["status", "--bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("unexpected argument '--bogus'"), "{err}");
    assert!(err.contains("--help"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let (code, _, err) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn an_unreachable_cluster_is_one_line_with_what_to_try() {
    let dir = TempDir::new("cli-help");
    let secret = dir.join("secret");
    let (code, _, err) = run(&["gen-secret", secret.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let s = secret.to_str().unwrap();
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let dump = dir.join("x.dump");
    std::fs::write(&dump, b"not a dump").unwrap();
    let out_file = dir.join("out.dump");
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["status"], 2),
        (vec!["dump", out_file.to_str().unwrap()], 1),
        (vec!["load", dump.to_str().unwrap()], 1),
        (vec!["mount", mnt.to_str().unwrap()], 1),
    ];
    for (mut args, want) in cases {
        args.extend(["--meta", "127.0.0.1:1", "--secret-file", s]);
        let (code, _, err) = run(&args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("cannot reach any metaserver at 127.0.0.1:1")
                && err.contains("is the cluster running?")
                && err.contains("TESSERA_META"),
            "{args:?}: {err}"
        );
    }
    // A missing secret file names the file and how to make one.
    let (code, _, err) = run(&[
        "status",
        "--meta",
        "127.0.0.1:1",
        "--secret-file",
        dir.join("nope").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nope") && err.contains("gen-secret"), "{err}");
}
