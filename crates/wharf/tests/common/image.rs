//! Generates real, runnable-looking container images without any network:
//! gzipped rootfs tar layers, a config whose `rootfs.diff_ids` are the
//! digests of the uncompressed tars, and the manifest — in OCI or Docker v2
//! schema 2 form, single-platform or as an index / manifest list — and writes
//! them as an OCI image layout or a skopeo `dir:` directory.
//!
//! Everything is deterministic: the same name and platform give the same digests.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type, for `Accept` headers.
pub const ALL_MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Fixed timestamp so generated images are reproducible.
const CREATED: &str = "2024-01-01T00:00:00Z";
const MTIME: u64 = 1_704_067_200;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn digest_hex(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// The OCI architecture name of the machine running the tests, so that
/// containerd's default platform matches the generated image.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("no OCI architecture name known for {other}"),
    }
}

/// An architecture different from the host's, for the second platform of a multi-arch image.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / OCI image index.
    Oci,
    /// Docker image manifest v2 schema 2 / Docker manifest list.
    Docker,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        }
    }
    fn config_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }
    fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER,
            Format::Docker => DOCKER_LAYER,
        }
    }
}

/// A content-addressed blob (config or layer).
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }

    fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }
}

/// A manifest with everything it references: an image manifest with its
/// config and layers, or an index whose `children` are image manifests.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub media_type: &'static str,
    pub manifest: Vec<u8>,
    /// Config first, then layers (empty for an index).
    pub blobs: Vec<Blob>,
    /// Platform-specific images (empty for an image manifest).
    pub children: Vec<Artifact>,
    /// `(os, architecture)` of an image.
    pub platform: Option<(&'static str, &'static str)>,
}

impl Artifact {
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn config(&self) -> &Blob {
        self.blobs.first().expect("an image has a config blob")
    }

    pub fn layers(&self) -> &[Blob] {
        &self.blobs[1..]
    }

    /// The blobs of this artifact and of all its children.
    pub fn all_blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = self.blobs.iter().collect();
        for child in &self.children {
            blobs.extend(child.all_blobs());
        }
        blobs
    }

    /// The child image built for `arch`.
    pub fn child_for(&self, arch: &str) -> &Artifact {
        self.children
            .iter()
            .find(|c| c.platform.map(|(_, a)| a) == Some(arch))
            .unwrap_or_else(|| panic!("no {arch} image in the index"))
    }

    fn descriptor(&self) -> Value {
        let mut descriptor = json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.manifest.len(),
        });
        if let Some((os, arch)) = self.platform {
            descriptor["platform"] = json!({ "architecture": arch, "os": os });
        }
        descriptor
    }
}

/// A single-platform image for `arch` whose files mention `name`.
pub fn image(format: Format, name: &str, arch: &'static str) -> Artifact {
    let base = layer(&[
        ("etc/", None),
        (
            "etc/os-release",
            Some(format!("ID=wharf-test\nNAME={name}\n")),
        ),
        ("usr/", None),
        ("usr/share/", None),
        ("usr/share/wharf/", None),
        ("usr/share/wharf/arch", Some(format!("{arch}\n"))),
    ]);
    let app = layer(&[
        ("app/", None),
        (
            "app/hello.txt",
            Some(format!("hello from {name} on {arch}\n")),
        ),
    ]);
    let diff_ids: Vec<String> = [&base, &app].iter().map(|l| sha256_digest(l)).collect();
    let config = Blob {
        media_type: format.config_type(),
        bytes: to_json(&image_config(arch, &diff_ids)),
    };
    let layers: Vec<Blob> = [base, app]
        .iter()
        .map(|tar| Blob {
            media_type: format.layer_type(),
            bytes: gzip(tar),
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_type(),
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let mut blobs = vec![config];
    blobs.extend(layers);
    Artifact {
        media_type: format.manifest_type(),
        manifest: to_json(&manifest),
        blobs,
        children: Vec::new(),
        platform: Some(("linux", arch)),
    }
}

/// An index (OCI) or manifest list (Docker) of two images: the host's
/// architecture and one other.
pub fn multi_arch(format: Format, name: &str) -> Artifact {
    let children = vec![
        image(format, name, host_arch()),
        image(format, name, other_arch()),
    ];
    let index = json!({
        "schemaVersion": 2,
        "mediaType": format.index_type(),
        "manifests": children.iter().map(Artifact::descriptor).collect::<Vec<_>>(),
    });
    Artifact {
        media_type: format.index_type(),
        manifest: to_json(&index),
        blobs: Vec::new(),
        children,
        platform: None,
    }
}

fn image_config(arch: &str, diff_ids: &[String]) -> Value {
    json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/app",
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": [
            { "created": CREATED, "created_by": "wharf test generator: base files" },
            { "created": CREATED, "created_by": "wharf test generator: app files" },
        ],
    })
}

/// An uncompressed tar; entries ending in `/` are directories.
fn layer(entries: &[(&str, Option<String>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        match content {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .expect("append directory");
            }
            Some(text) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(text.len() as u64);
                builder
                    .append_data(&mut header, path, text.as_bytes())
                    .expect("append file");
            }
        }
    }
    builder.into_inner().expect("finish tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("serialize JSON")
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Writes `artifact` as an OCI image layout in `dir` (created if needed),
/// reachable as `oci:<dir>:<tag>`.
pub fn write_oci_layout(artifact: &Artifact, dir: &Path, tag: &str) {
    let blob_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blob_dir).expect("create layout blob dir");
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    let mut manifests = vec![artifact];
    manifests.extend(artifact.children.iter());
    for manifest in manifests {
        write_file(
            &blob_dir.join(digest_hex(&manifest.digest())),
            &manifest.manifest,
        );
    }
    for blob in artifact.all_blobs() {
        write_file(&blob_dir.join(digest_hex(&blob.digest())), &blob.bytes);
    }
    let mut descriptor = artifact.descriptor();
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor],
    });
    write_file(&dir.join("index.json"), &to_json(&index));
}

/// Writes `artifact` as a skopeo `dir:` directory (directory transport 1.1):
/// `manifest.json`, per-platform manifests as `<hex>.manifest.json`, blobs named by hex digest.
pub fn write_dir_transport(artifact: &Artifact, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create dir: directory");
    write_file(&dir.join("version"), b"Directory Transport Version: 1.1\n");
    write_file(&dir.join("manifest.json"), &artifact.manifest);
    for child in &artifact.children {
        let name = format!("{}.manifest.json", digest_hex(&child.digest()));
        write_file(&dir.join(name), &child.manifest);
    }
    for blob in artifact.all_blobs() {
        write_file(&dir.join(digest_hex(&blob.digest())), &blob.bytes);
    }
}
