//! A certificate authority made with `openssl` for one test, and server
//! certificates it signs for loopback names (IP addresses or DNS names).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;

use crate::tools::{require_tool, run};

/// A CA whose files live in a temporary directory of its own.
pub struct Ca {
    /// The CA certificate (PEM), what a client trusts.
    pub cert: PathBuf,
    key: PathBuf,
    dir: TempDir,
    issued: AtomicUsize,
}

/// A server certificate and its key (PEM files).
#[derive(Clone, Debug)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new CA with `name` as its common name.
    pub fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let (cert, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        run(
            new_key_request(&key)
                .args(["-x509", "-days", "2", "-subj"])
                .arg(format!("/CN={name}"))
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-out")
                .arg(&cert),
            "making the test CA",
        );
        Ca {
            cert,
            key,
            dir,
            issued: AtomicUsize::new(0),
        }
    }

    /// The CA certificate as PEM text.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("read the CA certificate")
    }

    /// A server certificate for `names` (each an IP address or a DNS name)
    /// signed by this CA.
    pub fn issue(&self, names: &[&str]) -> ServerCert {
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        let file = |ext: &str| self.dir.path().join(format!("server-{n}.{ext}"));
        let (key, csr, cert, ext) = (file("key"), file("csr"), file("crt"), file("ext"));
        run(
            new_key_request(&key)
                .args(["-subj"])
                .arg(format!(
                    "/CN={}",
                    names.first().copied().unwrap_or("server")
                ))
                .arg("-out")
                .arg(&csr),
            "making a server key and request",
        );
        std::fs::write(&ext, extensions(names)).expect("write the extensions file");
        run(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.cert)
                .arg("-CAkey")
                .arg(&self.key)
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
            "signing a server certificate",
        );
        ServerCert { cert, key }
    }

    /// A rustls server configuration with a certificate for `names`.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        self.issue(names).server_config()
    }
}

impl ServerCert {
    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .expect("open the server certificate")
            .collect::<Result<_, _>>()
            .expect("valid certificate PEM");
        let key = PrivateKeyDer::from_pem_file(&self.key).expect("valid key PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate and key");
        Arc::new(config)
    }
}

/// `openssl req -newkey ec (P-256) -nodes -keyout KEY`, to be completed.
fn new_key_request(key: &Path) -> Command {
    let mut cmd = Command::new(require_tool("openssl"));
    cmd.args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
    ])
    .args(["-nodes", "-keyout"])
    .arg(key);
    cmd
}

/// The X.509 v3 extensions of a server certificate for `names`.
fn extensions(names: &[&str]) -> String {
    let alt_names: Vec<String> = names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{name}"),
            Err(_) => format!("DNS:{name}"),
        })
        .collect();
    format!(
        "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        alt_names.join(",")
    )
}
