//! Writing a bundle: a tar stream, each blob once, the checksum manifest
//! last. Blobs are streamed through (the tar header needs the size, which
//! the descriptor gives); memory does not grow with blob size.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use serde_json::json;
use sha2::{Digest as _, Sha256};
use wharf_oci::{media_type, Algorithm, Descriptor, Digest, Reference, Target};

use crate::format::{
    blob_path, Checksums, FileSum, Marker, OmittedBlob, CHECKSUM_FILE, CONTAINERD_NAME,
    DOCKER_MANIFEST_FILE, FORMAT_NAME, FORMAT_VERSION, INDEX_FILE, MARKER_FILE, OCI_LAYOUT,
    OCI_LAYOUT_FILE, OCI_REF_NAME,
};

/// One name in the bundle.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// Fully-qualified, as a node would pull it (`registry.k8s.io/pause:3.10`).
    pub name: Reference,
    /// The top manifest (an index for a multi-platform image).
    pub manifest: Descriptor,
    /// The default platform's image, for Docker's `manifest.json`.
    pub docker: Option<DockerImage>,
}

/// What Docker's `manifest.json` lists for one image.
#[derive(Debug, Clone)]
pub struct DockerImage {
    pub config: Digest,
    pub layers: Vec<Digest>,
}

/// Why a blob could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing the bundle failed: {0}")]
    Io(#[from] io::Error),
    #[error("blob {digest}: expected {expected} bytes, the source gave {got}")]
    ShortBlob {
        digest: Digest,
        expected: u64,
        got: u64,
    },
    #[error("blob {digest}: the source gave more than the expected {expected} bytes")]
    LongBlob { digest: Digest, expected: u64 },
    #[error("blob {digest}: the content hashes to {actual}")]
    WrongDigest { digest: Digest, actual: Digest },
    #[error(transparent)]
    Names(Box<NameCollision>),
}

/// A bundle being written to `W` (a temp file, maybe through zstd).
pub struct BundleWriter<W: Write> {
    tar: tar::Builder<W>,
    files: Vec<FileSum>,
    blobs: HashSet<Digest>,
    bytes: u64,
}

impl<W: Write> BundleWriter<W> {
    /// Start a bundle: the marker goes first.
    pub fn new(out: W) -> Result<BundleWriter<W>, WriteError> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut writer = BundleWriter {
            tar,
            files: Vec::new(),
            blobs: HashSet::new(),
            bytes: 0,
        };
        let marker = serde_json::to_vec(&Marker::current()).expect("marker serialises");
        writer.append(MARKER_FILE, &marker, false)?;
        Ok(writer)
    }

    /// Whether the blob was written already (blobs appear once).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains(digest)
    }

    /// Bytes of content written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Stream a blob of `size` bytes into the bundle, checking its digest
    /// on the way. A second call for the same digest writes nothing.
    pub fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        data: impl Read,
    ) -> Result<(), WriteError> {
        self.write_blob(digest, size, data, Verify::Here)
    }

    /// Like [`add_blob`](Self::add_blob), for `data` that checks the digest
    /// itself and fails at its end when the content does not match (a
    /// registry download, which hashes while it streams). Reading on to
    /// that end instead of hashing a second time halves the hashing of
    /// `wharf save`. Only sha256 blobs are taken on trust; the checksum
    /// manifest's sha256 is then the digest itself.
    pub fn add_verified_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        data: impl Read,
    ) -> Result<(), WriteError> {
        let verify = if digest.algorithm() == Algorithm::Sha256 {
            Verify::BySource
        } else {
            Verify::Here
        };
        self.write_blob(digest, size, data, verify)
    }

    fn write_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        data: impl Read,
        verify: Verify,
    ) -> Result<(), WriteError> {
        if !self.blobs.insert(digest.clone()) {
            return Ok(());
        }
        // For a sha256 blob the content digest is the checksum: hash once.
        let other = (digest.algorithm() != Algorithm::Sha256).then(|| digest.algorithm().hasher());
        let mut reader = CheckingReader {
            inner: data.take(size),
            other,
            sha256: (verify == Verify::Here).then(Sha256::new),
            count: 0,
        };
        let path = blob_path(digest);
        let mut header = header(size);
        self.tar.append_data(&mut header, &path, &mut reader)?;
        if reader.count != size {
            return Err(WriteError::ShortBlob {
                digest: digest.clone(),
                expected: size,
                got: reader.count,
            });
        }
        let sha256 = match reader.sha256 {
            Some(hasher) => hex::encode(hasher.finalize()),
            None => {
                expect_end(digest, size, reader.inner.into_inner())?;
                digest.hex().to_string()
            }
        };
        let actual = match reader.other {
            Some(h) => h.finish(),
            None => Digest::new(Algorithm::Sha256, &sha256).expect("a sha256 digest"),
        };
        if actual != *digest {
            return Err(WriteError::WrongDigest {
                digest: digest.clone(),
                actual,
            });
        }
        self.bytes += size;
        self.files.push(FileSum { path, size, sha256 });
        Ok(())
    }

    /// A blob held in memory (a manifest).
    pub fn add_blob_bytes(&mut self, digest: &Digest, bytes: &[u8]) -> Result<(), WriteError> {
        self.add_blob(digest, bytes.len() as u64, bytes)
    }

    /// Write the indexes and the checksum manifest, and hand back the
    /// output (to finish compression, flush and sync).
    pub fn finish(
        mut self,
        images: &[ImageRecord],
        omitted: Vec<OmittedBlob>,
        base: Option<String>,
    ) -> Result<W, WriteError> {
        self.append(OCI_LAYOUT_FILE, OCI_LAYOUT.as_bytes(), true)?;
        let index = oci_index(images).map_err(WriteError::Names)?;
        let index = serde_json::to_vec_pretty(&index).expect("index serialises");
        self.append(INDEX_FILE, &index, true)?;
        let docker =
            serde_json::to_vec_pretty(&docker_manifest(images)).expect("manifest serialises");
        self.append(DOCKER_MANIFEST_FILE, &docker, true)?;
        let checksums = Checksums {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            created_by: format!("wharf {}", env!("CARGO_PKG_VERSION")),
            files: std::mem::take(&mut self.files),
            omitted,
            base,
        };
        let bytes = serde_json::to_vec_pretty(&checksums).expect("checksums serialise");
        self.append(CHECKSUM_FILE, &bytes, false)?;
        Ok(self.tar.into_inner()?)
    }

    /// A small file; listed in the checksum manifest when `listed`.
    fn append(&mut self, path: &str, bytes: &[u8], listed: bool) -> io::Result<()> {
        let mut header = header(bytes.len() as u64);
        self.tar.append_data(&mut header, path, bytes)?;
        if listed {
            self.files.push(FileSum {
                path: path.to_string(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
            });
        }
        Ok(())
    }
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// Who checks that a blob's content matches its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// The writer hashes it.
    Here,
    /// The source does, and fails at the end of the data if it does not.
    BySource,
}

/// A source that checks its own digest has its verdict after the last
/// byte: an error there is a mismatch (or a broken download), more bytes
/// are more than the descriptor says.
fn expect_end(digest: &Digest, size: u64, mut data: impl Read) -> Result<(), WriteError> {
    let mut probe = [0u8; 1];
    match data.read(&mut probe)? {
        0 => Ok(()),
        _ => Err(WriteError::LongBlob {
            digest: digest.clone(),
            expected: size,
        }),
    }
}

/// Counts and hashes what the tar builder reads: the content's own digest
/// and the sha256 the checksum manifest records (unless the source checks
/// it).
struct CheckingReader<R> {
    inner: R,
    /// The content's own hash when it is not sha256.
    other: Option<wharf_oci::digest::Hasher>,
    sha256: Option<Sha256>,
    count: u64,
}

impl<R: Read> Read for CheckingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.other.as_mut() {
            h.update(&buf[..n]);
        }
        if let Some(h) = self.sha256.as_mut() {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// Every name the index lists, with the manifest it names: for each image
/// its own name and `host/repo@digest`, once each. containerd's importer
/// creates one image record per entry, and its CRI finds an image pinned by
/// digest only through a `repo@sha256:` record, the one a pull would have
/// written; without it a pod pinned by digest makes the kubelet pull an
/// image the node has.
pub fn index_names(
    images: &[ImageRecord],
) -> Result<Vec<(Reference, &Descriptor)>, Box<NameCollision>> {
    let mut names: Vec<(Reference, &Descriptor)> = Vec::new();
    let mut by_name: BTreeMap<String, (usize, &Digest)> = BTreeMap::new();
    for (n, image) in images.iter().enumerate() {
        let digest = &image.manifest.digest;
        let pinned = Reference::new(
            image.name.host(),
            image.name.repository().clone(),
            Target::Digest(digest.clone()),
        );
        // `name:tag@digest` is listed as `name:tag`: the pin is the second entry.
        let own = match image.name.tag() {
            Some(tag) => Reference::new(
                image.name.host(),
                image.name.repository().clone(),
                Target::Tag(tag.clone()),
            ),
            None => pinned.clone(),
        };
        for name in [own, pinned] {
            let key = name.to_string();
            match by_name.get(&key) {
                Some((_, d)) if *d == digest => {}
                Some((first, d)) => {
                    return Err(Box::new(NameCollision {
                        name: key,
                        first: images[*first].name.to_string(),
                        first_digest: (*d).clone(),
                        second: image.name.to_string(),
                        second_digest: digest.clone(),
                    }))
                }
                None => {
                    by_name.insert(key, (n, digest));
                    names.push((name, &image.manifest));
                }
            }
        }
    }
    Ok(names)
}

/// Two different images under one name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{first} ({first_digest}) and {second} ({second_digest}) would both be named {name}; \
     give each image its own name"
)]
pub struct NameCollision {
    pub name: String,
    pub first: String,
    pub first_digest: Digest,
    pub second: String,
    pub second_digest: Digest,
}

/// The OCI `index.json`: every name of [`index_names`], with containerd's
/// full-name annotation and, for tags, the OCI ref name (the tag, as
/// containerd writes it).
fn oci_index(images: &[ImageRecord]) -> Result<serde_json::Value, Box<NameCollision>> {
    let manifests: Vec<serde_json::Value> = index_names(images)?
        .into_iter()
        .map(|(name, manifest)| {
            let mut annotations = BTreeMap::new();
            annotations.insert(CONTAINERD_NAME.to_string(), name.to_string());
            if let Some(tag) = name.tag() {
                annotations.insert(OCI_REF_NAME.to_string(), tag.as_str().to_string());
            }
            let mut d = manifest.clone();
            d.annotations = Some(annotations);
            d.platform = None;
            serde_json::to_value(d).expect("descriptor serialises")
        })
        .collect();
    Ok(json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    }))
}

/// Docker's `manifest.json`: one entry per name that has a default-platform
/// image, `RepoTags` fully qualified.
fn docker_manifest(images: &[ImageRecord]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = images
        .iter()
        .filter_map(|image| {
            let docker = image.docker.as_ref()?;
            let tags: Vec<String> = image
                .name
                .tag()
                .map(|t| format!("{}/{}:{t}", image.name.host(), image.name.repository()))
                .into_iter()
                .collect();
            Some(json!({
                "Config": blob_path(&docker.config),
                "RepoTags": tags,
                "Layers": docker.layers.iter().map(blob_path).collect::<Vec<_>>(),
            }))
        })
        .collect();
    serde_json::Value::Array(entries)
}
