//! `wharf ca` and `wharf serve --tls-cert/--tls-key` as a user runs them:
//! files and messages of the CA commands, certificate reload under open
//! connections, and a TLS port that shrugs off clients speaking something else.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use wharf_testkit::wait_for;

use common::cli::wharf;
use common::tls::{ca_init, ca_issue, leaf_der, HttpsWharf, TlsClient};

/// How long a reload may take to show: the server looks at the files at
/// most once a second, so this is generous.
const RELOAD_DEADLINE: Duration = Duration::from_secs(30);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_writes_a_private_key_and_refuses_to_overwrite() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ca");
    let dir_arg = dir.to_string_lossy().into_owned();
    let first = wharf(&["ca", "init", "--dir", &dir_arg]);
    assert!(first.status.success(), "{}", first.describe());
    assert_eq!(mode(&dir.join("ca.key")), 0o600, "CA key must be private");
    assert!(
        first
            .stdout
            .contains(&dir.join("ca.crt").display().to_string())
            && first.stdout.contains("wharf ca issue")
            && first.stdout.contains("wharf containerd hosts")
            && first.stdout.contains("--ca"),
        "init must say where the certificate is and what comes next:\n{}",
        first.stdout
    );
    let key = std::fs::read(dir.join("ca.key")).unwrap();

    let again = wharf(&["ca", "init", "--dir", &dir_arg]);
    assert_eq!(again.status.code(), Some(1), "{}", again.describe());
    assert!(
        again.stderr.contains("already exists")
            && again.stderr.contains("hint: ")
            && again.stderr.contains("--force"),
        "{}",
        again.describe()
    );
    assert_eq!(
        std::fs::read(dir.join("ca.key")).unwrap(),
        key,
        "the CA key was replaced"
    );

    let forced = wharf(&["ca", "init", "--dir", &dir_arg, "--force"]);
    assert!(forced.status.success(), "{}", forced.describe());
    assert_ne!(
        std::fs::read(dir.join("ca.key")).unwrap(),
        key,
        "--force kept the old key"
    );
}

#[test]
fn ca_issue_explains_a_missing_ca_and_bad_names() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("nowhere").to_string_lossy().into_owned();
    let out = wharf(&["ca", "issue", "registry.home.arpa", "--dir", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("hint: ") && out.stderr.contains("wharf ca init"),
        "{}",
        out.describe()
    );

    let dir = work.path().join("ca");
    ca_init(&dir);
    let dir_arg = dir.to_string_lossy().into_owned();
    for (args, what) in [
        (vec!["bad name!"], "bad name!"),
        (
            vec!["registry.home.arpa", "--ip", "10.0.0.300"],
            "10.0.0.300",
        ),
    ] {
        let mut full = vec!["ca", "issue", "--dir", &dir_arg];
        full.extend(args);
        let out = wharf(&full);
        assert_eq!(out.status.code(), Some(1), "{}", out.describe());
        assert!(
            out.stderr.contains(what) && out.stderr.contains("hint: "),
            "{}",
            out.describe()
        );
    }

    let prefix = work.path().join("registry");
    let (cert, key) = ca_issue(&dir, &["registry.home.arpa", "--ip", "127.0.0.1"], &prefix);
    assert_eq!(mode(&key), 0o600, "server key must be private");
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "chain is server certificate + CA"
    );
}

#[test]
fn serve_refuses_a_key_that_does_not_match_the_certificate() {
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca");
    ca_init(&ca);
    let (cert, _) = ca_issue(&ca, &["127.0.0.1"], &work.path().join("a"));
    let (_, other_key) = ca_issue(&ca, &["127.0.0.1"], &work.path().join("b"));
    let root = work.path().join("root").to_string_lossy().into_owned();
    let out = wharf(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--root",
        &root,
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &other_key.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("does not belong to the certificate") && out.stderr.contains("hint: "),
        "{}",
        out.describe()
    );

    let unreadable = work
        .path()
        .join("missing.crt")
        .to_string_lossy()
        .into_owned();
    let out = wharf(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--root",
        &root,
        "--tls-cert",
        &unreadable,
        "--tls-key",
        &other_key.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("missing.crt") && out.stderr.contains("hint: "),
        "{}",
        out.describe()
    );
}

#[test]
fn reload_presents_the_new_certificate_and_keeps_open_connections() {
    let work = tempfile::tempdir().unwrap();
    let ca_dir = work.path().join("ca");
    let ca_cert = ca_init(&ca_dir);
    let live = work.path().join("live");
    let (cert, key) = ca_issue(&ca_dir, &["127.0.0.1"], &live);
    let cert_a = leaf_der(&cert);
    let mut server = HttpsWharf::start(&work.path().join("wharf"), &cert, &key, &ca_cert);
    let client = TlsClient::trusting(&ca_cert);

    let mut open = client.connect(server.port()).expect("first connection");
    assert_eq!(open.get("/v2/").expect("request before reload").0, 200);
    assert_eq!(
        open.peer_leaf(),
        cert_a,
        "server presented another certificate than A"
    );

    // Certificate B replaces A in place, as a renewal would.
    ca_issue(&ca_dir, &["127.0.0.1"], &live);
    let cert_b = leaf_der(&cert);
    assert_ne!(cert_a, cert_b);
    let started = Instant::now();
    let presented_b = wait_for(RELOAD_DEADLINE, || {
        let conn = client.connect(server.port()).ok()?;
        (conn.peer_leaf() == cert_b).then_some(())
    });
    assert!(
        presented_b.is_some(),
        "new handshakes still present certificate A {RELOAD_DEADLINE:?} after the files changed\n{}",
        server.log_tail()
    );
    eprintln!(
        "certificate B served {:?} after the files were replaced",
        started.elapsed()
    );

    let (status, body) = open
        .get("/v2/")
        .expect("the connection opened with A survives the reload");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(open.peer_leaf(), cert_a);

    // A broken replacement keeps B in service and is reported. Handshakes
    // are what trigger the check, so keep making them until the warning shows.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let warned = wait_for(RELOAD_DEADLINE, || {
        let conn = client
            .connect(server.port())
            .expect("handshake with a broken file on disk");
        assert_eq!(
            conn.peer_leaf(),
            cert_b,
            "a broken file must keep the last good certificate"
        );
        let log = server.log_tail();
        log.contains("still serving the previous certificate")
            .then_some(())
    });
    assert!(
        warned.is_some(),
        "no warning about the broken file\n{}",
        server.log_tail()
    );
    let mut after = client
        .connect(server.port())
        .expect("handshake after a broken file");
    assert_eq!(
        after.peer_leaf(),
        cert_b,
        "a broken file must keep the last good certificate"
    );
    assert_eq!(after.get("/v2/").unwrap().0, 200);
    assert!(server.still_running());
}

/// Reads what the server sends until it closes the connection; `None` when
/// it is still open after `limit`.
fn read_until_closed(mut stream: TcpStream, limit: Duration) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(received),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(received),
            Err(_) => return None,
        }
    }
}

#[test]
fn tls_port_closes_plain_http_garbage_and_silent_clients_and_keeps_serving() {
    let work = tempfile::tempdir().unwrap();
    let ca_dir = work.path().join("ca");
    let ca_cert = ca_init(&ca_dir);
    let (cert, key) = ca_issue(&ca_dir, &["127.0.0.1"], &work.path().join("srv"));
    let mut server = HttpsWharf::start(&work.path().join("wharf"), &cert, &key, &ca_cert);
    let client = TlsClient::trusting(&ca_cert);
    let port = server.port();

    // A client that connects and says nothing must not hold up anyone else.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();

    let inputs: [(&str, &[u8]); 3] = [
        (
            "plain HTTP",
            b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ),
        (
            "garbage",
            b"\x00\xff\x13\x37 definitely not TLS \x00\x00\x00\r\n\r\n",
        ),
        ("a truncated TLS record", b"\x16\x03\x01\x40\x00\x01\x00"),
    ];
    for (what, bytes) in inputs {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(bytes).unwrap();
        let received = read_until_closed(stream, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{what}: the server kept the connection open"));
        assert!(
            !received.starts_with(b"HTTP/"),
            "{what}: the TLS port answered in plain HTTP: {:?}",
            String::from_utf8_lossy(&received)
        );
        let mut conn = client
            .connect(port)
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        assert_eq!(conn.get("/v2/").unwrap().0, 200, "after {what}");
    }

    let closed = read_until_closed(silent, Duration::from_secs(30));
    assert!(
        closed.is_some(),
        "a silent client was never disconnected (handshake timeout)"
    );
    assert!(server.still_running(), "{}", server.log_tail());
    let mut conn = client.connect(port).unwrap();
    assert_eq!(conn.get("/v2/").unwrap().0, 200);
}
