//! Test fixtures: wharf's registry in-process, a small static registry for
//! faults wharf never makes (404 on /v2/, redirects, TLS), certificates,
//! hosts directories, and a loopback-only network namespace.
#![allow(dead_code)]

pub mod netns;
pub mod pki;
pub mod static_registry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use wharf_doctor::{Failure, Layer, Options, Platform, Report, StepStatus};
use wharf_oci::media_type::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};
use wharf_oci::Digest;

/// The platform every test asks for, whatever machine runs it.
pub const PLATFORM: &str = "linux/amd64";
pub const REPO: &str = "test/app";
pub const TAG: &str = "1";

/// A port nothing listens on: bound, then released.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A blob and its digest.
#[derive(Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        let digest = Digest::sha256_of(&bytes);
        Blob {
            media_type,
            bytes,
            digest,
        }
    }

    fn descriptor(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type,
            self.digest,
            self.bytes.len()
        )
    }
}

/// A two-platform image: an index over linux/amd64 and linux/arm64
/// manifests that share one layer.
#[derive(Clone)]
pub struct TestImage {
    pub layer: Blob,
    pub configs: Vec<Blob>,
    /// Image manifests, amd64 first.
    pub manifests: Vec<Blob>,
    pub index: Blob,
}

impl TestImage {
    pub fn new() -> TestImage {
        // Larger than the 1024 bytes the doctor reads, so Range matters.
        let layer = Blob::new(
            OCI_LAYER_GZIP,
            (0..4096u32).map(|i| (i * 7 % 251) as u8).collect(),
        );
        let arches = ["amd64", "arm64"];
        let configs: Vec<Blob> = arches
            .iter()
            .map(|arch| {
                Blob::new(
                    OCI_CONFIG,
                    format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#)
                        .into_bytes(),
                )
            })
            .collect();
        let manifests: Vec<Blob> = configs
            .iter()
            .map(|config| {
                Blob::new(
                    OCI_MANIFEST,
                    format!(
                        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
                        config.descriptor(),
                        layer.descriptor()
                    )
                    .into_bytes(),
                )
            })
            .collect();
        let entries: Vec<String> = manifests
            .iter()
            .zip(arches)
            .map(|(m, arch)| {
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                    m.digest,
                    m.bytes.len()
                )
            })
            .collect();
        let index = Blob::new(
            OCI_INDEX,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
                entries.join(",")
            )
            .into_bytes(),
        );
        TestImage {
            layer,
            configs,
            manifests,
            index,
        }
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        self.configs.iter().chain([&self.layer]).collect()
    }

    /// Any manifest or blob by digest.
    pub fn by_digest(&self, digest: &str) -> Option<&Blob> {
        self.manifests
            .iter()
            .chain(self.configs.iter())
            .chain([&self.layer, &self.index])
            .find(|b| b.digest.to_string() == digest)
    }
}

/// wharf's own registry on 127.0.0.1, stopped when dropped.
pub struct WharfRegistry {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl WharfRegistry {
    pub async fn start() -> WharfRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = wharf_storage::Store::open_fs(dir.path()).expect("open store");
        let registry =
            wharf_registry::Registry::new(store, wharf_registry::RegistryConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = wharf_registry::serve(listener, registry, async {
                let _ = rx.await;
            })
            .await;
        });
        WharfRegistry {
            addr,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// Push every blob and manifest of `image` to `repo:tag`.
    pub async fn push(&self, repo: &str, tag: &str, image: &TestImage) {
        for blob in image.blobs() {
            let path = format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest);
            let (status, body) = http(self.addr, "POST", &path, &[], &blob.bytes).await;
            assert_eq!(status, 201, "blob upload: {body}");
        }
        for manifest in &image.manifests {
            self.put_manifest(repo, &manifest.digest.to_string(), manifest)
                .await;
        }
        self.put_manifest(repo, tag, &image.index).await;
    }

    async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Blob) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let headers = [("Content-Type", manifest.media_type)];
        let (status, body) = http(self.addr, "PUT", &path, &headers, &manifest.bytes).await;
        assert_eq!(status, 201, "manifest push: {body}");
    }

    pub async fn delete_blob(&self, repo: &str, digest: &Digest) {
        let (status, body) = http(
            self.addr,
            "DELETE",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(status, 202, "blob delete: {body}");
    }
}

impl Drop for WharfRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
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
