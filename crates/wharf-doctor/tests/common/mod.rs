//! Test fixtures: the image every test pulls, a small static registry for
//! faults wharf never makes (404 on /v2/, redirects, TLS) and hosts
//! directories. The wharf registry, certificates, free ports and the
//! loopback-only network namespace come from `wharf_testkit`.
#![allow(dead_code)]

pub mod static_registry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf_client::{Client, ClientConfig};
use wharf_doctor::{Failure, Layer, Options, Platform, Report, StepStatus};
use wharf_oci::{Digest, RepositoryName};
use wharf_testkit::image::{index, push, seeded_image, Artifact, Blob, Format};
use wharf_testkit::WharfRegistry;

/// The platform every test asks for, whatever machine runs it.
pub const PLATFORM: &str = "linux/amd64";
pub const REPO: &str = "test/app";
pub const TAG: &str = "1";

/// The image every test pulls: an OCI index over linux/amd64 and
/// linux/arm64 manifests that share one layer, larger than the 1024 bytes
/// the doctor reads, so `Range` matters.
pub fn test_image() -> Artifact {
    let shared_layer = [(7, 4096)];
    index(
        Format::Oci,
        vec![
            seeded_image(Format::Oci, "linux/amd64", 1, &shared_layer),
            seeded_image(Format::Oci, "linux/arm64", 2, &shared_layer),
        ],
    )
}

/// The layer both platforms of [`test_image`] share.
pub fn shared_layer(image: &Artifact) -> &Blob {
    image.children[0].layer()
}

/// Push `image` to `repo:TAG` of `registry`.
pub async fn push_image(registry: &WharfRegistry, repo: &str, image: &Artifact) {
    let client = Client::new(ClientConfig::default()).expect("build a client");
    let repo: RepositoryName = repo.parse().expect("repository");
    push(&client, &registry.host, &repo, Some(TAG), image).await;
}

/// Delete a blob from `repo` of `registry` (202 Accepted).
pub async fn delete_blob(registry: &WharfRegistry, repo: &str, digest: &Digest) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let (status, body) = http(registry.addr(), "DELETE", &path, &[], b"").await;
    assert_eq!(status, 202, "blob delete: {body}");
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the test registry");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the test registry answers")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// The repository a wharf mirror stores `<registry>/<repo>` under
/// (containerd's `?ns=<registry>`).
pub fn mirrored_repo(registry: &str) -> String {
    format!(
        "{}/{REPO}",
        wharf_oci::name::host_component(registry).expect("valid host")
    )
}

/// A hosts directory with one `<namespace>/hosts.toml`.
pub struct HostsDir {
    pub dir: tempfile::TempDir,
}

impl HostsDir {
    pub fn new() -> HostsDir {
        HostsDir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// Write `<root>/<namespace>/hosts.toml` and return its path.
    pub fn write(&self, namespace: &str, toml: &str) -> PathBuf {
        let dir = self.root().join(namespace);
        std::fs::create_dir_all(&dir).expect("create namespace dir");
        let file = dir.join("hosts.toml");
        std::fs::write(&file, toml).expect("write hosts.toml");
        file
    }

    /// Write a file next to the hosts.toml files (a CA, say).
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        std::fs::create_dir_all(self.dir.path()).expect("dir");
        let file = self.dir.path().join(name);
        std::fs::write(&file, contents).expect("write file");
        file
    }

    /// A version-2 config.toml whose config_path is this directory.
    pub fn config_toml(&self) -> PathBuf {
        let file = self.dir.path().join("config.toml");
        std::fs::write(
            &file,
            format!(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{}\"\n",
                self.root().display()
            ),
        )
        .expect("write config.toml");
        file
    }
}

/// Options for `image` read through `hosts`' config.toml, short timeouts.
pub fn options(image: &str, hosts: &HostsDir) -> Options {
    let mut options = Options::new(image);
    options.config_file = Some(hosts.config_toml());
    options.platform = Some(PLATFORM.parse::<Platform>().expect("platform"));
    options.timeout = Duration::from_secs(5);
    options
}

/// The first failure, which must be on `url_part` at `layer`.
pub fn assert_broken<'a>(report: &'a Report, url_part: &str, layer: Layer) -> &'a Failure {
    let text = wharf_doctor::render_text(report);
    assert!(
        !report.verdict.would_succeed,
        "expected a failing pull:\n{text}"
    );
    let first = report
        .verdict
        .primary()
        .unwrap_or_else(|| panic!("no failure named:\n{text}"));
    assert!(
        first.url.contains(url_part),
        "broken host should be {url_part}:\n{text}"
    );
    assert_eq!(first.layer, layer, "broken layer:\n{text}");
    first
}

/// The layers of `host` that passed, in order.
pub fn ok_layers(report: &Report, host: usize) -> Vec<Layer> {
    report.hosts[host]
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Ok)
        .map(|s| s.layer)
        .collect()
}

pub fn path_text(p: &Path) -> String {
    p.display().to_string()
}
