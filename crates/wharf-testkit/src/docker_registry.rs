//! Debian's `docker-registry` (CNCF distribution 2.8) as a child process on
//! a free loopback port: open, with one htpasswd user, or trusting a
//! [`TokenServer`]; optionally over HTTPS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::net::free_port;
use crate::process::ChildGuard;
use crate::token::{TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};
use crate::tools::{require_tool, run};
use crate::wait::eventually;

/// How long a fresh registry may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How clients authenticate to the registry.
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

impl DockerAuth {
    /// Bearer tokens from `server`.
    pub fn token(server: &TokenServer) -> DockerAuth {
        DockerAuth::Token {
            realm: server.realm(),
            cert: server.cert.clone(),
        }
    }
}

/// The running registry; killed by its PID when dropped.
pub struct DockerRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Kills the registry by its PID when dropped.
    _process: ChildGuard,
    dir: TempDir,
}

impl DockerRegistry {
    pub async fn start(auth: DockerAuth) -> DockerRegistry {
        DockerRegistry::start_with(auth, None).await
    }

    /// `tls`: certificate and key files to serve HTTPS with.
    pub async fn start_with(auth: DockerAuth, tls: Option<(PathBuf, PathBuf)>) -> DockerRegistry {
        let binary = require_tool("docker-registry");
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let port = free_port();
        let config = config(dir.path(), port, &auth, tls.as_ref());
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry's config.yml");
        let mut cmd = Command::new(binary);
        cmd.arg("serve").arg(&config_path);
        let log = dir.path().join("registry.log");
        let process = ChildGuard::spawn(cmd, "docker-registry", &log);
        let registry = DockerRegistry {
            host: format!("127.0.0.1:{port}"),
            _process: process,
            dir,
        };
        registry.wait_ready(port).await;
        registry
    }

    async fn wait_ready(&self, port: u16) {
        let ready = eventually(READY_TIMEOUT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(
            ready,
            "docker-registry did not listen on port {port} within {READY_TIMEOUT:?}; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

fn config(dir: &Path, port: u16, auth: &DockerAuth, tls: Option<&(PathBuf, PathBuf)>) -> String {
    let tls = match tls {
        Some((cert, key)) => format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: wharf-test-secret\n{tls}{}",
        dir.join("storage").display(),
        auth_section(auth, dir)
    )
}

fn auth_section(auth: &DockerAuth, dir: &Path) -> String {
    match auth {
        DockerAuth::None => String::new(),
        DockerAuth::Htpasswd { user, password } => {
            let path = dir.join("htpasswd");
            let out = run(
                Command::new(require_tool("htpasswd"))
                    .args(["-Bbn", user, password]),
                "hashing the registry user's password with htpasswd (apache2-utils)",
            );
            std::fs::write(&path, out.stdout).expect("write the htpasswd file");
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
