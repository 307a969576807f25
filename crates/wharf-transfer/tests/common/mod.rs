//! Registries and images for the transfer tests, all on 127.0.0.1 and all
//! stopped when dropped: the wharf registry in-process, Debian's
//! `docker-registry` as a child process, and a proxy that counts (and can
//! corrupt) what passes through it.
#![allow(dead_code)]

pub mod images;
pub mod proxy;
pub mod token;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wharf_client::{Client, ClientConfig, Credential, CredentialSources, RetryPolicy};
use wharf_oci::{Reference, RepositoryName};
use wharf_registry::{serve, Registry, RegistryConfig};
use wharf_storage::Store;
use wharf_transfer::{ImageJob, ImageReport, NoEvents, Options, Transfer};

pub fn repo(s: &str) -> RepositoryName {
    s.parse().expect("valid repository name")
}

pub fn reference(s: &str) -> Reference {
    s.parse().expect("valid reference")
}

/// A client with fast retries, so failures stay quick.
pub fn client() -> Client {
    client_with(CredentialSources::none())
}

pub fn client_with(credentials: CredentialSources) -> Client {
    Client::new(ClientConfig {
        credentials,
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(1),
        },
        ..ClientConfig::default()
    })
    .expect("build a client")
}

pub fn client_for(host: &str, user: &str, password: &str) -> Client {
    client_with(CredentialSources::none().with_explicit(host, Credential::basic(user, password)))
}

/// Copy `jobs` with fresh clients (as a new process would).
pub async fn run(jobs: Vec<ImageJob>, options: Options) -> Vec<ImageReport> {
    Transfer::new(client(), client(), options, Arc::new(NoEvents))
        .run(jobs)
        .await
}

pub fn job(src: &str, dst: &str) -> ImageJob {
    ImageJob::new(reference(src), reference(dst))
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
        WharfRegistry::start_with(false).await
    }

    /// `sparse`: accept indexes whose children are absent.
    pub async fn start_with(sparse_indexes: bool) -> WharfRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_fs(dir.path().join("store")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let config = RegistryConfig {
            sparse_indexes,
            ..RegistryConfig::default()
        };
        tokio::spawn(serve(listener, Registry::new(store, config), async {
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

/// `docker-registry` (distribution 2.8) as a child process, open or with
/// one htpasswd user.
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

fn htpasswd_section(user: &str, password: &str, dir: &Path) -> String {
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

impl DockerRegistry {
    pub async fn start(basic_auth: Option<(&str, &str)>) -> DockerRegistry {
        let dir = tempfile::tempdir().unwrap();
        let auth = basic_auth
            .map(|(u, p)| htpasswd_section(u, p, dir.path()))
            .unwrap_or_default();
        DockerRegistry::start_with_auth(dir, auth).await
    }

    /// With an `auth:` section of the registry's configuration.
    pub async fn start_with_auth(dir: TempDir, auth: String) -> DockerRegistry {
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: wharf-test-secret\n{auth}",
            dir.path().join("storage").display(),
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
