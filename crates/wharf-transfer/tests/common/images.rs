//! Small test images: random gzip layers, configs whose `diff_ids` are the
//! layers' uncompressed digests, manifests in OCI or Docker v2s2 form, and
//! multi-platform indexes.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use wharf_client::Client;
use wharf_oci::{media_type, Digest, RepositoryName, Target};

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

/// A gzip layer and its uncompressed digest.
pub fn layer(seed: u64, len: usize) -> (Vec<u8>, Digest) {
    let raw = data(seed, len);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), Digest::sha256_of(&raw))
}

/// A manifest with its config and layers.
#[derive(Clone)]
pub struct TestImage {
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
}

pub struct Kind {
    manifest: &'static str,
    config: &'static str,
    layer: &'static str,
}

pub const OCI: Kind = Kind {
    manifest: media_type::OCI_MANIFEST,
    config: media_type::OCI_CONFIG,
    layer: media_type::OCI_LAYER_GZIP,
};

pub const DOCKER: Kind = Kind {
    manifest: media_type::DOCKER_MANIFEST,
    config: media_type::DOCKER_CONFIG,
    layer: media_type::DOCKER_LAYER_GZIP,
};

fn descriptor(media_type: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        Digest::sha256_of(bytes),
        bytes.len()
    )
}

impl TestImage {
    /// An image of `kind` for `arch` with one layer of its own (from
    /// `seed`) on top of `shared` layers (by seed).
    pub fn build(kind: &Kind, arch: &str, seed: u64, shared: &[u64]) -> TestImage {
        let layers: Vec<(Vec<u8>, Digest)> = shared
            .iter()
            .chain(std::iter::once(&seed))
            .map(|s| layer(*s, 20_000 + (*s as usize % 7) * 1000))
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|(_, d)| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["SEED={seed}"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            diff_ids.join(",")
        )
        .into_bytes();
        let layer_descs: Vec<String> = layers
            .iter()
            .map(|(l, _)| descriptor(kind.layer, l))
            .collect();
        // Unusual spacing on purpose: byte-exactness is what is tested.
        let manifest = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"config\": {},\n  \"layers\": [ {} ]\n}}\n",
            kind.manifest,
            descriptor(kind.config, &config),
            layer_descs.join(",\n    ")
        )
        .into_bytes();
        TestImage {
            config,
            layers: layers.into_iter().map(|(l, _)| l).collect(),
            manifest,
            media_type: kind.manifest,
        }
    }

    pub fn oci(seed: u64) -> TestImage {
        TestImage::build(&OCI, "amd64", seed, &[])
    }

    pub fn docker(seed: u64) -> TestImage {
        TestImage::build(&DOCKER, "amd64", seed, &[])
    }

    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    pub fn blobs(&self) -> impl Iterator<Item = &Vec<u8>> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    pub fn blob_bytes(&self) -> u64 {
        self.blobs().map(|b| b.len() as u64).sum()
    }

    pub async fn push_blobs(&self, client: &Client, host: &str, repo: &RepositoryName) {
        for blob in self.blobs() {
            push_blob(client, host, repo, blob).await;
        }
    }

    /// Push the blobs and the manifest under `tag` (or by digest).
    pub async fn push(
        &self,
        client: &Client,
        host: &str,
        repo: &RepositoryName,
        tag: Option<&str>,
    ) {
        self.push_blobs(client, host, repo).await;
        put(client, host, repo, tag, &self.manifest, self.media_type).await;
    }
}

pub async fn push_blob(client: &Client, host: &str, repo: &RepositoryName, blob: &[u8]) {
    client
        .push_blob_bytes(
            host,
            repo,
            &Digest::sha256_of(blob),
            Bytes::from(blob.to_vec()),
        )
        .await
        .expect("push a blob");
}

pub async fn put(
    client: &Client,
    host: &str,
    repo: &RepositoryName,
    tag: Option<&str>,
    bytes: &[u8],
    media_type: &str,
) -> Digest {
    let target = match tag {
        Some(t) => Target::Tag(t.parse().unwrap()),
        None => Target::Digest(Digest::sha256_of(bytes)),
    };
    client
        .put_manifest(host, repo, &target, Bytes::from(bytes.to_vec()), media_type)
        .await
        .expect("push a manifest")
}

/// A multi-platform index over `images` (one per `(os/arch[/variant], image)`).
pub struct TestIndex {
    pub images: Vec<(String, TestImage)>,
    pub manifest: Vec<u8>,
    pub media_type: &'static str,
}

impl TestIndex {
    pub fn new(oci: bool, platforms: &[&str], seed: u64) -> TestIndex {
        let kind = if oci { &OCI } else { &DOCKER };
        let images: Vec<(String, TestImage)> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let arch = p.split('/').nth(1).unwrap();
                // A base layer shared by every platform, one of each's own.
                (
                    p.to_string(),
                    TestImage::build(kind, arch, seed + 1 + i as u64, &[seed]),
                )
            })
            .collect();
        let entries: Vec<String> = images
            .iter()
            .map(|(p, img)| {
                let parts: Vec<&str> = p.split('/').collect();
                let variant = parts
                    .get(2)
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":{},"platform":{{"architecture":"{}","os":"{}"{variant}}}}}"#,
                    img.media_type,
                    img.digest(),
                    img.manifest.len(),
                    parts[1],
                    parts[0]
                )
            })
            .collect();
        let media_type = if oci {
            media_type::OCI_INDEX
        } else {
            media_type::DOCKER_MANIFEST_LIST
        };
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{media_type}\",\"manifests\":[\n  {}\n]}}",
            entries.join(",\n  ")
        )
        .into_bytes();
        TestIndex {
            images,
            manifest,
            media_type,
        }
    }

    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    pub fn image(&self, platform: &str) -> &TestImage {
        &self.images.iter().find(|(p, _)| p == platform).unwrap().1
    }

    pub async fn push(&self, client: &Client, host: &str, repo: &RepositoryName, tag: &str) {
        for (_, img) in &self.images {
            img.push(client, host, repo, None).await;
        }
        put(
            client,
            host,
            repo,
            Some(tag),
            &self.manifest,
            self.media_type,
        )
        .await;
    }
}

/// An OCI artifact (a signature, say) whose subject is `subject`.
pub fn referrer(subject: &Digest, subject_size: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let payload = data(seed, 512);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.signature","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{}],"subject":{{"mediaType":"{}","digest":"{subject}","size":{subject_size}}}}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_EMPTY,
        Digest::sha256_of(b"{}"),
        descriptor("application/octet-stream", &payload),
        media_type::OCI_MANIFEST,
    )
    .into_bytes();
    (manifest, payload)
}
