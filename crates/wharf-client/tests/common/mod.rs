//! Servers the client is tested against, all on 127.0.0.1 and all stopped
//! when dropped: the wharf registry in-process, Debian's `docker-registry`
//! as a child process (open, htpasswd or token auth), a token server, and a
//! scripted HTTP server for behaviour real registries do not show on demand
//! (redirects, 429, broken connections, wrong bytes).
#![allow(dead_code)]

pub mod scripted;
pub mod token;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wharf_client::{Client, ClientConfig, Reporter, RetryEvent, RetryPolicy};
use wharf_oci::{media_type, Digest, RepositoryName};
use wharf_registry::{serve, Registry, RegistryConfig};
use wharf_storage::Store;

pub fn repo(s: &str) -> RepositoryName {
    s.parse().expect("valid repository name")
}

/// A client with fast retries, so tests that exercise them stay quick.
pub fn quick_config() -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    }
}

pub fn client() -> Client {
    Client::new(quick_config()).expect("build a client")
}

/// Deterministic pseudo-random bytes.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Collect a blob stream; the first error ends it.
pub async fn collect(mut s: wharf_client::BlobStream) -> Result<Vec<u8>, wharf_client::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A config blob, a layer and the manifest naming them.
pub struct Image {
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
}

impl Image {
    pub fn oci(seed: u64) -> Image {
        Image::build(
            seed,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_GZIP,
        )
    }

    pub fn docker(seed: u64) -> Image {
        Image::build(
            seed,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP,
        )
    }

    fn build(seed: u64, manifest_type: &'static str, config_type: &str, layer_type: &str) -> Image {
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let layer = data(seed, 300_000);
        // Unusual spacing on purpose: byte-exactness is what is tested.
        let manifest = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{manifest_type}\",\n   \"config\": {{\"mediaType\": \"{config_type}\", \"digest\": \"{}\", \"size\": {}}},\n   \"layers\": [ {{\"mediaType\": \"{layer_type}\", \"digest\": \"{}\", \"size\": {}}} ]\n}}\n",
            Digest::sha256_of(&config),
            config.len(),
            Digest::sha256_of(&layer),
            layer.len()
        )
        .into_bytes();
        Image {
            config,
            layer,
            manifest,
            media_type: manifest_type,
        }
    }

    pub fn config_digest(&self) -> Digest {
        Digest::sha256_of(&self.config)
    }

    pub fn layer_digest(&self) -> Digest {
        Digest::sha256_of(&self.layer)
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    /// Push both blobs and the manifest under `tag`.
    pub async fn push(&self, client: &Client, host: &str, repo: &RepositoryName, tag: &str) {
        for blob in [&self.config, &self.layer] {
            client
                .push_blob_bytes(
                    host,
                    repo,
                    &Digest::sha256_of(blob),
                    Bytes::from(blob.clone()),
                )
                .await
                .expect("push a blob");
        }
        let digest = client
            .put_manifest(
                host,
                repo,
                &wharf_oci::Target::Tag(tag.parse().unwrap()),
                Bytes::from(self.manifest.clone()),
                self.media_type,
            )
            .await
            .expect("push the manifest");
        assert_eq!(digest, self.manifest_digest());
    }
}

/// Records what the client reports.
#[derive(Default)]
pub struct Recorder {
    pub retries: Mutex<Vec<(String, u32, Duration, bool)>>,
    pub resumes: Mutex<Vec<u64>>,
    pub progress: Mutex<u64>,
    pub finished: Mutex<u32>,
}

impl Reporter for Recorder {
    fn blob_progress(&self, _digest: &Digest, bytes: u64) {
        *self.progress.lock().unwrap() += bytes;
    }
    fn blob_resumed(&self, _digest: &Digest, offset: u64) {
        self.resumes.lock().unwrap().push(offset);
    }
    fn blob_finished(&self, _digest: &Digest) {
        *self.finished.lock().unwrap() += 1;
    }
    fn retrying(&self, e: &RetryEvent<'_>) {
        self.retries.lock().unwrap().push((
            format!("{:?}", e.reason),
            e.attempt,
            e.delay,
            e.from_retry_after,
        ));
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

// --- wharf registry ----------------------------------------------------------

/// The wharf registry served in-process.
pub struct WharfRegistry {
    pub host: String,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

impl WharfRegistry {
    pub async fn start() -> WharfRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_fs(dir.path().join("store")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let registry = Registry::new(store, RegistryConfig::default());
        tokio::spawn(serve(listener, registry, async {
            let _ = rx.await;
        }));
        WharfRegistry {
            host: addr.to_string(),
            shutdown: Some(tx),
            _dir: dir,
        }
    }
}

impl Drop for WharfRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// --- Debian's docker-registry --------------------------------------------------

pub enum DockerAuth {
    None,
    /// One bcrypt htpasswd user.
    Htpasswd {
        user: &'static str,
        password: &'static str,
    },
    /// Tokens from `realm`, signed by the key whose certificate is `cert`.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

pub const TOKEN_SERVICE: &str = "wharf-test-registry";
pub const TOKEN_ISSUER: &str = "wharf-test-issuer";

/// `docker-registry` (distribution 2.8) as a child process.
pub struct DockerRegistry {
    pub host: String,
    child: Child,
    dir: TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn auth_section(auth: &DockerAuth, dir: &Path) -> String {
    match auth {
        DockerAuth::None => String::new(),
        DockerAuth::Htpasswd { user, password } => {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let path = dir.join("htpasswd");
            std::fs::write(&path, &out.stdout).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                path.display()
            )
        }
        DockerAuth::Token { realm, cert } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            cert.display()
        ),
    }
}

impl DockerRegistry {
    pub async fn start(auth: DockerAuth) -> DockerRegistry {
        DockerRegistry::start_with(auth, None).await
    }

    /// `tls`: certificate and key files to serve HTTPS with.
    pub async fn start_with(auth: DockerAuth, tls: Option<(PathBuf, PathBuf)>) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: wharf-test-secret\n{tls}{}",
            dir.path().join("storage").display(),
            auth_section(&auth, dir.path())
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = DockerRegistry {
            host: format!("127.0.0.1:{port}"),
            child,
            dir,
        };
        reg.wait_ready(port).await;
        reg
    }

    /// Poll until the port accepts connections (bounded).
    async fn wait_ready(&self, port: u16) {
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("docker-registry did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for DockerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
pub struct TestPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn loopback_pki(dir: &Path) -> TestPki {
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    run_openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=wharf-test-ca",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]);
    run_openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("tls.key"),
        "-out",
        &p("tls.csr"),
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_openssl(&[
        "x509",
        "-req",
        "-in",
        &p("tls.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("tls.crt"),
    ]);
    TestPki {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
}

/// Headers of a recorded request, names lower-cased.
pub type Headers = HashMap<String, String>;

pub fn addr_host(addr: SocketAddr) -> String {
    addr.to_string()
}
