//! The test-image factory: deterministic images without any network, in
//! OCI or Docker v2 schema 2 form, single-platform or as an index /
//! manifest list, and the writers and pushers that put them somewhere.
//!
//! Two kinds of image, one model ([`Artifact`]):
//! - [`image`] / [`multi_arch`]: runnable-looking images whose layers are
//!   gzipped tar files (what containerd unpacks and podman runs);
//! - [`seeded_image`] / [`random_image`]: layers of seeded pseudo-random
//!   bytes, gzipped, of any size (what registries and clients move).
//!
//! Every config's `rootfs.diff_ids` are the digests of the uncompressed
//! layers. Manifests are indented with three spaces, a form no registry
//! or client writes on its own, so a test notices a manifest that was
//! re-serialised instead of kept byte for byte. The same inputs always give
//! the same digests.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;
use serde_json::{json, Value};
use wharf_client::Client;
use wharf_oci::{media_type, Digest, RepositoryName, Target};

use crate::digest::pseudo_random;

/// Fixed timestamp so generated images are reproducible.
const CREATED: &str = "2024-01-01T00:00:00Z";
const MTIME: u64 = 1_704_067_200;

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
            Format::Oci => media_type::OCI_MANIFEST,
            Format::Docker => media_type::DOCKER_MANIFEST,
        }
    }

    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => media_type::OCI_INDEX,
            Format::Docker => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => media_type::OCI_CONFIG,
            Format::Docker => media_type::DOCKER_CONFIG,
        }
    }

    pub fn layer_type(self) -> &'static str {
        match self {
            Format::Oci => media_type::OCI_LAYER_GZIP,
            Format::Docker => media_type::DOCKER_LAYER_GZIP,
        }
    }
}

/// `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/arm64`, `linux/arm/v7`.
    pub fn parse(text: &str) -> Platform {
        let mut parts = text.split('/');
        let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
            panic!("a platform is os/architecture[/variant], not {text:?}");
        };
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: parts.next().map(str::to_owned),
        }
    }

    fn json(&self) -> Value {
        let mut platform = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(variant) => write!(f, "/{variant}"),
            None => Ok(()),
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
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, bytes }
    }

    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.bytes)
    }

    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest().to_string(),
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
    /// The platform of an image.
    pub platform: Option<Platform>,
}

impl Artifact {
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    pub fn config(&self) -> &Blob {
        self.blobs.first().expect("an image has a config blob")
    }

    pub fn layers(&self) -> &[Blob] {
        &self.blobs[1..]
    }

    /// The only layer of a one-layer image.
    pub fn layer(&self) -> &Blob {
        match self.layers() {
            [layer] => layer,
            layers => panic!("the image has {} layers, not one", layers.len()),
        }
    }

    /// The blobs of this artifact and of all its children (a blob children
    /// share is listed once per child).
    pub fn all_blobs(&self) -> Vec<&Blob> {
        let mut blobs: Vec<&Blob> = self.blobs.iter().collect();
        for child in &self.children {
            blobs.extend(child.all_blobs());
        }
        blobs
    }

    /// Bytes of this image's own blobs.
    pub fn blob_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.bytes.len() as u64).sum()
    }

    /// The child image built for `arch`.
    pub fn child_for(&self, arch: &str) -> &Artifact {
        self.children
            .iter()
            .find(|c| c.platform.as_ref().is_some_and(|p| p.architecture == arch))
            .unwrap_or_else(|| panic!("no {arch} image in the index"))
    }

    /// The child image for `platform` (`linux/arm/v7`).
    pub fn child(&self, platform: &str) -> &Artifact {
        let wanted = Platform::parse(platform);
        self.children
            .iter()
            .find(|c| c.platform.as_ref() == Some(&wanted))
            .unwrap_or_else(|| panic!("no {platform} image in the index"))
    }

    /// This manifest, a child's, or a blob of either, by digest.
    pub fn find(&self, digest: &str) -> Option<(&'static str, &[u8])> {
        if self.digest().to_string() == digest {
            return Some((self.media_type, &self.manifest));
        }
        if let Some(blob) = self.blobs.iter().find(|b| b.digest().to_string() == digest) {
            return Some((blob.media_type, &blob.bytes));
        }
        self.children.iter().find_map(|c| c.find(digest))
    }

    pub fn descriptor(&self) -> Value {
        let mut descriptor = json!({
            "mediaType": self.media_type,
            "digest": self.digest().to_string(),
            "size": self.manifest.len(),
        });
        if let Some(platform) = &self.platform {
            descriptor["platform"] = platform.json();
        }
        descriptor
    }
}

/// A single-platform image for `arch` whose files mention `name`: a base
/// layer (`/etc/os-release`, `/usr/share/wharf/arch`) and an app layer
/// (`/app/hello.txt`).
pub fn image(format: Format, name: &str, arch: &'static str) -> Artifact {
    let base = tar_layer(&[
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
    let app = tar_layer(&[
        ("app/", None),
        (
            "app/hello.txt",
            Some(format!("hello from {name} on {arch}\n")),
        ),
    ]);
    let config = json!({
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/app",
        },
        "history": [
            { "created": CREATED, "created_by": "wharf test generator: base files" },
            { "created": CREATED, "created_by": "wharf test generator: app files" },
        ],
    });
    let platform = Platform::parse(&format!("linux/{arch}"));
    assemble(format, platform, config, &[base, app])
}

/// An index (OCI) or manifest list (Docker) of two [`image`]s: the host's
/// architecture and one other.
pub fn multi_arch(format: Format, name: &str) -> Artifact {
    index(
        format,
        vec![
            image(format, name, host_arch()),
            image(format, name, other_arch()),
        ],
    )
}

/// A single-platform image whose layers are `(seed, length)` pseudo-random
/// bytes, gzipped; images naming the same layer seed and length share that
/// layer. The config names `seed`, so images of different seeds differ.
pub fn seeded_image(
    format: Format,
    platform: &str,
    seed: u64,
    layers: &[(u64, usize)],
) -> Artifact {
    let layers: Vec<Vec<u8>> = layers
        .iter()
        .map(|(layer_seed, len)| pseudo_random(*layer_seed, *len))
        .collect();
    let config = json!({ "config": { "Env": [format!("SEED={seed}")] } });
    assemble(format, Platform::parse(platform), config, &layers)
}

/// A linux/amd64 image with one layer of `layer_len` bytes, unique to `seed`.
pub fn random_image(format: Format, seed: u64, layer_len: usize) -> Artifact {
    seeded_image(format, "linux/amd64", seed, &[(seed, layer_len)])
}

/// An index (OCI) or manifest list (Docker) over `children`, which carry their platforms.
pub fn index(format: Format, children: Vec<Artifact>) -> Artifact {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.index_type(),
        "manifests": children.iter().map(Artifact::descriptor).collect::<Vec<_>>(),
    });
    Artifact {
        media_type: format.index_type(),
        manifest: to_json(&manifest),
        blobs: Vec::new(),
        children,
        platform: None,
    }
}

/// An OCI artifact (a signature, say) whose subject is `subject`: the
/// empty JSON config and one payload blob unique to `seed`.
pub fn referrer(subject: &Artifact, seed: u64) -> Artifact {
    let config = Blob::new(media_type::OCI_EMPTY, b"{}".to_vec());
    let payload = Blob::new("application/octet-stream", pseudo_random(seed, 512));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": config.descriptor(),
        "layers": [payload.descriptor()],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest().to_string(),
            "size": subject.manifest.len(),
        },
    });
    Artifact {
        media_type: media_type::OCI_MANIFEST,
        manifest: to_json(&manifest),
        blobs: vec![config, payload],
        children: Vec::new(),
        platform: None,
    }
}

/// The image manifest over `uncompressed` layers (gzipped here) and a
/// config that is `config` plus the platform and `rootfs`.
fn assemble(
    format: Format,
    platform: Platform,
    mut config: Value,
    uncompressed: &[Vec<u8>],
) -> Artifact {
    let diff_ids: Vec<String> = uncompressed
        .iter()
        .map(|l| Digest::sha256_of(l).to_string())
        .collect();
    config["architecture"] = json!(platform.architecture);
    config["os"] = json!(platform.os);
    if let Some(variant) = &platform.variant {
        config["variant"] = json!(variant);
    }
    config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
    let config = Blob::new(format.config_type(), to_json(&config));
    let layers: Vec<Blob> = uncompressed
        .iter()
        .map(|l| Blob::new(format.layer_type(), gzip(l)))
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
        platform: Some(platform),
    }
}

/// An uncompressed tar; entries ending in `/` are directories.
fn tar_layer(entries: &[(&str, Option<String>)]) -> Vec<u8> {
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
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// JSON indented with three spaces and ending in a newline.
fn to_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).expect("serialize JSON");
    out.push(b'\n');
    out
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
        write_file(&blob_dir.join(manifest.digest().hex()), &manifest.manifest);
    }
    for blob in artifact.all_blobs() {
        write_file(&blob_dir.join(blob.digest().hex()), &blob.bytes);
    }
    let mut descriptor = artifact.descriptor();
    descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": tag });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
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
        let name = format!("{}.manifest.json", child.digest().hex());
        write_file(&dir.join(name), &child.manifest);
    }
    for blob in artifact.all_blobs() {
        write_file(&dir.join(blob.digest().hex()), &blob.bytes);
    }
}

/// Pushes `artifact` to `host` with wharf's own client: an index's
/// children first (by digest), then the blobs, then the manifest under
/// `tag` (or by digest), checking that the registry reports the
/// manifest's own digest.
pub async fn push(
    client: &Client,
    host: &str,
    repo: &RepositoryName,
    tag: Option<&str>,
    artifact: &Artifact,
) {
    for child in &artifact.children {
        Box::pin(push(client, host, repo, None, child)).await;
    }
    for blob in &artifact.blobs {
        client
            .push_blob_bytes(host, repo, &blob.digest(), Bytes::from(blob.bytes.clone()))
            .await
            .unwrap_or_else(|e| panic!("push blob {} to {host}/{repo}: {e}", blob.digest()));
    }
    let target = match tag {
        Some(tag) => Target::Tag(tag.parse().expect("a valid tag")),
        None => Target::Digest(artifact.digest()),
    };
    let manifest = Bytes::from(artifact.manifest.clone());
    let reported = client
        .put_manifest(host, repo, &target, manifest, artifact.media_type)
        .await
        .unwrap_or_else(|e| panic!("push manifest {} to {host}/{repo}: {e}", artifact.digest()));
    assert_eq!(
        reported,
        artifact.digest(),
        "{host} reported another digest for the manifest pushed to {repo}"
    );
}
