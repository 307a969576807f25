//! An OCI image layout directory (`skopeo copy … oci:DIR`) as a
//! [`wharf_transfer::Source`]. Unlike a bundle, a directory is not hashed
//! in full up front: the image's manifests are read and checked against
//! their digests when it is opened, and every blob is hashed as it streams,
//! its last chunk held back until the digest matched.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream;
use futures_util::StreamExt;
use wharf_client::Manifest;
use wharf_oci::{
    media_type, Descriptor, Digest, ParsedManifest, Reference, RepositoryName, Target,
};
use wharf_transfer::{Source, SourceBlob, TransferError};

use crate::error::{BundleError, Result};
use crate::format::{blob_path, INDEX_FILE, OCI_LAYOUT, OCI_LAYOUT_FILE, OCI_REF_NAME};
use crate::reader::{entry_names, ArchiveEntry};

/// Largest manifest or index read into memory.
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes read from a blob file at a time.
const CHUNK: usize = 1 << 20;
/// Chunks read ahead of the upload.
const READ_AHEAD: usize = 2;

/// An OCI layout directory and the images its `index.json` lists.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    entries: Vec<ArchiveEntry>,
}

impl Layout {
    /// Read `dir/oci-layout` and `dir/index.json`.
    pub fn open(dir: &Path) -> Result<Layout> {
        std::fs::read_dir(dir)
            .map_err(|e| BundleError::io(dir, "cannot read the layout directory", e))?;
        if !dir.join(OCI_LAYOUT_FILE).is_file() {
            return Err(BundleError::Invalid(format!(
                "{}: not an OCI image layout: it has no {OCI_LAYOUT_FILE} file",
                dir.display()
            )));
        }
        let index = read_document(dir, &dir.join(INDEX_FILE))?;
        let parsed = ParsedManifest::parse(&index, Some(media_type::OCI_INDEX)).map_err(|e| {
            BundleError::Corrupt {
                path: dir.into(),
                detail: format!("{INDEX_FILE}: {e}"),
            }
        })?;
        let entries = parsed
            .manifests
            .into_iter()
            .map(|manifest| ArchiveEntry {
                names: entry_names(&manifest),
                manifest,
            })
            .collect();
        Ok(Layout {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn entries(&self) -> &[ArchiveEntry] {
        &self.entries
    }

    /// A source for the image `top` (an entry of this layout): its
    /// manifests read and verified now, blobs when they are copied.
    pub fn source(&self, top: &Descriptor) -> Result<LayoutSource> {
        let mut manifests = HashMap::new();
        let mut stack = vec![top.clone()];
        while let Some(d) = stack.pop() {
            if manifests.contains_key(&d.digest) {
                continue;
            }
            let bytes = Bytes::from(read_document(&self.dir, &self.blob_file(&d.digest))?);
            if Digest::of(d.digest.algorithm(), &bytes) != d.digest {
                return Err(
                    self.corrupt(format!("manifest {} does not match its digest", d.digest))
                );
            }
            let parsed = ParsedManifest::parse(&bytes, Some(&d.media_type))
                .map_err(|e| self.corrupt(format!("manifest {}: {e}", d.digest)))?;
            stack.extend(parsed.manifests.iter().cloned());
            for blob in parsed.config.iter().chain(parsed.layers.iter()) {
                self.check_blob(blob)?;
            }
            let manifest = Manifest {
                bytes,
                media_type: d.media_type.clone(),
                digest: d.digest.clone(),
            };
            manifests.insert(d.digest.clone(), manifest);
        }
        Ok(LayoutSource {
            dir: self.dir.clone(),
            manifests,
        })
    }

    fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.dir.join(blob_path(digest))
    }

    /// The blob is there with the size its descriptor gives (its content is
    /// checked as it is copied).
    fn check_blob(&self, blob: &Descriptor) -> Result<()> {
        let file = self.blob_file(&blob.digest);
        let missing = |detail: String| BundleError::MissingBlob {
            path: self.dir.clone(),
            digest: blob.digest.clone(),
            detail,
        };
        let meta =
            std::fs::metadata(&file).map_err(|e| missing(format!("{}: {e}", file.display())))?;
        if meta.len() != blob.size {
            return Err(self.corrupt(format!(
                "blob {} has {} bytes, its manifest says {}",
                blob.digest,
                meta.len(),
                blob.size
            )));
        }
        Ok(())
    }

    fn corrupt(&self, detail: String) -> BundleError {
        BundleError::Corrupt {
            path: self.dir.clone(),
            detail,
        }
    }
}

/// One image of an OCI layout directory, ready to copy.
pub struct LayoutSource {
    dir: PathBuf,
    /// Every manifest of the image, verified.
    manifests: HashMap<Digest, Manifest>,
}

impl LayoutSource {
    fn find(&self, reference: &Reference) -> wharf_transfer::Result<&Manifest> {
        let found = match reference.target() {
            Target::Digest(d) => self.manifests.get(&d),
            Target::Tag(_) => None,
        };
        found.ok_or_else(|| {
            TransferError::NotInSource(format!(
                "{}: the layout has no image {reference}",
                self.dir.display()
            ))
        })
    }
}

#[async_trait]
impl Source for LayoutSource {
    async fn resolve(&self, reference: &Reference) -> wharf_transfer::Result<Digest> {
        Ok(self.find(reference)?.digest.clone())
    }

    async fn manifest(&self, reference: &Reference) -> wharf_transfer::Result<Manifest> {
        self.find(reference).cloned()
    }

    async fn open_blob(
        &self,
        _host: &str,
        _repository: &RepositoryName,
        blob: &Descriptor,
    ) -> wharf_transfer::Result<SourceBlob> {
        let path = self.dir.join(blob_path(&blob.digest));
        let file = File::open(&path).map_err(|e| {
            TransferError::Source(format!(
                "blob {}: cannot open {}: {e}",
                blob.digest,
                path.display()
            ))
        })?;
        Ok(verified_stream(file, path, blob.clone()))
    }
}

/// Copy the image `reference` of `source` into the OCI layout at `dir`
/// (created when absent), listed under `ref_name` in `index.json`, where an
/// earlier entry of that name is replaced: blobs and manifests byte for
/// byte, each checked against its digest on the way and renamed into place
/// only when whole; `index.json` last. With `platforms`, an index keeps
/// only theirs (a new index, whose descriptor is returned).
pub async fn write_layout(
    source: &dyn Source,
    reference: &Reference,
    platforms: &[wharf_transfer::PlatformSpec],
    dir: &Path,
    ref_name: Option<&str>,
) -> Result<Descriptor> {
    let failed = |e: TransferError| BundleError::Source(e.to_string());
    let digest = source.resolve(reference).await.map_err(failed)?;
    let pinned = reference.with_digest(digest);
    let tree = wharf_transfer::resolve_tree(source, &pinned, platforms)
        .await
        .map_err(failed)?;
    let io = |what: &str, e| BundleError::io(dir, what.to_string(), e);
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the layout directory", e))?;
    for blob in wharf_transfer::unique_blobs(&tree) {
        if !has_blob(dir, &blob) {
            let stream = source
                .open_blob(reference.host(), reference.repository(), &blob)
                .await
                .map_err(failed)?;
            write_blob(dir, &blob.digest, stream).await?;
        }
    }
    let mut top = None;
    for node in &tree {
        let mut bytes = node.manifest.bytes.clone();
        if node.is_partial() {
            bytes = wharf_transfer::filtered_index(&bytes, &node.kept).map_err(failed)?;
        }
        let digest = Digest::sha256_of(&bytes);
        write_file(dir, &dir.join(blob_path(&digest)), &bytes)?;
        let size = bytes.len() as u64;
        top = Some(Descriptor {
            annotations: ref_name.map(|n| [(OCI_REF_NAME.to_string(), n.to_string())].into()),
            ..Descriptor::new(node.manifest.media_type.clone(), digest, size)
        });
    }
    let top = top.ok_or_else(|| BundleError::Source(format!("{reference}: nothing to copy")))?;
    write_file(dir, &dir.join(OCI_LAYOUT_FILE), OCI_LAYOUT.as_bytes())?;
    write_index(dir, &top, ref_name)?;
    Ok(top)
}

fn has_blob(dir: &Path, blob: &Descriptor) -> bool {
    std::fs::metadata(dir.join(blob_path(&blob.digest))).is_ok_and(|m| m.len() == blob.size)
}

/// A verified blob stream into `blobs/<alg>/<hex>`, through a temp file
/// beside it that is renamed into place only when the stream ended well.
async fn write_blob(dir: &Path, digest: &Digest, mut stream: SourceBlob) -> Result<()> {
    let target = dir.join(blob_path(digest));
    let parent = target.parent().expect("a blob path has a directory");
    let io = |what: &str, e| BundleError::io(dir, format!("{what} {}", target.display()), e);
    std::fs::create_dir_all(parent).map_err(|e| io("cannot create the directory of", e))?;
    let temp = tempfile::NamedTempFile::new_in(parent).map_err(|e| io("cannot write", e))?;
    let (file, temp_path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BundleError::Source(e.to_string()))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
            .await
            .map_err(|e| io("cannot write", e))?;
    }
    file.sync_all().await.map_err(|e| io("cannot write", e))?;
    temp_path
        .persist(&target)
        .map_err(|e| io("cannot write", e.error))?;
    Ok(())
}

/// `bytes` at `path`, atomically (temp file beside it, then rename).
fn write_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| BundleError::io(dir, format!("cannot write {}", path.display()), e);
    let parent = path.parent().expect("a file in the layout has a directory");
    std::fs::create_dir_all(parent).map_err(io)?;
    let mut temp = tempfile::NamedTempFile::new_in(parent).map_err(io)?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// `index.json` with `top` added, replacing an entry listed under the same
/// `ref_name`; every other entry and field kept as it was.
fn write_index(dir: &Path, top: &Descriptor, ref_name: Option<&str>) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    let mut index: serde_json::Value = if path.exists() {
        serde_json::from_slice(&read_document(dir, &path)?).map_err(|e| BundleError::Corrupt {
            path: dir.into(),
            detail: format!("{INDEX_FILE}: {e}"),
        })?
    } else {
        serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
    };
    let entry = serde_json::to_value(top).expect("a descriptor serialises");
    let Some(list) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) else {
        return Err(BundleError::Corrupt {
            path: dir.into(),
            detail: format!("{INDEX_FILE} has no manifests list"),
        });
    };
    list.retain(|d| {
        let listed = d
            .pointer(&format!("/annotations/{}", OCI_REF_NAME.replace('/', "~1")))
            .and_then(|n| n.as_str());
        ref_name.is_none() || listed != ref_name
    });
    list.push(entry);
    let bytes = serde_json::to_vec(&index).expect("JSON serialises");
    write_file(dir, &path, &bytes)
}

/// The file's bytes in chunks, hashed by a blocking task that stays a few
/// chunks ahead; the last chunk is sent only once the whole file matched
/// the descriptor's digest and size, else an error takes its place.
fn verified_stream(mut file: File, path: PathBuf, blob: Descriptor) -> SourceBlob {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let fail = |what: String| {
            Err(TransferError::Source(format!(
                "blob {}: {}: {what}",
                blob.digest,
                path.display()
            )))
        };
        let mut hasher = blob.digest.algorithm().hasher();
        let mut held: Option<Bytes> = None;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = match read_full(&mut file, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ = sender.blocking_send(fail(format!("cannot read it: {e}")));
                    return;
                }
            };
            if n == 0 {
                break;
            }
            buf.truncate(n);
            hasher.update(&buf);
            if let Some(previous) = held.replace(Bytes::from(buf)) {
                if sender.blocking_send(Ok(previous)).is_err() {
                    return;
                }
            }
        }
        let size = hasher.len();
        let last = if size != blob.size {
            fail(format!("{size} bytes, the manifest says {}", blob.size))
        } else if hasher.finish() != blob.digest {
            fail("the file does not match its digest".into())
        } else {
            Ok(held.unwrap_or_default())
        };
        let _ = sender.blocking_send(last);
    });
    stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
    .filter(|chunk| std::future::ready(!matches!(chunk, Ok(c) if c.is_empty())))
    .boxed()
}

/// Fill `buf` unless the file ends first; the number of bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn read_document(dir: &Path, file: &Path) -> Result<Vec<u8>> {
    let io = |e| BundleError::io(dir, format!("cannot read {}", file.display()), e);
    let f = File::open(file).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(BundleError::Invalid(format!(
            "{}: larger than the {} MiB a manifest may have",
            file.display(),
            MAX_DOCUMENT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor_of(bytes: &[u8]) -> Descriptor {
        Descriptor::new(
            media_type::OCI_LAYER_GZIP,
            Digest::sha256_of(bytes),
            bytes.len() as u64,
        )
    }

    async fn collect(stream: SourceBlob) -> Vec<wharf_transfer::Result<Bytes>> {
        stream.collect().await
    }

    #[tokio::test]
    async fn a_blob_streams_whole_when_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("blob");
        std::fs::write(&path, &content).unwrap();
        let chunks = collect(verified_stream(
            File::open(&path).unwrap(),
            path,
            descriptor_of(&content),
        ))
        .await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect();
        assert_eq!(bytes, content);
    }

    #[tokio::test]
    async fn a_changed_blob_never_delivers_its_last_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..(CHUNK + 5)).map(|i| (i % 13) as u8).collect();
        let mut changed = content.clone();
        changed[CHUNK + 2] ^= 1;
        let path = dir.path().join("blob");
        std::fs::write(&path, &changed).unwrap();
        let chunks = collect(verified_stream(
            File::open(&path).unwrap(),
            path,
            descriptor_of(&content),
        ))
        .await;
        assert_eq!(chunks.len(), 2, "the first chunk, then the error");
        assert_eq!(chunks[0].as_ref().unwrap().len(), CHUNK);
        let error = chunks[1].as_ref().unwrap_err().to_string();
        assert!(error.contains("does not match its digest"), "{error}");
        assert!(error.contains("blob"), "{error}");
    }
}
