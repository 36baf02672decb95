//! Loading errors name the file and the cause (fixtures: `rpc/tests/tls-certs/`).

use super::*;
use crate::error::TlsError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls-certs")
        .join(name)
}

fn files(cert: &str, key: &str, ca: &str) -> TlsFiles {
    TlsFiles {
        cert: fixture(cert),
        key: fixture(key),
        ca: fixture(ca),
    }
}

/// Writes `contents` to a file of its own directory (removed with [`unscratch`]).
fn scratch(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-tls-unit-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

fn unscratch(p: &Path) {
    if let Some(dir) = p.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn load_err(f: &TlsFiles) -> (TlsError, String) {
    let e = TlsConfig::load(f).unwrap_err();
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn good_files_load() {
    TlsConfig::load(&files("node.pem", "node.key", "ca.pem")).unwrap();
}

#[test]
fn missing_file_names_it_and_the_cause() {
    let (e, msg) = load_err(&files("node.pem", "absent.key", "ca.pem"));
    assert!(matches!(e, TlsError::Io { what: "key", .. }), "{e:?}");
    assert!(msg.contains("absent.key"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn not_pem_is_said_so() {
    let junk = scratch("junk.pem", "this is not a certificate\n");
    let f = TlsFiles {
        cert: junk.clone(),
        ..files("node.pem", "node.key", "ca.pem")
    };
    let (e, msg) = load_err(&f);
    unscratch(&junk);
    assert!(
        matches!(
            e,
            TlsError::Pem {
                what: "certificate",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.contains("junk.pem") && msg.contains("no certificate"),
        "{msg}"
    );
    assert!(msg.contains("BEGIN CERTIFICATE"), "{msg}");
}

#[test]
fn a_certificate_is_not_a_key() {
    let (e, msg) = load_err(&files("node.pem", "node.pem", "ca.pem"));
    assert!(matches!(e, TlsError::Pem { what: "key", .. }), "{e:?}");
    assert!(
        msg.contains("node.pem") && msg.contains("no private key"),
        "{msg}"
    );
}

#[test]
fn truncated_pem_is_reported() {
    let text = std::fs::read_to_string(fixture("ca.pem")).unwrap();
    let cut = scratch("cut-ca.pem", &text[..text.len() / 2]);
    let f = TlsFiles {
        ca: cut.clone(),
        ..files("node.pem", "node.key", "ca.pem")
    };
    let (e, msg) = load_err(&f);
    unscratch(&cut);
    assert!(matches!(e, TlsError::Pem { what: "CA", .. }), "{e:?}");
    assert!(msg.contains("cut-ca.pem"), "{msg}");
}

#[test]
fn key_of_another_certificate_is_refused() {
    let (e, msg) = load_err(&files("node.pem", "other.key", "ca.pem"));
    assert!(matches!(e, TlsError::Rejected { .. }), "{e:?}");
    assert!(
        msg.contains("node.pem and") && msg.contains("other.key"),
        "{msg}"
    );
}
