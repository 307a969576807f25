//! Registry semantics over a [`Backend`]: which repository may serve which
//! blob, uploads with digest verification, manifests, tags and referrers.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wharf_oci::{
    Algorithm, Descriptor, Digest, Hasher, ParsedManifest, RepositoryName, Tag, Target,
};

use crate::backend::{Backend, ByteStream, Durability, UploadReader, WriteObserver};
use crate::error::{StorageError, StorageResult};
use crate::layout;
use crate::FsBackend;

/// Total bytes of manifests kept in memory. Manifests are immutable by
/// digest, so caching them can never serve stale content.
const MANIFEST_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// How often a manifest's use is written down ([`Store::manifest_used`]).
const USE_RECORD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Upload slots kept before idle ones are dropped (about 300 bytes each).
const MAX_UPLOAD_SLOTS: usize = 1024;

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct ManifestPutOptions {
    /// Accept an index whose child manifests are not in the repository, so a
    /// single-platform mirror can keep the upstream index digest.
    pub sparse_indexes: bool,
    /// Extra tags to point at the manifest (`?tag=` on a push by digest).
    pub extra_tags: Vec<Tag>,
    /// Store the manifest before the blobs it refers to: a pull-through
    /// cache fetches those lazily, when a client asks for them.
    pub lazy_references: bool,
}

#[derive(Debug, Clone)]
pub struct ManifestPut {
    pub digest: Digest,
    /// The `subject` the manifest refers to, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone)]
pub struct TagPage {
    pub tags: Vec<String>,
    /// More tags follow the last one returned.
    pub more: bool,
}

/// How much the blob store holds: the `wharf_storage_*` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StorageUsage {
    pub blobs: u64,
    pub bytes: u64,
}

/// The storage-size gauge: set by a full scan ([`Store::refresh_storage_usage`],
/// at start-up and after every collection) and adjusted by this process's
/// own blob commits and deletes in between, so reading it never walks the
/// store. Blobs other processes add or remove show up at the next scan.
#[derive(Default)]
struct UsageGauge {
    blobs: AtomicI64,
    bytes: AtomicI64,
    scanned: AtomicBool,
}

impl UsageGauge {
    fn adjust(&self, blobs: i64, bytes: i64) {
        self.blobs.fetch_add(blobs, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn set(&self, usage: StorageUsage) {
        self.blobs.store(usage.blobs as i64, Ordering::Relaxed);
        self.bytes.store(usage.bytes as i64, Ordering::Relaxed);
        self.scanned.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> Option<StorageUsage> {
        self.scanned.load(Ordering::Relaxed).then(|| StorageUsage {
            blobs: self.blobs.load(Ordering::Relaxed).max(0) as u64,
            bytes: self.bytes.load(Ordering::Relaxed).max(0) as u64,
        })
    }
}

/// Follows a [`Store::put_blob_watched`] upload as it is written.
pub trait UploadWatcher: Send + Sync {
    /// The upload exists and is empty; its bytes can be read from `reader`.
    fn opened(&self, reader: Arc<dyn UploadReader>);
    /// Called from the writing thread with the upload's size after each write.
    fn written(&self) -> WriteObserver;
    /// Every byte is written and hashes to the digest; the commit follows.
    fn verified(&self, size: u64);
}

#[derive(Debug, Clone, Copy)]
pub struct UploadStatus {
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct UploadInfo {
    repository: String,
    algorithm: String,
}

/// The running hash of an upload, valid while `size` matches the stored size.
struct Checkpoint {
    size: u64,
    hasher: Hasher,
}

type Slot = Arc<tokio::sync::Mutex<Option<Checkpoint>>>;

/// A cheap-to-clone handle to registry storage.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// One slot per upload this process has touched: serialises appends to
    /// the same upload and keeps its hash so chunks are hashed only once.
    uploads: Mutex<HashMap<String, Slot>>,
    manifests: ManifestCache,
    /// Makes garbage collection and manifest deletion exact within this
    /// process: a writer holds it shared from the moment it rescues and
    /// checks the blobs it needs until its commit is visible (tags written);
    /// collection holds it exclusively while it dooms, checks and deletes one
    /// object, and a manifest DELETE while it removes one manifest. Other
    /// processes rely on the doomed markers and the settle period, and on
    /// deletions and pushes each looking again after their last write,
    /// instead (see `gc.rs`, `Store::remove_manifest_entries`).
    gc_lock: tokio::sync::RwLock<()>,
    usage: UsageGauge,
}

/// Bounded map of manifest bytes by digest. A std `Mutex` is right here: the
/// critical sections are a hash-map lookup and never await.
struct ManifestCache {
    map: Mutex<(HashMap<Digest, Bytes>, usize)>,
}

impl ManifestCache {
    fn get(&self, d: &Digest) -> Option<Bytes> {
        self.map.lock().expect("cache lock").0.get(d).cloned()
    }

    fn insert(&self, d: Digest, bytes: Bytes) {
        let mut guard = self.map.lock().expect("cache lock");
        let (map, total) = &mut *guard;
        if *total + bytes.len() > MANIFEST_CACHE_BYTES {
            map.clear();
            *total = 0;
        }
        *total += bytes.len();
        if let Some(old) = map.insert(d, bytes) {
            *total -= old.len();
        }
    }

    fn remove(&self, d: &Digest) {
        let mut guard = self.map.lock().expect("cache lock");
        let (map, total) = &mut *guard;
        if let Some(old) = map.remove(d) {
            *total -= old.len();
        }
    }
}

fn manifest_invalid(e: impl std::fmt::Display) -> StorageError {
    StorageError::ManifestInvalid(e.to_string())
}

/// A manifest is served with its media type as `Content-Type`: a pusher
/// choosing `text/html` would have the registry serve a page of its making.
fn refuse_non_manifest_type(media_type: &str) -> StorageResult<()> {
    if wharf_oci::media_type::is_manifest(media_type) {
        return Ok(());
    }
    Err(StorageError::ManifestInvalid(format!(
        "{media_type:?} is not a manifest media type; push an OCI image manifest or index \
         ({}, {}) or a Docker manifest or manifest list ({}, {}), with that type as \
         Content-Type or in the mediaType field",
        wharf_oci::media_type::OCI_MANIFEST,
        wharf_oci::media_type::OCI_INDEX,
        wharf_oci::media_type::DOCKER_MANIFEST,
        wharf_oci::media_type::DOCKER_MANIFEST_LIST,
    )))
}

/// The type to serve a stored manifest with. Manifests stored before pushes
/// were held to manifest types may carry another one: they are served with
/// the type their content shows, never with the pusher's.
fn servable_media_type(
    stored: String,
    bytes: &[u8],
    repo: &RepositoryName,
    digest: &Digest,
) -> StorageResult<String> {
    if wharf_oci::media_type::is_manifest(&stored) {
        return Ok(stored);
    }
    match ParsedManifest::parse(bytes, None) {
        Ok(parsed) if wharf_oci::media_type::is_manifest(&parsed.media_type) => {
            Ok(parsed.media_type)
        }
        _ => Err(StorageError::Corrupt {
            key: layout::revision(repo, digest),
            reason: format!("{stored:?} is not a manifest media type"),
        }),
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>) -> Store {
        Store {
            inner: Arc::new(Inner {
                backend,
                uploads: Mutex::new(HashMap::new()),
                manifests: ManifestCache {
                    map: Mutex::new((HashMap::new(), 0)),
                },
                gc_lock: tokio::sync::RwLock::new(()),
                usage: UsageGauge::default(),
            }),
        }
    }

    /// Open the filesystem backend at `root`.
    pub fn open_fs(root: impl Into<std::path::PathBuf>) -> StorageResult<Store> {
        Ok(Store::new(Arc::new(FsBackend::open(root)?)))
    }

    /// Open the filesystem backend at `root` next to another process using
    /// it (see [`FsBackend::open_shared`]).
    pub fn open_fs_shared(root: impl Into<std::path::PathBuf>) -> StorageResult<Store> {
        Ok(Store::new(Arc::new(FsBackend::open_shared(root)?)))
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    fn backend_ref(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    pub(crate) fn gc_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.inner.gc_lock
    }

    /// Blob count and bytes, as of the last scan plus this process's commits
    /// and deletes since; `None` until the first scan has finished.
    pub fn storage_usage(&self) -> Option<StorageUsage> {
        self.inner.usage.get()
    }

    /// Count every blob and its size (one listing and one size lookup per
    /// blob) and set the gauge to the result.
    pub async fn refresh_storage_usage(&self) -> StorageResult<StorageUsage> {
        let mut usage = StorageUsage { blobs: 0, bytes: 0 };
        for digest in self.backend_ref().blob_list().await? {
            if let Some(size) = self.backend_ref().blob_size(&digest).await? {
                usage.blobs += 1;
                usage.bytes += size;
            }
        }
        self.inner.usage.set(usage);
        Ok(usage)
    }

    pub(crate) fn blob_removed(&self, size: u64) {
        self.inner.usage.adjust(-1, -(size as i64));
    }

    /// A writer is about to rely on `digest`: if garbage collection doomed it,
    /// withdraw the marker so the collection keeps it. A stat when nothing is
    /// doomed, which is almost always.
    async fn rescue(&self, digest: &Digest) -> StorageResult<()> {
        let marker = layout::doomed(digest);
        if self.backend_ref().exists(&marker).await? {
            self.backend_ref().delete(&marker).await?;
            tracing::debug!(%digest, "blob rescued from garbage collection by a writer");
        }
        Ok(())
    }

    // --- blobs -------------------------------------------------------------

    /// Size of `digest` if `repo` may serve it.
    pub async fn blob_size(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> StorageResult<Option<u64>> {
        if !self
            .backend_ref()
            .exists(&layout::layer_link(repo, digest))
            .await?
        {
            return Ok(None);
        }
        self.backend_ref().blob_size(digest).await
    }

    /// Stream part of a blob. Callers check membership with [`Store::blob_size`].
    pub async fn blob_read(&self, digest: &Digest, range: Range<u64>) -> StorageResult<ByteStream> {
        self.backend_ref().blob_read(digest, range).await
    }

    /// Remove `digest` from `repo`. The bytes stay until garbage collection
    /// finds no repository or manifest still using them.
    pub async fn blob_delete(&self, repo: &RepositoryName, digest: &Digest) -> StorageResult<()> {
        if self
            .backend_ref()
            .delete(&layout::layer_link(repo, digest))
            .await?
        {
            Ok(())
        } else {
            Err(StorageError::BlobUnknown(digest.clone()))
        }
    }

    /// Make a blob that `from` has (or, without `from`, that the registry
    /// has) available in `repo`. Returns whether it was mounted.
    pub async fn blob_mount(
        &self,
        repo: &RepositoryName,
        from: Option<&RepositoryName>,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let _gc = self.inner.gc_lock.read().await;
        self.rescue(digest).await?;
        let available = match from {
            Some(from) => self.blob_size(from, digest).await?.is_some(),
            None => self.backend_ref().blob_size(digest).await?.is_some(),
        };
        if available {
            self.link_blob(repo, digest).await?;
        }
        Ok(available)
    }

    async fn link_blob(&self, repo: &RepositoryName, digest: &Digest) -> StorageResult<()> {
        let key = layout::layer_link(repo, digest);
        if self.backend_ref().exists(&key).await? {
            return Ok(());
        }
        self.backend_ref()
            .put(&key, Bytes::new(), Durability::Durable)
            .await
    }

    // --- uploads -----------------------------------------------------------

    pub async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: Algorithm,
    ) -> StorageResult<String> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        self.backend_ref().upload_create(&id).await?;
        let info = UploadInfo {
            repository: repo.to_string(),
            algorithm: algorithm.to_string(),
        };
        let bytes = serde_json::to_vec(&info).expect("upload info serialises");
        self.backend_ref()
            .put(
                &layout::upload_info(&id),
                bytes.into(),
                Durability::Volatile,
            )
            .await?;
        Ok(id)
    }

    /// The upload's algorithm, after checking it exists and belongs to `repo`.
    async fn upload_algorithm(&self, repo: &RepositoryName, id: &str) -> StorageResult<Algorithm> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        if !layout::is_valid_upload_id(id) {
            return Err(unknown());
        }
        let bytes = self
            .backend_ref()
            .get(&layout::upload_info(id))
            .await?
            .ok_or_else(unknown)?;
        let info: UploadInfo =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                key: layout::upload_info(id),
                reason: e.to_string(),
            })?;
        if info.repository != repo.as_str() {
            return Err(unknown());
        }
        info.algorithm.parse().map_err(|_| StorageError::Corrupt {
            key: layout::upload_info(id),
            reason: format!("unknown algorithm {}", info.algorithm),
        })
    }

    fn slot(&self, id: &str) -> Slot {
        let mut map = self.inner.uploads.lock().expect("uploads lock");
        if map.len() >= MAX_UPLOAD_SLOTS {
            // Clients abandon uploads without cancelling them. Dropping the
            // slots nobody holds loses only their running hash, which the
            // next append or close rebuilds from storage.
            map.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        map.entry(id.to_string()).or_default().clone()
    }

    #[cfg(test)]
    fn slot_count(&self) -> usize {
        self.inner.uploads.lock().expect("uploads lock").len()
    }

    pub(crate) fn forget_slot(&self, id: &str) {
        self.inner.uploads.lock().expect("uploads lock").remove(id);
    }

    pub async fn upload_status(
        &self,
        repo: &RepositoryName,
        id: &str,
    ) -> StorageResult<UploadStatus> {
        self.upload_algorithm(repo, id).await?;
        let size = self
            .backend_ref()
            .upload_size(id)
            .await?
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))?;
        Ok(UploadStatus { size })
    }

    /// The hash of everything stored so far: the checkpoint when it is
    /// current, else rebuilt by reading the upload back (after a restart, or
    /// when another process appended).
    async fn current_hasher(
        &self,
        checkpoint: &mut Option<Checkpoint>,
        id: &str,
        size: u64,
        algorithm: Algorithm,
    ) -> StorageResult<Hasher> {
        if let Some(cp) = checkpoint.take() {
            if cp.size == size && cp.hasher.algorithm() == algorithm {
                return Ok(cp.hasher);
            }
        }
        if size == 0 {
            return Ok(algorithm.hasher());
        }
        if let Some((at, hasher)) = self.backend_ref().upload_hasher(id).await? {
            if at == size && hasher.algorithm() == algorithm {
                return Ok(hasher);
            }
        }
        let stream = self.backend_ref().upload_read(id).await?;
        let (hasher, read) =
            hash_stream(stream, algorithm.hasher(), &format!("upload {id}")).await?;
        if read != size {
            return Err(StorageError::Corrupt {
                key: layout::upload_data(id),
                reason: format!("read {read} bytes back, expected {size}"),
            });
        }
        Ok(hasher)
    }

    /// Append a chunk. `start` is the first byte's offset from
    /// `Content-Range`; it must be the current size.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<UploadStatus> {
        let algorithm = self.upload_algorithm(repo, id).await?;
        let slot = self.slot(id);
        let mut checkpoint = slot.lock().await;
        let size = self
            .append_locked(&mut checkpoint, id, algorithm, start, body)
            .await?;
        Ok(UploadStatus { size })
    }

    async fn append_locked(
        &self,
        checkpoint: &mut Option<Checkpoint>,
        id: &str,
        algorithm: Algorithm,
        start: Option<u64>,
        body: ByteStream,
    ) -> StorageResult<u64> {
        let size = self
            .backend_ref()
            .upload_size(id)
            .await?
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))?;
        if let Some(start) = start {
            if start != size {
                return Err(StorageError::RangeMismatch {
                    current: size,
                    requested: start,
                });
            }
        }
        let hasher = self.current_hasher(checkpoint, id, size, algorithm).await?;
        let outcome = self
            .backend_ref()
            .upload_append(id, size, body, hasher)
            .await?;
        *checkpoint = Some(Checkpoint {
            size: outcome.size,
            hasher: outcome.hasher,
        });
        Ok(outcome.size)
    }

    /// Close an upload: append the last chunk if any, verify the digest over
    /// every stored byte, then publish the blob and link it into `repo`.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<(Option<u64>, ByteStream)>,
    ) -> StorageResult<u64> {
        let algorithm = self.upload_algorithm(repo, id).await?;
        let slot = self.slot(id);
        let mut checkpoint = slot.lock().await;
        if let Some((start, body)) = last_chunk {
            self.append_locked(&mut checkpoint, id, algorithm, start, body)
                .await?;
        }
        let size = self.verify_locked(&mut checkpoint, id, digest).await?;
        self.commit_locked(&mut checkpoint, repo, id, digest, size)
            .await?;
        drop(checkpoint);
        self.forget_slot(id);
        Ok(size)
    }

    /// Check that the upload's bytes hash to `digest`; their size.
    async fn verify_locked(
        &self,
        checkpoint: &mut Option<Checkpoint>,
        id: &str,
        digest: &Digest,
    ) -> StorageResult<u64> {
        let size = self
            .backend_ref()
            .upload_size(id)
            .await?
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))?;
        // Clients may close with a digest of another algorithm than the one
        // the upload was opened with (`digest-algorithm` is only a SHOULD);
        // the running hash then does not apply and the stored bytes are
        // hashed again with the digest's algorithm.
        let hasher = self
            .current_hasher(checkpoint, id, size, digest.algorithm())
            .await?;
        let actual = hasher.clone().finish();
        *checkpoint = Some(Checkpoint { size, hasher });
        if &actual != digest {
            return Err(StorageError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(size)
    }

    /// Publish a verified upload as the blob `digest` and link it into `repo`.
    async fn commit_locked(
        &self,
        checkpoint: &mut Option<Checkpoint>,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        size: u64,
    ) -> StorageResult<()> {
        let _gc = self.inner.gc_lock.read().await;
        self.rescue(digest).await?;
        let existed = self.backend_ref().blob_size(digest).await?.is_some();
        self.backend_ref().upload_commit(id, digest).await?;
        *checkpoint = None;
        self.link_blob(repo, digest).await?;
        if !existed {
            self.inner.usage.adjust(1, size as i64);
        }
        Ok(())
    }

    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> StorageResult<()> {
        self.upload_algorithm(repo, id).await?;
        let slot = self.slot(id);
        let _guard = slot.lock().await;
        self.backend_ref().upload_delete(id).await?;
        self.forget_slot(id);
        Ok(())
    }

    /// Monolithic upload in one call.
    pub async fn put_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
    ) -> StorageResult<u64> {
        let id = self.start_upload(repo, digest.algorithm()).await?;
        let result = self
            .finish_upload(repo, &id, digest, Some((None, body)))
            .await;
        if result.is_err() {
            // A one-shot upload has no URL the client could resume; drop it.
            let _ = self.backend_ref().upload_delete(&id).await;
            self.forget_slot(&id);
        }
        result
    }

    /// A monolithic upload that others may read while it is written, for a
    /// pull-through cache: the bytes are written and hashed once, on their
    /// way to disk. `watcher` gets a reader of the upload before the first
    /// byte is written, the size after every write, and the word when the
    /// digest matched, before the blob is committed. On any failure the
    /// upload is removed and nothing is committed. The upload stays locked
    /// from start to end, so garbage collection never takes it for abandoned.
    pub async fn put_blob_watched(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        body: ByteStream,
        watcher: &dyn UploadWatcher,
    ) -> StorageResult<u64> {
        let id = self.start_upload(repo, digest.algorithm()).await?;
        let slot = self.slot(&id);
        let mut checkpoint = slot.lock().await;
        let result = self
            .receive_watched(&mut checkpoint, repo, &id, digest, body, watcher)
            .await;
        if result.is_err() {
            let _ = self.backend_ref().upload_delete(&id).await;
        }
        drop(checkpoint);
        self.forget_slot(&id);
        result
    }

    async fn receive_watched(
        &self,
        checkpoint: &mut Option<Checkpoint>,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        body: ByteStream,
        watcher: &dyn UploadWatcher,
    ) -> StorageResult<u64> {
        watcher.opened(self.backend_ref().upload_reader(id).await?);
        let outcome = self
            .backend_ref()
            .upload_append_observed(id, 0, body, digest.algorithm().hasher(), watcher.written())
            .await?;
        *checkpoint = Some(Checkpoint {
            size: outcome.size,
            hasher: outcome.hasher,
        });
        let size = self.verify_locked(checkpoint, id, digest).await?;
        watcher.verified(size);
        self.commit_locked(checkpoint, repo, id, digest, size)
            .await?;
        Ok(size)
    }

    /// Whether this process is writing to the upload right now.
    pub(crate) fn upload_in_use(&self, id: &str) -> bool {
        let map = self.inner.uploads.lock().expect("uploads lock");
        map.get(id).is_some_and(|slot| slot.try_lock().is_err())
    }

    /// Mark a manifest of `repo` as used now (its revision's modification
    /// time, which retention's `max_age` and `keep_last` go by), so that a
    /// pull-through cache's images age out by their last pull, not their
    /// first. Written at most once a minute per manifest: a pull costs one
    /// `stat` otherwise.
    pub async fn manifest_used(&self, repo: &RepositoryName, digest: &Digest) -> StorageResult<()> {
        let key = layout::revision(repo, digest);
        let Some(modified) = self.backend_ref().modified(&key).await? else {
            return Ok(());
        };
        let age = std::time::SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        if age >= USE_RECORD_INTERVAL {
            self.backend_ref().touch(&key).await?;
        }
        Ok(())
    }

    // --- manifests ---------------------------------------------------------

    async fn resolve(&self, repo: &RepositoryName, target: &Target) -> StorageResult<Digest> {
        match target {
            Target::Digest(d) => Ok(d.clone()),
            Target::Tag(t) => {
                let bytes = self
                    .backend_ref()
                    .get(&layout::tag(repo, t))
                    .await?
                    .ok_or(StorageError::ManifestUnknown)?;
                let text = std::str::from_utf8(&bytes).unwrap_or_default().trim();
                text.parse().map_err(|e| StorageError::Corrupt {
                    key: layout::tag(repo, t),
                    reason: format!("{e}"),
                })
            }
        }
    }

    pub async fn manifest_get(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> StorageResult<StoredManifest> {
        let digest = self.resolve(repo, target).await?;
        let media_type = self
            .backend_ref()
            .get(&layout::revision(repo, &digest))
            .await?
            .ok_or(StorageError::ManifestUnknown)?;
        let media_type = String::from_utf8_lossy(&media_type).into_owned();
        let bytes = match self.inner.manifests.get(&digest) {
            Some(b) => b,
            None => {
                let b = self.read_small_blob(&digest).await?;
                self.inner.manifests.insert(digest.clone(), b.clone());
                b
            }
        };
        let media_type = servable_media_type(media_type, &bytes, repo, &digest)?;
        Ok(StoredManifest {
            digest,
            media_type,
            bytes,
        })
    }

    async fn read_small_blob(&self, digest: &Digest) -> StorageResult<Bytes> {
        let key = layout::blob(digest);
        let bytes = self
            .backend_ref()
            .get(&key)
            .await?
            .ok_or(StorageError::ManifestUnknown)?;
        // Cheap insurance: manifests are small, so verify before serving.
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(StorageError::Corrupt {
                key,
                reason: format!("hashes to {actual}"),
            });
        }
        Ok(bytes)
    }

    /// Store a manifest exactly as pushed.
    pub async fn manifest_put(
        &self,
        repo: &RepositoryName,
        target: &Target,
        bytes: Bytes,
        content_type: Option<&str>,
        options: &ManifestPutOptions,
    ) -> StorageResult<ManifestPut> {
        let parsed = ParsedManifest::parse(&bytes, content_type).map_err(manifest_invalid)?;
        refuse_non_manifest_type(&parsed.media_type)?;
        let digest = match target {
            Target::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &bytes);
                if &actual != expected {
                    return Err(StorageError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Target::Tag(_) => Digest::sha256_of(&bytes),
        };
        // Shared from the rescue until the revision is written: a collection
        // in this process then either sees the revision, or finds its doomed
        // markers withdrawn.
        let _gc = self.inner.gc_lock.read().await;
        for referenced in crate::gc::references(&parsed).chain([&digest]) {
            self.rescue(referenced).await?;
        }
        self.check_references(repo, &parsed, options).await?;
        let existed = self.backend_ref().blob_size(&digest).await?.is_some();
        self.backend_ref()
            .blob_put_verified(&digest, bytes.clone())
            .await?;
        if !existed {
            self.inner.usage.adjust(1, bytes.len() as i64);
        }
        self.inner.manifests.insert(digest.clone(), bytes.clone());
        // Order matters for crash safety: content, then revision, then the
        // referrer entry, then tags, so nothing ever points at what is not there.
        self.backend_ref()
            .put(
                &layout::revision(repo, &digest),
                Bytes::from(parsed.media_type.clone()),
                Durability::Durable,
            )
            .await?;
        let subject = match &parsed.subject {
            Some(subject) => {
                self.record_referrer(repo, subject, &digest, bytes.len() as u64, &parsed)
                    .await?;
                Some(subject.digest.clone())
            }
            None => None,
        };
        let mut tags = options.extra_tags.clone();
        if let Target::Tag(t) = target {
            tags.insert(0, t.clone());
        }
        for tag in &tags {
            self.backend_ref()
                .put(
                    &layout::tag(repo, tag),
                    Bytes::from(digest.to_string()),
                    Durability::Durable,
                )
                .await?;
        }
        // A deletion of this manifest in another process (DELETE, retention)
        // may have looked for its tags before they were written and removed
        // the revision since. Both sides look again after their last write
        // (the deletion for tags, after removing the revision), so at least
        // one of them sees the other: here, the push withdraws what it wrote
        // and the deletion stands, as if it had come just after the push.
        if !self
            .backend_ref()
            .exists(&layout::revision(repo, &digest))
            .await?
        {
            tracing::info!(repository = %repo, %digest, "manifest deleted while it was pushed; its tags are withdrawn");
            self.withdraw_tags(repo, &digest, &tags).await?;
            if let Some(subject) = &subject {
                self.backend_ref()
                    .delete(&layout::referrer(repo, subject, &digest))
                    .await?;
            }
        }
        Ok(ManifestPut {
            digest,
            subject,
            tags,
        })
    }

    async fn check_references(
        &self,
        repo: &RepositoryName,
        parsed: &ParsedManifest,
        options: &ManifestPutOptions,
    ) -> StorageResult<()> {
        if options.lazy_references {
            return Ok(());
        }
        let mut missing = Vec::new();
        for blob in parsed.required_blobs() {
            // The link alone is not enough: a collection removes a blob a
            // moment before it drops the links to it.
            if self.blob_size(repo, &blob.digest).await?.is_none() {
                missing.push(blob.digest.clone());
            }
        }
        if !options.sparse_indexes {
            for child in &parsed.manifests {
                if !self
                    .backend_ref()
                    .exists(&layout::revision(repo, &child.digest))
                    .await?
                {
                    missing.push(child.digest.clone());
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StorageError::ManifestBlobUnknown(missing))
        }
    }

    async fn record_referrer(
        &self,
        repo: &RepositoryName,
        subject: &Descriptor,
        digest: &Digest,
        size: u64,
        parsed: &ParsedManifest,
    ) -> StorageResult<()> {
        let descriptor = bounded_referrer(Descriptor {
            media_type: parsed.media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: if parsed.is_index() {
                parsed.artifact_type.clone()
            } else {
                parsed.referrer_artifact_type()
            },
            annotations: parsed.annotations.clone(),
            platform: None,
            urls: None,
        });
        let json = serde_json::to_vec(&descriptor).expect("descriptor serialises");
        self.backend_ref()
            .put(
                &layout::referrer(repo, &subject.digest, digest),
                json.into(),
                Durability::Durable,
            )
            .await
    }

    /// Delete a tag, or a manifest by digest together with every tag that
    /// points at it and its referrer entry.
    pub async fn manifest_delete(
        &self,
        repo: &RepositoryName,
        target: &Target,
    ) -> StorageResult<()> {
        match target {
            Target::Tag(t) => {
                if self.backend_ref().delete(&layout::tag(repo, t)).await? {
                    Ok(())
                } else {
                    Err(StorageError::ManifestUnknown)
                }
            }
            Target::Digest(d) => self.delete_manifest_by_digest(repo, d).await,
        }
    }

    async fn delete_manifest_by_digest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> StorageResult<()> {
        // Exclusive, as a collection removing a manifest: a push in this
        // process is either wholly before (its tags are found and deleted)
        // or wholly after (it writes the manifest again).
        let _exclusive = self.inner.gc_lock.write().await;
        let manifest = self
            .manifest_get(repo, &Target::Digest(digest.clone()))
            .await?;
        let subject = ParsedManifest::parse(&manifest.bytes, Some(&manifest.media_type))
            .ok()
            .and_then(|parsed| parsed.subject)
            .map(|subject| subject.digest);
        let tags = self.tags_pointing_at(repo, digest).await?;
        self.remove_manifest_entries(repo, digest, &tags, subject.as_ref())
            .await
    }

    /// Every tag of `repo` that points at `digest`.
    async fn tags_pointing_at(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> StorageResult<Vec<Tag>> {
        let mut out = Vec::new();
        for name in self.backend_ref().list(&layout::tags(repo)).await? {
            let Ok(tag) = name.parse::<Tag>() else {
                continue;
            };
            if self
                .resolve(repo, &Target::Tag(tag.clone()))
                .await
                .ok()
                .as_ref()
                == Some(digest)
            {
                out.push(tag);
            }
        }
        Ok(out)
    }

    /// Delete those of `tags` that still point at `digest`.
    async fn withdraw_tags(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        tags: &[Tag],
    ) -> StorageResult<()> {
        for tag in tags {
            let target = self.resolve(repo, &Target::Tag(tag.clone())).await.ok();
            if target.as_ref() == Some(digest) {
                self.backend_ref().delete(&layout::tag(repo, tag)).await?;
            }
        }
        Ok(())
    }

    /// Remove a manifest from `repo`: `tags` (those found pointing at it),
    /// its referrer entry and its revision, in that order, so a crash in
    /// between leaves a manifest with fewer tags, never a tag without its
    /// manifest. The caller holds the collection lock exclusively. Then the
    /// tags and the referrer entry are looked for again: a push of the same
    /// manifest in another process may have written them after they were
    /// listed; it looks for the revision after its last write, so either it
    /// sees the revision gone (and withdraws its writes) or this second look
    /// sees its tags.
    pub(crate) async fn remove_manifest_entries(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        tags: &[Tag],
        subject: Option<&Digest>,
    ) -> StorageResult<()> {
        for tag in tags {
            self.backend_ref().delete(&layout::tag(repo, tag)).await?;
        }
        let referrer = subject.map(|subject| layout::referrer(repo, subject, digest));
        if let Some(referrer) = &referrer {
            self.backend_ref().delete(referrer).await?;
        }
        self.backend_ref()
            .delete(&layout::revision(repo, digest))
            .await?;
        self.inner.manifests.remove(digest);
        for tag in self.tags_pointing_at(repo, digest).await? {
            self.backend_ref().delete(&layout::tag(repo, &tag)).await?;
        }
        if let Some(referrer) = &referrer {
            self.backend_ref().delete(referrer).await?;
        }
        Ok(())
    }

    pub async fn repository_exists(&self, repo: &RepositoryName) -> StorageResult<bool> {
        let base = layout::repository(repo);
        for marker in [layout::MANIFESTS_DIR, layout::LAYERS_DIR] {
            if self
                .backend_ref()
                .exists(&format!("{base}/{marker}"))
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Tags in byte order (Go's `sort.Strings`), `n` at most, after `last`.
    pub async fn tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> StorageResult<TagPage> {
        if !self.repository_exists(repo).await? {
            return Err(StorageError::NameUnknown);
        }
        let mut tags: Vec<String> = self
            .backend_ref()
            .list(&layout::tags(repo))
            .await?
            .into_iter()
            .filter(|t| t.parse::<Tag>().is_ok())
            .collect();
        tags.sort();
        Ok(paginate(tags, n, last))
    }

    /// Every repository, sorted, paginated like tags.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> StorageResult<TagPage> {
        let mut repos = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let key = if prefix.is_empty() {
                layout::REPOSITORIES.to_string()
            } else {
                format!("{}/{prefix}", layout::REPOSITORIES)
            };
            let mut is_repo = false;
            for child in self.backend_ref().list(&key).await? {
                if child.starts_with('_') {
                    is_repo = true;
                } else if wharf_oci::name::is_valid_component(&child) {
                    pending.push(if prefix.is_empty() {
                        child
                    } else {
                        format!("{prefix}/{child}")
                    });
                }
            }
            if is_repo {
                repos.push(prefix);
            }
        }
        repos.sort();
        Ok(paginate(repos, n, last))
    }

    /// One page of the manifests in `repo` whose `subject` is `subject`
    /// (optionally only those of `artifact_type`), in digest order, after
    /// the referrer named `after` (a [`ReferrerPage::next`]), at most `limit`
    /// of them and [`REFERRERS_PAGE_BYTES`] of descriptors. Entries are read
    /// one at a time, each bounded by [`bounded_referrer`], so memory depends
    /// on neither the number of referrers nor their annotations.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> StorageResult<ReferrerPage> {
        let prefix = layout::referrers_of(repo, subject);
        let mut names = self.backend_ref().list(&prefix).await?;
        names.sort();
        let start = after.map_or(0, |a| names.partition_point(|n| n.as_str() <= a));
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = ReferrerPage::default();
        let mut bytes = 0;
        for name in &names[start..] {
            if page.descriptors.len() == limit {
                page.next = page.last.clone();
                break;
            }
            let Some(descriptor) = self.referrer_entry(&prefix, name).await? else {
                continue; // deleted while listing
            };
            if artifact_type.is_some_and(|a| descriptor.artifact_type.as_deref() != Some(a)) {
                page.last = Some(name.clone());
                continue;
            }
            let size = serde_json::to_vec(&descriptor).map_or(0, |v| v.len());
            if !page.descriptors.is_empty() && bytes + size > REFERRERS_PAGE_BYTES {
                page.next = page.last.clone();
                break;
            }
            bytes += size;
            page.descriptors.push(descriptor);
            page.last = Some(name.clone());
        }
        Ok(page)
    }

    /// One stored referrer descriptor, bounded (entries written before the
    /// bound may carry more).
    async fn referrer_entry(&self, prefix: &str, name: &str) -> StorageResult<Option<Descriptor>> {
        let key = format!("{prefix}/{name}");
        let Some(bytes) = self.backend_ref().get(&key).await? else {
            return Ok(None);
        };
        let descriptor: Descriptor =
            serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
                key,
                reason: e.to_string(),
            })?;
        Ok(Some(bounded_referrer(descriptor)))
    }
}

/// Most bytes of annotations (keys and values) a referrer's descriptor
/// carries in a referrers listing. A manifest's annotations can fill all of
/// its 4 MiB; copied into every listing of its subject they would make one
/// request cost the registry hundreds of MiB. Past this bound the descriptor
/// is listed without them, and a client reads them from the manifest.
pub const REFERRER_ANNOTATIONS_MAX_BYTES: usize = 16 * 1024;
/// Most bytes of descriptors in one page of a referrers listing; more
/// referrers follow through the `Link` header.
pub const REFERRERS_PAGE_BYTES: usize = 256 * 1024;
/// Longest media type RFC 6838 allows (127 characters each side of `/`).
const MEDIA_TYPE_MAX_BYTES: usize = 255;

/// `descriptor` as a referrers listing carries it: annotations past
/// [`REFERRER_ANNOTATIONS_MAX_BYTES`] (as JSON) and an `artifactType` too
/// long to be a media type are left out, so each entry of a listing is a
/// few KiB at most.
pub fn bounded_referrer(mut descriptor: Descriptor) -> Descriptor {
    let too_many_annotations = descriptor.annotations.as_ref().is_some_and(|a| {
        let raw: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
        raw > REFERRER_ANNOTATIONS_MAX_BYTES
            || serde_json::to_vec(a)
                .map_or(true, |json| json.len() > REFERRER_ANNOTATIONS_MAX_BYTES)
    });
    if too_many_annotations {
        descriptor.annotations = None;
    }
    if descriptor
        .artifact_type
        .as_ref()
        .is_some_and(|t| t.len() > MEDIA_TYPE_MAX_BYTES)
    {
        descriptor.artifact_type = None;
    }
    descriptor.platform = None;
    descriptor.urls = None;
    descriptor
}

/// A page of referrers ([`Store::referrers`]).
#[derive(Debug, Clone, Default)]
pub struct ReferrerPage {
    pub descriptors: Vec<Descriptor>,
    /// Set when more referrers may follow: pass it as `after` for the next page.
    pub next: Option<String>,
    /// The last entry this page looked at.
    last: Option<String>,
}

/// Feed a whole stream into `hasher`, returning it and the bytes read.
/// Hashing a large upload or blob again can take seconds, so each chunk is
/// hashed on the blocking pool, off the threads that serve connections.
pub(crate) async fn hash_stream(
    mut stream: ByteStream,
    mut hasher: Hasher,
    what: &str,
) -> StorageResult<(Hasher, u64)> {
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| StorageError::io(format!("reading {what}"), e))?;
        read += chunk.len() as u64;
        hasher = tokio::task::spawn_blocking(move || {
            hasher.update(&chunk);
            hasher
        })
        .await
        .map_err(|e| StorageError::io(format!("hashing {what}"), std::io::Error::other(e)))?;
    }
    Ok((hasher, read))
}

fn paginate(sorted: Vec<String>, n: Option<usize>, last: Option<&str>) -> TagPage {
    let start = match last {
        Some(last) => sorted.partition_point(|t| t.as_str() <= last),
        None => 0,
    };
    let rest = &sorted[start..];
    match n {
        Some(n) if n < rest.len() => TagPage {
            tags: rest[..n].to_vec(),
            more: n > 0,
        },
        _ => TagPage {
            tags: rest.to_vec(),
            more: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_upload_slots_are_bounded_and_hashes_rebuilt() {
        use crate::testsuite::stream_of;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_fs(dir.path()).unwrap();
        let repo: RepositoryName = "slots".parse().unwrap();
        let mut first = None;
        for i in 0..MAX_UPLOAD_SLOTS + 50 {
            let id = store.start_upload(&repo, Algorithm::Sha256).await.unwrap();
            let chunk = Bytes::from(format!("chunk {i}"));
            store
                .append_upload(&repo, &id, Some(0), stream_of(vec![chunk]))
                .await
                .unwrap();
            first.get_or_insert(id);
        }
        assert!(
            store.slot_count() <= MAX_UPLOAD_SLOTS,
            "slots grow without bound"
        );
        // The first upload's running hash was dropped; closing it still verifies.
        let id = first.unwrap();
        let tail = Bytes::from_static(b" and more");
        let digest = Digest::sha256_of(b"chunk 0 and more");
        store
            .finish_upload(&repo, &id, &digest, Some((Some(7), stream_of(vec![tail]))))
            .await
            .unwrap();
        assert_eq!(store.blob_size(&repo, &digest).await.unwrap(), Some(16));
    }

    #[test]
    fn pagination_follows_the_spec() {
        let all = names(&["a", "b", "c", "d"]);
        let p = paginate(all.clone(), Some(2), None);
        assert_eq!((p.tags, p.more), (names(&["a", "b"]), true));
        let p = paginate(all.clone(), Some(2), Some("b"));
        assert_eq!((p.tags, p.more), (names(&["c", "d"]), false));
        let p = paginate(all.clone(), Some(0), None);
        assert_eq!((p.tags, p.more), (vec![], false));
        let p = paginate(all.clone(), None, Some("bb"));
        assert_eq!(p.tags, names(&["c", "d"]));
        let p = paginate(all, Some(10), None);
        assert!(!p.more);
    }
}
