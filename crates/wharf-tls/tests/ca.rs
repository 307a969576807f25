//! The local CA: files and modes on disk, and certificates that a real
//! verifier (webpki, as rustls uses it) accepts for exactly their names.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::RootCertStore;
use wharf_tls::{init_ca, load_certified_key, LocalCa, ServerNames, TlsError};
use x509_parser::prelude::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn names(dns: &[&str], ips: &[&str]) -> ServerNames {
    let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
    let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    ServerNames::parse(&dns, &ips).unwrap()
}

fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn verifier(ca_pem: &str) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    for cert in chain(ca_pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap()
}

/// Verifies the server certificate in `chain_pem` for `name` the way a TLS
/// client would: signature chain, validity, serverAuth, the name.
fn verify(ca_pem: &str, chain_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let certs = chain(chain_pem);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier(ca_pem)
        .verify_server_cert(&certs[0], &certs[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn init_writes_a_0600_key_and_a_ca_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("wharf-ca");
    let paths = init_ca(&ca_dir, false).unwrap();
    assert_eq!(paths.cert, ca_dir.join("ca.crt"));
    assert_eq!(mode(&paths.key), 0o600, "CA key must be private");

    let pem = std::fs::read_to_string(&paths.cert).unwrap();
    let der = &chain(&pem)[0];
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "wharf local CA");
    let constraints = cert.basic_constraints().unwrap().unwrap().value;
    assert!(constraints.ca, "basicConstraints must say CA");
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign(), "{usage:?}");
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let years = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert!((9..=11).contains(&years), "CA validity of {years} years");
}

#[test]
fn init_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_ca(dir.path(), false).unwrap();
    let before = std::fs::read(&paths.key).unwrap();
    match init_ca(dir.path(), false) {
        Err(TlsError::AlreadyExists(path)) => assert!(path.starts_with(dir.path())),
        other => panic!("expected AlreadyExists, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        std::fs::read(&paths.key).unwrap(),
        before,
        "key was changed"
    );

    init_ca(dir.path(), true).unwrap();
    assert_ne!(
        std::fs::read(&paths.key).unwrap(),
        before,
        "--force must replace the CA"
    );
    assert_eq!(mode(&paths.key), 0o600);
}

#[test]
fn issued_certificate_verifies_for_its_names_only() {
    let dir = tempfile::tempdir().unwrap();
    init_ca(dir.path(), false).unwrap();
    let ca = LocalCa::load(dir.path()).unwrap();
    let issued = ca
        .issue(&names(&["registry.home.arpa", "127.0.0.1"], &["::1"]), 30)
        .unwrap();

    for name in ["registry.home.arpa", "127.0.0.1", "::1"] {
        verify(ca.cert_pem(), &issued.chain_pem, name)
            .unwrap_or_else(|e| panic!("{name} should verify: {e}"));
    }
    for name in ["other.home.arpa", "127.0.0.2"] {
        let err = verify(ca.cert_pem(), &issued.chain_pem, name).unwrap_err();
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{name}: {err:?}"
        );
    }

    let certs = chain(&issued.chain_pem);
    assert_eq!(certs.len(), 2, "chain is server certificate then CA");
    let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth, "serverAuth EKU missing");
    let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp())
        / (24 * 3600);
    assert!((30..=31).contains(&days), "validity {days} days");
}

#[test]
fn another_ca_does_not_verify_the_certificate() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    init_ca(a.path(), false).unwrap();
    init_ca(b.path(), false).unwrap();
    let issued = LocalCa::load(a.path())
        .unwrap()
        .issue(&names(&["localhost"], &[]), 30)
        .unwrap();
    let other = LocalCa::load(b.path()).unwrap();
    let err = verify(other.cert_pem(), &issued.chain_pem, "localhost").unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn written_pair_loads_and_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    init_ca(dir.path(), false).unwrap();
    let ca = LocalCa::load(dir.path()).unwrap();
    let issued = ca.issue(&names(&["registry.home.arpa"], &[]), 10).unwrap();
    let (cert, key) = issued
        .write(&dir.path().join("out/registry.home.arpa"))
        .unwrap();
    assert_eq!(cert, dir.path().join("out/registry.home.arpa.crt"));
    assert_eq!(key, dir.path().join("out/registry.home.arpa.key"));
    assert_eq!(mode(&key), 0o600);
    let loaded = load_certified_key(&cert, &key).unwrap();
    assert_eq!(loaded.cert.len(), 2);

    // Another certificate's key must be recognised as not matching.
    let other = ca.issue(&names(&["registry.home.arpa"], &[]), 10).unwrap();
    let (_, other_key) = other.write(&dir.path().join("other")).unwrap();
    match load_certified_key(&cert, &other_key) {
        Err(TlsError::KeyMismatch { .. }) => {}
        other => panic!("expected KeyMismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn bad_names_and_missing_ca_are_explained() {
    let bad = |dns: &[&str], ips: &[&str]| {
        let dns: Vec<String> = dns.iter().map(|s| s.to_string()).collect();
        let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        ServerNames::parse(&dns, &ips).unwrap_err()
    };
    assert!(matches!(bad(&["bad name"], &[]), TlsError::InvalidDnsName(n) if n == "bad name"));
    assert!(matches!(
        bad(&["a.*.example"], &[]),
        TlsError::InvalidDnsName(_)
    ));
    assert!(matches!(bad(&[], &["300.1.1.1"]), TlsError::InvalidIp(_)));
    assert!(matches!(bad(&[], &[]), TlsError::NoNames));
    let wildcard = names(&["*.Home.Arpa"], &[]);
    assert_eq!(wildcard.dns, ["*.home.arpa"]);

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        LocalCa::load(&empty.path().join("nowhere")),
        Err(TlsError::NoCa { .. })
    ));
}

#[test]
fn a_certificates_names_are_read_back_for_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    init_ca(dir.path(), false).unwrap();
    let issued = LocalCa::load(dir.path())
        .unwrap()
        .issue(
            &names(&["registry.home.arpa", "wharf.lan"], &["10.0.0.5", "::1"]),
            30,
        )
        .unwrap();
    let (cert, _key) = issued.write(&dir.path().join("server")).unwrap();
    let found = wharf_tls::certificate_names(&cert).unwrap();
    assert_eq!(
        found,
        ["registry.home.arpa", "wharf.lan", "10.0.0.5", "[::1]"],
        "DNS names, then addresses"
    );
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    assert!(wharf_tls::certificate_names(&not_pem).is_err());
}
