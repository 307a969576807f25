//! HTTPS for the end-to-end tests: a CA and server certificates made with
//! the real `wharf ca` commands, a `wharf serve --tls-cert … --tls-key …`
//! process, and a small blocking TLS client that reports which certificate
//! the server presented on each connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use wharf_testkit::process::ChildGuard;
use wharf_testkit::{free_port, wait_for};

use super::cli::wharf_ok;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one read or write of the test client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// `wharf ca init --dir DIR`; returns the CA certificate's path.
pub fn ca_init(dir: &Path) -> PathBuf {
    wharf_ok(&["ca", "init", "--dir", &dir.to_string_lossy()]);
    dir.join("ca.crt")
}

/// `wharf ca issue NAMES… --dir CA_DIR --out PREFIX`; returns (cert, key).
pub fn ca_issue(ca_dir: &Path, names: &[&str], prefix: &Path) -> (PathBuf, PathBuf) {
    let (ca_dir, prefix) = (ca_dir.to_string_lossy(), prefix.to_string_lossy());
    let mut args = vec!["ca", "issue", "--dir", &ca_dir, "--out", &prefix];
    args.extend_from_slice(names);
    wharf_ok(&args);
    (
        PathBuf::from(format!("{prefix}.crt")),
        PathBuf::from(format!("{prefix}.key")),
    )
}

/// The first certificate of a PEM file (the server certificate of a chain).
pub fn leaf_der(cert_file: &Path) -> Vec<u8> {
    let first = CertificateDer::pem_file_iter(cert_file)
        .expect("open certificate file")
        .next()
        .expect("a certificate in the file")
        .expect("valid PEM");
    first.as_ref().to_vec()
}

/// A `wharf serve` process answering HTTPS on a free loopback port.
pub struct HttpsWharf {
    process: ChildGuard,
    port: u16,
}

impl HttpsWharf {
    /// Starts the server with `cert`/`key`, storing under `<work_dir>/root`,
    /// and waits until `GET /v2/` over TLS, verified with `ca_cert`, answers 200.
    pub fn start(work_dir: &Path, cert: &Path, key: &Path, ca_cert: &Path) -> HttpsWharf {
        HttpsWharf::start_with(work_dir, cert, key, ca_cert, &[])
    }

    /// Like [`HttpsWharf::start`], with extra `wharf serve` arguments.
    pub fn start_with(
        work_dir: &Path,
        cert: &Path,
        key: &Path,
        ca_cert: &Path,
        extra: &[String],
    ) -> HttpsWharf {
        std::fs::create_dir_all(work_dir).expect("create wharf work dir");
        let client = TlsClient::trusting(ca_cert);
        let log = work_dir.join("wharf-https.log");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(work_dir.join("root"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .env("WHARF_LOG", "info,wharf_tls=debug,wharf_registry=debug");
        let mut process = ChildGuard::spawn(cmd, "wharf serve (https)", &log);
        let ready = wait_for(READY_TIMEOUT, || {
            if let Some(status) = process.exited() {
                panic!(
                    "wharf serve exited early: {status}\n{}",
                    process.log_tail(40)
                );
            }
            let answered = client
                .connect(port)
                .and_then(|mut conn| conn.get("/v2/"))
                .is_ok_and(|(status, _)| status == 200);
            answered.then_some(())
        });
        if ready.is_none() {
            panic!(
                "https://127.0.0.1:{port}/v2/ did not answer 200 within {READY_TIMEOUT:?}\n{}",
                process.log_tail(40)
            );
        }
        HttpsWharf { process, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.host())
    }

    /// Whether the server process is still running (reaps it if not).
    pub fn still_running(&mut self) -> bool {
        self.process.exited().is_none()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(40)
    }
}

/// A TLS client that trusts exactly one CA and speaks HTTP/1.1.
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    pub fn trusting(ca_cert: &Path) -> TlsClient {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_cert).expect("open CA certificate") {
            roots.add(cert.expect("valid CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsClient {
            config: Arc::new(config),
        }
    }

    /// A new connection to `127.0.0.1:port`, handshake done and the
    /// certificate verified for the IP address 127.0.0.1.
    pub fn connect(&self, port: u16) -> io::Result<TlsConnection> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        let name = ServerName::try_from("127.0.0.1").expect("IP server name");
        let mut conn =
            ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(TlsConnection {
            stream: StreamOwned::new(conn, tcp),
        })
    }
}

/// One open TLS connection; requests on it reuse it (HTTP/1.1 keep-alive).
pub struct TlsConnection {
    stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsConnection {
    /// The server certificate presented in this connection's handshake.
    pub fn peer_leaf(&self) -> Vec<u8> {
        let certs = self
            .stream
            .conn
            .peer_certificates()
            .expect("handshake finished");
        certs[0].as_ref().to_vec()
    }

    /// Waits, sending nothing, until the server closes the connection;
    /// how long that took, or an error if it is still open after `bound`.
    pub fn wait_closed(&mut self, bound: Duration) -> io::Result<Duration> {
        let sock = self.stream.sock.try_clone()?;
        super::net::wait_closed(&mut self.stream, &sock, bound)
    }

    /// `GET path` on this connection: (status, body).
    pub fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wharf-test\r\n\r\n");
        self.stream.write_all(request.as_bytes())?;
        self.stream.flush()?;
        read_response(&mut self.stream)
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
fn read_response(stream: &mut impl Read) -> io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line in {head:?}"),
            )
        })?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the body",
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}
