//! Reading a bundle: one streaming pass hashes every entry and checks the
//! bundle against its checksum manifest (or, for a foreign archive, every
//! blob against its name) before any image is handed out. Afterwards blobs
//! are read by offset from the tar (a compressed bundle is decompressed into
//! a spool file during that same pass), so they can be served in parallel.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use wharf_oci::{media_type, Algorithm, Descriptor, Digest, ParsedManifest, Reference};

use crate::error::{BundleError, Result};
use crate::format::{
    digest_of_path, Checksums, Marker, CHECKSUM_FILE, CONTAINERD_NAME, DOCKER_MANIFEST_FILE,
    FORMAT_NAME, FORMAT_VERSION, INDEX_FILE, MARKER_FILE, OCI_REF_NAME,
};

/// Largest manifest, index or checksum manifest read into memory.
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What kind of archive a bundle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Written by `wharf save`, with this format version.
    Wharf(u32),
    /// An OCI image layout (`skopeo copy … oci-archive:`, `podman save --format oci-archive`).
    OciArchive,
    /// Docker's `manifest.json` (`docker save`, `podman save`, `skopeo copy … docker-archive:`).
    DockerArchive,
}

impl Format {
    pub fn describe(&self) -> String {
        match self {
            Format::Wharf(v) => format!("wharf bundle v{v}"),
            Format::OciArchive => "OCI archive".into(),
            Format::DockerArchive => "docker archive".into(),
        }
    }
}

/// One name the bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleImage {
    pub name: Reference,
    pub manifest: Descriptor,
}

/// One image an archive lists, named or not: an `index.json` entry, or an
/// image of Docker's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// What it is listed as, as written: the `ref.name` and containerd name
    /// annotations, or Docker's `RepoTags`.
    pub names: Vec<String>,
    pub manifest: Descriptor,
}

/// Where an entry's bytes are in the (plain) tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub offset: u64,
    pub size: u64,
}

/// A verified bundle: its images and where each blob is.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    format: Format,
    images: Vec<BundleImage>,
    /// Every image listed, with or without a usable name.
    entries: Vec<ArchiveEntry>,
    notes: Vec<String>,
    /// The tar that offsets refer to: the bundle itself, or its spool copy.
    tar: File,
    tar_path: PathBuf,
    _spool: Option<tempfile::NamedTempFile>,
    blobs: HashMap<Digest, Location>,
    /// Manifests made up for a docker archive (it has none of its own).
    synthetic: HashMap<Digest, Bytes>,
    /// Media type of every manifest in the bundle.
    manifest_types: HashMap<Digest, String>,
    omitted: HashSet<Digest>,
    base: Option<String>,
    content_bytes: u64,
}

/// One file of the tar, as the verification pass saw it.
#[derive(Debug, Clone)]
struct Entry {
    location: Location,
    sha256: String,
    /// For `blobs/<alg>/<hex>` with another algorithm than sha256.
    other_digest: Option<Digest>,
    magic: [u8; 4],
}

#[derive(Default)]
struct Scan {
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    symlinks: HashMap<String, String>,
    marker: Option<Marker>,
    checksums: Option<Checksums>,
}

impl Bundle {
    /// Read and verify the bundle at `path`. A compressed bundle is
    /// decompressed into a temp file in `spool_dir` (the system's temp
    /// directory when `None`). Nothing of the bundle is trusted until this
    /// returns.
    pub fn open(path: &Path, spool_dir: Option<&Path>) -> Result<Bundle> {
        let file =
            File::open(path).map_err(|e| BundleError::io(path, "cannot open the bundle", e))?;
        let mut magic = [0u8; 4];
        let n = file
            .read_at(&mut magic, 0)
            .map_err(|e| BundleError::io(path, "cannot read the bundle", e))?;
        let compressed = n == 4 && magic == ZSTD_MAGIC;
        if n >= 2 && magic[..2] == GZIP_MAGIC {
            return Err(BundleError::NotAnArchive {
                path: path.into(),
                detail: "gzip-compressed; decompress it first (gunzip)".into(),
            });
        }
        let (scan, tar, tar_path, spool) = if compressed {
            let mut spool = match spool_dir {
                Some(dir) => tempfile::NamedTempFile::new_in(dir),
                None => tempfile::NamedTempFile::new(),
            }
            .map_err(|e| {
                BundleError::io(path, "cannot create a spool file to decompress into", e)
            })?;
            let decoder = zstd::stream::read::Decoder::new(file)
                .map_err(|e| BundleError::io(path, "cannot start zstd", e))?;
            let scan = {
                let tee = Tee {
                    inner: decoder,
                    copy: spool.as_file_mut(),
                };
                scan(path, tee)?
            };
            let tar = spool
                .reopen()
                .map_err(|e| BundleError::io(path, "cannot reopen the spool file", e))?;
            let tar_path = spool.path().to_path_buf();
            (scan, tar, tar_path, Some(spool))
        } else {
            (scan_file(path, &file)?, file, path.to_path_buf(), None)
        };
        let mut bundle = Bundle {
            path: path.to_path_buf(),
            format: Format::OciArchive,
            images: Vec::new(),
            entries: Vec::new(),
            notes: Vec::new(),
            tar,
            tar_path,
            _spool: spool,
            blobs: HashMap::new(),
            synthetic: HashMap::new(),
            manifest_types: HashMap::new(),
            omitted: HashSet::new(),
            base: None,
            content_bytes: 0,
        };
        bundle.check(&scan)?;
        bundle.index(&scan)?;
        Ok(bundle)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    pub fn images(&self) -> &[BundleImage] {
        &self.images
    }

    /// Every image the archive lists, those without a usable name too.
    pub fn entries(&self) -> &[ArchiveEntry] {
        &self.entries
    }

    /// Images listed without a name they can be loaded under.
    pub fn unnamed(&self) -> Vec<&ArchiveEntry> {
        self.entries
            .iter()
            .filter(|e| {
                !self
                    .images
                    .iter()
                    .any(|i| i.manifest.digest == e.manifest.digest)
            })
            .collect()
    }

    /// Load the archive's one image under `name` (`wharf load --name`),
    /// whatever it was called. Refused when the archive holds more than one
    /// image, since the name would not say which.
    pub fn rename_single(&mut self, name: Reference) -> Result<()> {
        let mut seen = HashSet::new();
        let manifests: Vec<&Descriptor> = self
            .entries
            .iter()
            .map(|e| &e.manifest)
            .filter(|m| seen.insert(m.digest.clone()))
            .collect();
        let [manifest] = manifests[..] else {
            return Err(BundleError::Invalid(format!(
                "{}: holds {} images; a name given for the archive applies to an archive of one image",
                self.path.display(),
                manifests.len()
            )));
        };
        self.images = vec![BundleImage {
            name,
            manifest: manifest.clone(),
        }];
        // Every note is about a name the archive lacked.
        self.notes.clear();
        Ok(())
    }

    /// What the reader had to say (images without a usable name, …).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The uncompressed tar (the bundle itself or its spool copy), for
    /// tools that import a tar (`ctr images import`).
    pub fn tar_path(&self) -> &Path {
        &self.tar_path
    }

    /// The base a delta bundle was made against.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// Bytes of blob content in the bundle.
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    pub fn blob(&self, digest: &Digest) -> Option<Location> {
        self.blobs.get(digest).copied()
    }

    /// Left to the base bundle (a delta).
    pub fn is_omitted(&self, digest: &Digest) -> bool {
        self.omitted.contains(digest)
    }

    /// Every blob digest this bundle holds or leaves to its base: what a
    /// delta against it can leave out.
    pub fn known_blobs(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.keys().chain(self.omitted.iter())
    }

    /// The media type of a manifest in the bundle.
    pub fn manifest_type(&self, digest: &Digest) -> Option<&str> {
        self.manifest_types.get(digest).map(String::as_str)
    }

    /// A manifest's bytes, when `digest` is one this bundle holds.
    pub fn manifest(&self, digest: &Digest) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.synthetic.get(digest) {
            return Ok(Some(bytes.clone()));
        }
        if !self.manifest_types.contains_key(digest) {
            return Ok(None);
        }
        let location = self
            .blobs
            .get(digest)
            .copied()
            .ok_or_else(|| self.missing(digest, "a manifest"))?;
        self.read(location).map(Some)
    }

    /// Read `size` bytes at `offset` of the tar (a blob, or part of one).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.tar.read_exact_at(buf, offset)
    }

    /// A blob that must be small (a manifest or config), whole.
    pub fn read(&self, location: Location) -> Result<Bytes> {
        if location.size > MAX_DOCUMENT_BYTES {
            return Err(BundleError::Invalid(format!(
                "{}: a document of {} bytes is larger than the {} MiB allowed",
                self.path.display(),
                location.size,
                MAX_DOCUMENT_BYTES >> 20
            )));
        }
        let mut buf = vec![0u8; location.size as usize];
        self.read_at(&mut buf, location.offset)
            .map_err(|e| BundleError::io(&self.path, "cannot read the bundle", e))?;
        Ok(Bytes::from(buf))
    }

    fn missing(&self, digest: &Digest, what: &str) -> BundleError {
        BundleError::MissingBlob {
            path: self.path.clone(),
            digest: digest.clone(),
            detail: format!("{what} the images need is not in the archive"),
        }
    }

    /// Compare what the pass saw with what the bundle says it holds.
    fn check(&mut self, scan: &Scan) -> Result<()> {
        match (&scan.marker, &scan.checksums) {
            (Some(marker), Some(checksums)) => {
                self.format = Format::Wharf(marker.version);
                self.check_checksums(scan, checksums)
            }
            (Some(_), None) => Err(BundleError::Truncated {
                path: self.path.clone(),
                detail: format!("it ends before its checksum manifest ({CHECKSUM_FILE})"),
            }),
            (None, Some(_)) => Err(self.corrupt(format!(
                "it has a checksum manifest but no {MARKER_FILE} marker"
            ))),
            (None, None) => self.check_blob_names(scan),
        }
    }

    fn corrupt(&self, detail: String) -> BundleError {
        BundleError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    fn check_checksums(&mut self, scan: &Scan, checksums: &Checksums) -> Result<()> {
        if scan.order.last().map(String::as_str) != Some(CHECKSUM_FILE) {
            return Err(self.corrupt(format!(
                "entries follow {CHECKSUM_FILE}, which must be last"
            )));
        }
        let mut listed = HashSet::new();
        for file in &checksums.files {
            listed.insert(file.path.as_str());
            let Some(entry) = scan.entries.get(&file.path) else {
                if let Some(digest) = digest_of_path(&file.path) {
                    return Err(BundleError::MissingBlob {
                        path: self.path.clone(),
                        digest,
                        detail: "the checksum manifest lists it, the archive does not have it"
                            .into(),
                    });
                }
                return Err(self.corrupt(format!("{} is listed but absent", file.path)));
            };
            if entry.location.size != file.size {
                return Err(self.corrupt(format!(
                    "{} has {} bytes, the checksum manifest says {}",
                    file.path, entry.location.size, file.size
                )));
            }
            if entry.sha256 != file.sha256 {
                return Err(self.corrupt(format!(
                    "{} does not match its checksum (sha256 {}, expected {})",
                    file.path, entry.sha256, file.sha256
                )));
            }
        }
        for path in &scan.order {
            if path != MARKER_FILE && path != CHECKSUM_FILE && !listed.contains(path.as_str()) {
                return Err(self.corrupt(format!("{path} is not in the checksum manifest")));
            }
        }
        self.check_blob_names(scan)?;
        self.omitted = checksums.omitted.iter().map(|o| o.digest.clone()).collect();
        self.base = checksums.base.clone();
        Ok(())
    }

    /// Every `blobs/<alg>/<hex>` must hash to its name.
    fn check_blob_names(&mut self, scan: &Scan) -> Result<()> {
        for path in &scan.order {
            let Some(digest) = digest_of_path(path) else {
                continue;
            };
            let entry = &scan.entries[path];
            let actual = match &entry.other_digest {
                Some(d) => d.clone(),
                None => Digest::new(Algorithm::Sha256, &entry.sha256).expect("hex of a sha256"),
            };
            if actual != digest {
                return Err(self.corrupt(format!("{path} hashes to {actual}")));
            }
            self.content_bytes += entry.location.size;
            self.blobs.insert(digest, entry.location);
        }
        Ok(())
    }

    /// Find the images: `index.json` when there is one, else Docker's
    /// `manifest.json`; then check every blob they need is there.
    fn index(&mut self, scan: &Scan) -> Result<()> {
        if let Some(entry) = scan.entries.get(INDEX_FILE) {
            if !matches!(self.format, Format::Wharf(_)) {
                self.format = Format::OciArchive;
            }
            let bytes = self.read(entry.location)?;
            self.read_oci_index(&bytes)?;
        } else if let Some(entry) = scan.entries.get(DOCKER_MANIFEST_FILE) {
            self.format = Format::DockerArchive;
            let bytes = self.read(entry.location)?;
            self.read_docker_manifest(scan, &bytes)?;
        } else {
            return Err(BundleError::NotAnArchive {
                path: self.path.clone(),
                detail: format!("it has neither {INDEX_FILE} nor {DOCKER_MANIFEST_FILE}"),
            });
        }
        // Each image once: a wharf bundle lists every image twice.
        let mut listed = HashSet::new();
        let tops: Vec<Descriptor> = self
            .entries
            .iter()
            .filter(|e| listed.insert(e.manifest.digest.clone()))
            .map(|e| e.manifest.clone())
            .collect();
        for top in tops {
            self.walk(&top)?;
        }
        Ok(())
    }

    fn read_oci_index(&mut self, bytes: &[u8]) -> Result<()> {
        let index = ParsedManifest::parse(bytes, Some(media_type::OCI_INDEX))
            .map_err(|e| self.corrupt(format!("{INDEX_FILE}: {e}")))?;
        for descriptor in index.manifests {
            self.entries.push(ArchiveEntry {
                names: entry_names(&descriptor),
                manifest: descriptor.clone(),
            });
            match image_name(&descriptor) {
                Ok(name) => self.images.push(BundleImage {
                    name,
                    manifest: descriptor,
                }),
                Err(why) => self.notes.push(format!("{}: {why}", descriptor.digest)),
            }
        }
        self.drop_digest_aliases();
        Ok(())
    }

    /// A wharf bundle lists each tagged image a second time as
    /// `host/repo@digest`, the record containerd's CRI looks a digest pin up
    /// by. That entry is the same image, not one more to load.
    fn drop_digest_aliases(&mut self) {
        let tagged: HashSet<(String, String, Digest)> = self
            .images
            .iter()
            .filter(|i| i.name.tag().is_some())
            .map(|i| alias_key(&i.name, &i.manifest.digest))
            .collect();
        self.images.retain(|i| {
            let alias = i.name.tag().is_none() && i.name.digest() == Some(&i.manifest.digest);
            !(alias && tagged.contains(&alias_key(&i.name, &i.manifest.digest)))
        });
    }

    fn read_docker_manifest(&mut self, scan: &Scan, bytes: &[u8]) -> Result<()> {
        let entries: Vec<DockerEntry> = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("{DOCKER_MANIFEST_FILE}: {e}")))?;
        for (n, entry) in entries.iter().enumerate() {
            let descriptor = self.synthesize(scan, entry)?;
            self.entries.push(ArchiveEntry {
                names: entry.repo_tags.clone(),
                manifest: descriptor.clone(),
            });
            if entry.repo_tags.is_empty() {
                self.notes.push(format!(
                    "image {} of {DOCKER_MANIFEST_FILE} has no RepoTags; it is not loaded",
                    n + 1
                ));
            }
            for tag in &entry.repo_tags {
                match Reference::parse_normalized(tag) {
                    Ok((name, _)) => self.images.push(BundleImage {
                        name,
                        manifest: descriptor.clone(),
                    }),
                    Err(e) => self.notes.push(format!("{tag}: not an image name: {e}")),
                }
            }
        }
        Ok(())
    }

    /// An OCI manifest for an image of a docker archive: the config and
    /// layer files as they are, addressed by their sha256.
    fn synthesize(&mut self, scan: &Scan, entry: &DockerEntry) -> Result<Descriptor> {
        let config = self.docker_blob(scan, &entry.config, media_type::OCI_CONFIG)?;
        let layers = entry
            .layers
            .iter()
            .map(|path| {
                let magic = self
                    .resolve(scan, path)
                    .map(|e| e.magic)
                    .unwrap_or_default();
                self.docker_blob(scan, path, layer_type(&magic))
            })
            .collect::<Result<Vec<_>>>()?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serialises"));
        let digest = Digest::sha256_of(&bytes);
        let descriptor =
            Descriptor::new(media_type::OCI_MANIFEST, digest.clone(), bytes.len() as u64);
        self.manifest_types
            .insert(digest.clone(), media_type::OCI_MANIFEST.to_string());
        self.synthetic.insert(digest, bytes);
        Ok(descriptor)
    }

    fn resolve<'a>(&self, scan: &'a Scan, path: &str) -> Option<&'a Entry> {
        let mut path = normalize(path);
        for _ in 0..8 {
            if let Some(entry) = scan.entries.get(&path) {
                return Some(entry);
            }
            let target = scan.symlinks.get(&path)?;
            path = join_relative(&path, target);
        }
        None
    }

    fn docker_blob(&mut self, scan: &Scan, path: &str, media: &str) -> Result<Descriptor> {
        let entry = self.resolve(scan, path).ok_or_else(|| {
            self.corrupt(format!(
                "{DOCKER_MANIFEST_FILE} names {path}, which is not in the archive"
            ))
        })?;
        let digest = Digest::new(Algorithm::Sha256, &entry.sha256).expect("hex of a sha256");
        if !self.blobs.contains_key(&digest) {
            self.content_bytes += entry.location.size;
            self.blobs.insert(digest.clone(), entry.location);
        }
        Ok(Descriptor::new(media, digest, entry.location.size))
    }

    /// Every manifest under `top` is present and parses; every blob it
    /// needs is present or left to the base.
    fn walk(&mut self, top: &Descriptor) -> Result<()> {
        let mut stack = vec![top.clone()];
        let mut seen = HashSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            self.manifest_types
                .insert(d.digest.clone(), d.media_type.clone());
            let bytes = match self.manifest(&d.digest)? {
                Some(b) => b,
                None => return Err(self.missing(&d.digest, "a manifest")),
            };
            let parsed = ParsedManifest::parse(&bytes, Some(&d.media_type))
                .map_err(|e| self.corrupt(format!("manifest {}: {e}", d.digest)))?;
            stack.extend(parsed.manifests.iter().cloned());
            for blob in parsed.config.iter().chain(parsed.layers.iter()) {
                if !self.blobs.contains_key(&blob.digest) && !self.omitted.contains(&blob.digest) {
                    return Err(self.missing(&blob.digest, "a blob"));
                }
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn layer_type(magic: &[u8; 4]) -> &'static str {
    if magic[..2] == GZIP_MAGIC {
        media_type::OCI_LAYER_GZIP
    } else if *magic == ZSTD_MAGIC {
        media_type::OCI_LAYER_ZSTD
    } else {
        media_type::OCI_LAYER_TAR
    }
}

/// The names an index entry carries: the OCI ref name, then containerd's.
pub(crate) fn entry_names(d: &Descriptor) -> Vec<String> {
    let annotations = d.annotations.clone().unwrap_or_default();
    [OCI_REF_NAME, CONTAINERD_NAME]
        .iter()
        .filter_map(|key| annotations.get(*key).cloned())
        .collect()
}

/// The full name of an index entry: containerd's annotation, else an OCI
/// ref name that is a whole reference (a bare tag names no repository).
pub(crate) fn image_name(d: &Descriptor) -> std::result::Result<Reference, String> {
    let annotations = d.annotations.clone().unwrap_or_default();
    if let Some(name) = annotations.get(CONTAINERD_NAME) {
        return Reference::parse_normalized(name)
            .map(|(r, _)| r)
            .map_err(|e| format!("{CONTAINERD_NAME} {name:?} is not an image name: {e}"));
    }
    match annotations.get(OCI_REF_NAME) {
        Some(name) if name.contains('/') || name.contains(':') => Reference::parse_normalized(name)
            .map(|(r, _)| r)
            .map_err(|e| format!("{OCI_REF_NAME} {name:?} is not an image name: {e}")),
        Some(tag) => Err(format!(
            "named only {tag:?}, which names no repository; write the archive with a full name (oci-archive:FILE:host/repo:tag)"
        )),
        None => Err("the index entry has no name; it is not loaded".into()),
    }
}

fn alias_key(name: &Reference, digest: &Digest) -> (String, String, Digest) {
    (
        name.host().to_string(),
        name.repository().to_string(),
        digest.clone(),
    )
}

fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// `target` of a symlink at `link`, as a path from the archive's root.
fn join_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Copies everything read from `inner` into `copy`.
struct Tee<'a, R> {
    inner: R,
    copy: &'a mut File,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The verification pass over a stream (a compressed bundle): every entry
/// read and hashed once, in order.
fn scan(path: &Path, reader: impl Read) -> Result<Scan> {
    let mut archive = tar::Archive::new(reader);
    let mut scan = Scan::default();
    let entries = archive.entries().map_err(|e| read_error(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(path, e))?;
        let Some(name) = regular_file_name(path, &mut scan, &entry)? else {
            continue;
        };
        let offset = entry.raw_file_position();
        let size = entry.size();
        let record = hash_entry(path, &name, &mut entry, offset, size)?;
        if name == MARKER_FILE && scan.order.is_empty() {
            scan.marker = Some(read_marker(path, &record.1)?);
        } else if name == CHECKSUM_FILE {
            scan.checksums = Some(parse_checksums(path, &record.1)?);
        }
        scan.order.push(name.clone());
        scan.entries.insert(name, record.0);
    }
    Ok(scan)
}

/// One file entry found by the header walk of [`scan_file`], not yet hashed.
struct Pending {
    name: String,
    location: Location,
}

/// The verification pass over a plain tar on disk. Unlike a stream, a file
/// can be read at any offset: one walk over the headers (seeking past the
/// data) finds every entry, then the entries are hashed on every core at
/// once. Hashing is what the pass spends its time on, and a bundle has many
/// blobs, so this divides its wall time by the number of cores.
fn scan_file(path: &Path, file: &File) -> Result<Scan> {
    let (mut scan, pending) = walk_headers(path, file)?;
    let hashed = hash_in_parallel(path, file, &pending);
    for (item, result) in pending.into_iter().zip(hashed) {
        let (entry, _) = result?;
        scan.order.push(item.name.clone());
        scan.entries.insert(item.name, entry);
    }
    Ok(scan)
}

/// Every entry's name, place and size, reading only headers (and the two
/// small wharf documents, so a newer format is refused before any hashing).
fn walk_headers(path: &Path, file: &File) -> Result<(Scan, Vec<Pending>)> {
    let length = file
        .metadata()
        .map_err(|e| BundleError::io(path, "cannot read the bundle", e))?
        .len();
    let mut archive = tar::Archive::new(file);
    let mut scan = Scan::default();
    let mut pending: Vec<Pending> = Vec::new();
    let entries = archive
        .entries_with_seek()
        .map_err(|e| read_error(path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(path, e))?;
        let Some(name) = regular_file_name(path, &mut scan, &entry)? else {
            continue;
        };
        let location = Location {
            offset: entry.raw_file_position(),
            size: entry.size(),
        };
        // Seeking past the end of a truncated file is no error; the tar
        // would just seem to end early. Say what is cut off instead.
        let present = length.saturating_sub(location.offset).min(location.size);
        if present < location.size {
            return Err(BundleError::Truncated {
                path: path.into(),
                detail: format!("{name} ends after {present} of its {} bytes", location.size),
            });
        }
        let first = pending.is_empty();
        if (name == MARKER_FILE && first) || name == CHECKSUM_FILE {
            let bytes = read_document(path, &mut entry, &name)?;
            if name == MARKER_FILE {
                scan.marker = Some(read_marker(path, &bytes)?);
            } else {
                scan.checksums = Some(parse_checksums(path, &bytes)?);
            }
        }
        pending.push(Pending { name, location });
    }
    Ok((scan, pending))
}

/// A small document of the bundle, whole (its hash is taken again with the
/// other entries).
fn read_document(path: &Path, entry: &mut impl Read, name: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, e))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(BundleError::Corrupt {
            path: path.into(),
            detail: format!("{name} is larger than {} MiB", MAX_DOCUMENT_BYTES >> 20),
        });
    }
    Ok(bytes)
}

/// Hash every pending entry, as many at once as there are cores (at most
/// four: beyond that the page cache or disk is the limit). Results come
/// back in entry order.
fn hash_in_parallel(path: &Path, file: &File, pending: &[Pending]) -> Vec<Result<Hashed>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(pending.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut slots: Vec<Option<Result<Hashed>>> = Vec::new();
    slots.resize_with(pending.len(), || None);
    let slots = std::sync::Mutex::new(slots);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = pending.get(i) else { break };
                let mut reader = ReadAt::new(file, item.location);
                let result = hash_entry(
                    path,
                    &item.name,
                    &mut reader,
                    item.location.offset,
                    item.location.size,
                );
                slots.lock().expect("slots lock")[i] = Some(result);
            });
        }
    });
    slots
        .into_inner()
        .expect("slots lock")
        .into_iter()
        .map(|slot| slot.expect("every entry was hashed"))
        .collect()
}

/// Reads one entry's bytes by offset, so that several threads can read the
/// same file at once.
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl<'a> ReadAt<'a> {
    fn new(file: &'a File, location: Location) -> Self {
        ReadAt {
            file,
            at: location.offset,
            end: location.offset + location.size,
        }
    }
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.at).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

fn entry_name(path: &Path, entry: &tar::Entry<'_, impl Read>) -> Result<String> {
    Ok(normalize(
        &entry
            .path()
            .map_err(|e| read_error(path, e))?
            .to_string_lossy(),
    ))
}

/// Keep a symlink or hard link, for docker archives that point at layers.
/// The name of a regular file entry; links are recorded in `scan` and
/// every other kind is skipped (`None`), in both verification passes.
fn regular_file_name(
    path: &Path,
    scan: &mut Scan,
    entry: &tar::Entry<'_, impl Read>,
) -> Result<Option<String>> {
    let name = entry_name(path, entry)?;
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        record_link(scan, name, entry, kind.is_hard_link());
        return Ok(None);
    }
    Ok(kind.is_file().then_some(name))
}

fn record_link(scan: &mut Scan, name: String, entry: &tar::Entry<'_, impl Read>, hard: bool) {
    if let Ok(Some(target)) = entry.link_name() {
        let target = target.to_string_lossy().to_string();
        let target = if hard { format!("/{target}") } else { target };
        scan.symlinks.insert(name, target);
    }
}

fn parse_checksums(path: &Path, bytes: &[u8]) -> Result<Checksums> {
    serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt {
        path: path.into(),
        detail: format!("{CHECKSUM_FILE} does not parse: {e}"),
    })
}

/// Refuse a newer format as soon as its first entry says so.
fn read_marker(path: &Path, bytes: &[u8]) -> Result<Marker> {
    let marker: Marker = serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt {
        path: path.into(),
        detail: format!("{MARKER_FILE} does not parse: {e}"),
    })?;
    if marker.format != FORMAT_NAME {
        return Err(BundleError::NotAnArchive {
            path: path.into(),
            detail: format!("its marker names format {:?}", marker.format),
        });
    }
    if marker.version > FORMAT_VERSION {
        return Err(BundleError::NewerFormat {
            path: path.into(),
            found: marker.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(marker)
}

/// An entry as hashed, and its bytes when it is one of the small wharf
/// documents.
type Hashed = (Entry, Vec<u8>);

/// Hash one entry; small metadata files are also kept (returned second).
fn hash_entry(
    path: &Path,
    name: &str,
    entry: &mut impl Read,
    offset: u64,
    size: u64,
) -> Result<Hashed> {
    let keep = (name == MARKER_FILE || name == CHECKSUM_FILE) && size <= MAX_DOCUMENT_BYTES;
    let other = digest_of_path(name)
        .map(|d| d.algorithm())
        .filter(|a| *a != Algorithm::Sha256)
        .map(|a| a.hasher());
    let mut other = other;
    let mut sha = Sha256::new();
    let mut kept = Vec::new();
    let mut magic = [0u8; 4];
    let mut buf = vec![0u8; 1 << 20];
    let mut count: u64 = 0;
    loop {
        let n = entry.read(&mut buf).map_err(|e| read_error(path, e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if count < 4 {
            let start = count as usize;
            let take = (4 - start).min(n);
            magic[start..start + take].copy_from_slice(&chunk[..take]);
        }
        sha.update(chunk);
        if let Some(h) = other.as_mut() {
            h.update(chunk);
        }
        if keep {
            kept.extend_from_slice(chunk);
        }
        count += n as u64;
    }
    if count != size {
        return Err(BundleError::Truncated {
            path: path.into(),
            detail: format!("{name} ends after {count} of its {size} bytes"),
        });
    }
    Ok((
        Entry {
            location: Location { offset, size },
            sha256: hex::encode(sha.finalize()),
            other_digest: other.map(|h| h.finish()),
            magic,
        },
        kept,
    ))
}

fn read_error(path: &Path, e: io::Error) -> BundleError {
    let text = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("unexpected EOF")
        || text.contains("incomplete frame")
    {
        BundleError::Truncated {
            path: path.into(),
            detail: text,
        }
    } else if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::Other {
        BundleError::Corrupt {
            path: path.into(),
            detail: text,
        }
    } else {
        BundleError::io(path, "cannot read the bundle", e)
    }
}

/// Blob digests a bundle holds or leaves to its base, from entry names and
/// the checksum manifest only (no hashing: this is what `--since` needs).
pub(crate) fn list_blobs(path: &Path) -> Result<HashSet<Digest>> {
    let file =
        File::open(path).map_err(|e| BundleError::io(path, "cannot open the base bundle", e))?;
    let mut magic = [0u8; 4];
    let n = file
        .read_at(&mut magic, 0)
        .map_err(|e| BundleError::io(path, "cannot read the base bundle", e))?;
    let mut found = HashSet::new();
    if n == 4 && magic == ZSTD_MAGIC {
        let decoder = zstd::stream::read::Decoder::new(file)
            .map_err(|e| BundleError::io(path, "cannot start zstd", e))?;
        let mut archive = tar::Archive::new(decoder);
        let entries = archive.entries().map_err(|e| read_error(path, e))?;
        for entry in entries {
            list_entry(path, entry.map_err(|e| read_error(path, e))?, &mut found)?;
        }
    } else {
        let mut archive = tar::Archive::new(file);
        let entries = archive
            .entries_with_seek()
            .map_err(|e| read_error(path, e))?;
        for entry in entries {
            list_entry(path, entry.map_err(|e| read_error(path, e))?, &mut found)?;
        }
    }
    Ok(found)
}

fn list_entry(
    path: &Path,
    mut entry: tar::Entry<'_, impl Read>,
    found: &mut HashSet<Digest>,
) -> Result<()> {
    let name = normalize(
        &entry
            .path()
            .map_err(|e| read_error(path, e))?
            .to_string_lossy(),
    );
    if let Some(d) = digest_of_path(&name) {
        found.insert(d);
    } else if name == CHECKSUM_FILE && entry.size() <= MAX_DOCUMENT_BYTES {
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(path, e))?;
        let checksums: Checksums =
            serde_json::from_slice(&bytes).map_err(|e| BundleError::Corrupt {
                path: path.into(),
                detail: format!("{CHECKSUM_FILE} does not parse: {e}"),
            })?;
        found.extend(checksums.omitted.into_iter().map(|o| o.digest));
    }
    Ok(())
}
