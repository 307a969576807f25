//! How `wharf copy` reaches registries, tried as a new user would: the
//! README's TLS section on the registry host itself (`wharf ca`, `serve
//! --tls-cert`, `copy … localhost:PORT --ca-file ca.crt`), TLS asked of a
//! plain-HTTP registry, a name that does not exist, and a port that refuses
//! connections, with stderr not a terminal.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{push_image, Api};
use common::server::Wharf;
use common::tls::{ca_init, ca_issue, HttpsWharf};
use wharf_testkit::free_port;
use wharf_testkit::tools::{run, run_unchecked, skopeo, Output};

/// `wharf copy ARGS…` with stderr a pipe.
fn copy(args: &[&str]) -> Output {
    run_unchecked(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("copy")
            .args(args),
    )
}

/// A plain-HTTP wharf holding `app:v1`.
fn source(dir: &Path) -> Wharf {
    let wharf = Wharf::start(dir);
    let api = Api::new(&wharf.url());
    push_image(
        &api,
        "app",
        "v1",
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
        &[b"layer"],
    )
    .expect("seed the source");
    wharf
}

#[test]
fn the_readme_tls_section_works_on_the_registry_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = ca_init(&ca_dir);
    let (cert, key) = ca_issue(
        &ca_dir,
        &["localhost", "--ip", "127.0.0.1"],
        &dir.path().join("registry"),
    );
    let https = HttpsWharf::start(&dir.path().join("https"), &cert, &key, &ca);
    let src = source(&dir.path().join("src"));
    let ca = ca.to_string_lossy().into_owned();

    let dest = format!("localhost:{}", https.port());
    let out = copy(&[&format!("{}/app:v1", src.host()), &dest, "--ca-file", &ca]);
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        !out.stderr.contains("invalid HTTP version"),
        "{}",
        out.describe()
    );

    // What landed is there, over verified TLS, as skopeo sees it.
    let cert_dir = dir.path().join("certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(&ca, cert_dir.join("ca.crt")).unwrap();
    let landed = format!("docker://{dest}/{}/app:v1", src.host().replace(':', "_"));
    let inspected = run(
        skopeo()
            .args(["inspect", "--tls-verify=true", "--cert-dir"])
            .arg(&cert_dir)
            .arg(&landed),
        "skopeo inspect over HTTPS",
    );
    assert!(
        inspected.stdout.contains("\"Digest\""),
        "{}",
        inspected.describe()
    );

    // An https:// written before the host asks for TLS outright.
    let out = copy(&[
        &format!("{}/app:v1", src.host()),
        &format!("https://{dest}/again/app:v1"),
        "--ca-file",
        &ca,
    ]);
    assert!(out.status.success(), "{}", out.describe());
}

#[test]
fn tls_asked_of_a_plain_http_registry_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(&dir.path().join("src"));
    let dst = Wharf::start(&dir.path().join("dst"));
    let out = copy(&[&format!("https://{}/app:v1", src.host()), &dst.host()]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("this registry speaks plain HTTP"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains(&format!("hint: add --insecure={}", src.host())),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("InvalidContentType"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("retry:"),
        "not retried: {}",
        out.describe()
    );
}

#[test]
fn a_name_that_does_not_exist_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let dst = Wharf::start(&dir.path().join("dst"));
    let started = Instant::now();
    // RFC 2606: .invalid never resolves.
    let out = copy(&["registry.wharf-test.invalid/app:v1", &dst.host()]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    // The retry budget is 0.5 + 1 + 2 + 4 s of backoff at the least.
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: {}",
        out.describe()
    );
    assert!(
        out.stderr
            .contains("no such host: registry.wharf-test.invalid"),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("retry:"), "{}", out.describe());
}

#[test]
fn a_refused_port_prints_one_line_per_retry() {
    let dir = tempfile::tempdir().unwrap();
    let dst = Wharf::start(&dir.path().join("dst"));
    let refused = format!("127.0.0.1:{}", free_port());
    let out = copy(&[&format!("{refused}/app:v1"), &dst.host()]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    let retries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("retry:"))
        .collect();
    assert_eq!(
        retries.len(),
        4,
        "one line per retry of 5 tries:\n{}",
        out.describe()
    );
    for (n, line) in retries.iter().enumerate() {
        let expected = format!(
            "retry: ping {refused}: attempt {}/5 failed (cannot connect",
            n + 1
        );
        assert!(line.starts_with(&expected), "{line:?} vs {expected:?}");
        assert!(line.contains("; next in "), "{line}");
    }
    assert!(
        out.stderr.contains(&format!("error: {refused}/app:v1")),
        "{}",
        out.describe()
    );
}
