//! The interface every storage backend implements: small atomic documents,
//! immutable blobs, and append-only uploads. Everything registry-specific
//! (links, tags, referrers, digest verification) lives above it, in
//! [`crate::Store`], so a backend is only about moving bytes safely.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use wharf_oci::{Digest, Hasher};

use crate::error::StorageResult;

/// A stream of body bytes, as read from a client or from storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// How hard to try to keep a document across a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before it becomes visible (tags, links, manifests).
    Durable,
    /// Atomic but not synced: losing it on power loss is harmless (upload
    /// bookkeeping, which a client can simply start again).
    Volatile,
}

/// Told, from the thread that writes, how many bytes an upload holds after
/// each write (readers of an upload in progress may read up to there) and,
/// when the backend has them at hand, the chunks just written, which end at
/// that size: a reader that keeps up can take them without reading back.
pub type WriteObserver = Arc<dyn Fn(u64, &[Bytes]) + Send + Sync>;

/// Reads an upload while it grows and after it became a blob: the handle
/// keeps the bytes it was opened on, whatever is renamed or deleted later.
#[async_trait]
pub trait UploadReader: Send + Sync {
    /// Up to `len` bytes from `offset`; fewer only at the end of what is
    /// written so far.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

/// What an append did: bytes now in the upload and the running hash over all
/// of them, ready for the next append.
pub struct AppendOutcome {
    pub size: u64,
    pub hasher: Hasher,
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    // --- small documents (tags, links, revisions, referrers) -------------

    /// Read a whole document; `None` when absent.
    async fn get(&self, key: &str) -> StorageResult<Option<Bytes>>;
    /// Create or atomically replace a document.
    async fn put(&self, key: &str, value: Bytes, durability: Durability) -> StorageResult<()>;
    /// Remove a document; `false` when it was absent.
    async fn delete(&self, key: &str) -> StorageResult<bool>;
    /// Set the document's modification time to now (a pull-through cache
    /// marks a manifest as used); `false` when it is absent.
    async fn touch(&self, key: &str) -> StorageResult<bool>;
    /// Does the document exist?
    async fn exists(&self, key: &str) -> StorageResult<bool>;
    /// Names directly under `prefix` (documents and sub-prefixes), unsorted.
    async fn list(&self, prefix: &str) -> StorageResult<Vec<String>>;
    /// Remove everything under `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> StorageResult<()>;
    /// When the document was last written; `None` when absent. Garbage
    /// collection reads a manifest's push time from its revision document.
    async fn modified(&self, key: &str) -> StorageResult<Option<SystemTime>>;

    // --- blobs, immutable once committed ---------------------------------

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>>;
    /// When the blob was committed, or last committed again: committing
    /// bytes a blob already holds ([`Backend::upload_commit`],
    /// [`Backend::blob_put_verified`]) refreshes it, so garbage collection's
    /// grace period starts over for a blob that is being pushed again.
    /// `None` when absent.
    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<SystemTime>>;
    /// Stream `range` of a blob. The caller has checked the range.
    async fn blob_read(&self, digest: &Digest, range: Range<u64>) -> StorageResult<ByteStream>;
    /// Store a small blob whose digest the caller has verified (manifests).
    /// When the blob exists already, only its modification time is refreshed.
    async fn blob_put_verified(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()>;
    async fn blob_delete(&self, digest: &Digest) -> StorageResult<bool>;
    /// Every stored blob (for garbage collection and fsck).
    async fn blob_list(&self) -> StorageResult<Vec<Digest>>;
    /// Move a blob whose bytes do not hash to its digest out of the blob
    /// store, keeping it for inspection (`fsck --repair`).
    async fn blob_quarantine(&self, digest: &Digest) -> StorageResult<()>;
    /// A short-lived URL a client can fetch the blob from directly, when the
    /// backend offers one and is configured to hand it out; `None` means the
    /// registry streams the blob itself.
    async fn blob_url(&self, _digest: &Digest) -> StorageResult<Option<String>> {
        Ok(None)
    }

    // --- uploads -----------------------------------------------------------

    /// Start an upload with an empty body.
    async fn upload_create(&self, id: &str) -> StorageResult<()>;
    /// Bytes received so far; `None` when the upload does not exist.
    async fn upload_size(&self, id: &str) -> StorageResult<Option<u64>>;
    /// Append `body` at `offset` (which must equal the current size), feeding
    /// every byte it persists into `hasher`. On error the upload keeps
    /// whatever prefix was persisted and the hasher is lost: the caller
    /// re-hashes from [`Backend::upload_read`].
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
    ) -> StorageResult<AppendOutcome>;
    /// [`Backend::upload_append`] that also reports the upload's size to
    /// `on_written` after every write, so readers can follow it. Backends
    /// that cannot report sooner report once, at the end.
    async fn upload_append_observed(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
        hasher: Hasher,
        on_written: WriteObserver,
    ) -> StorageResult<AppendOutcome> {
        let outcome = self.upload_append(id, offset, body, hasher).await?;
        on_written(outcome.size, &[]);
        Ok(outcome)
    }
    /// A reader of the upload's bytes that stays valid while it grows, after
    /// it was committed and after the blob was deleted (a pull-through
    /// cache streams a download to its requesters from it).
    async fn upload_reader(&self, id: &str) -> StorageResult<Arc<dyn UploadReader>>;
    /// Whether [`Backend::upload_reader`] works: uploads can be read while
    /// they grow. Object storage cannot read an unfinished multipart upload.
    fn follows_uploads(&self) -> bool {
        true
    }
    /// Read the whole upload back (to rebuild a hash after a restart).
    async fn upload_read(&self, id: &str) -> StorageResult<ByteStream>;
    /// The running hash the backend persisted with the upload, and the size
    /// it covers. Backends whose uploads cannot be read back before they are
    /// committed (object-storage multipart uploads) keep one, so any process
    /// can continue an upload another started; the rest return `None` and
    /// the hash is rebuilt with [`Backend::upload_read`].
    async fn upload_hasher(&self, _id: &str) -> StorageResult<Option<(u64, Hasher)>> {
        Ok(None)
    }
    /// Make the upload's bytes the blob `digest` (already verified by the
    /// caller) and remove the upload. Idempotent if the blob already exists
    /// (its modification time is then refreshed).
    async fn upload_commit(&self, id: &str, digest: &Digest) -> StorageResult<()>;
    /// Remove an upload and its data.
    async fn upload_delete(&self, id: &str) -> StorageResult<bool>;
    /// Ids of every upload in progress, with their age in seconds.
    async fn upload_list(&self) -> StorageResult<Vec<(String, u64)>>;
}
