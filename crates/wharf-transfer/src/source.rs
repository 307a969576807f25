//! Where a transfer reads images from. A [`Source`] resolves a reference
//! to its manifest and opens blobs as streams; the copy logic (what to
//! move, HEAD before upload, mounts, parallelism, reports) is the same
//! whatever the source. A registry ([`wharf_client::Client`]) is one; a
//! verified bundle, an OCI layout directory or an image archive are others
//! (`wharf-bundle`), so that `wharf load` and `wharf copy oci-archive:…`
//! read files directly instead of through a registry of their own.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use wharf_client::{Client, Manifest};
use wharf_oci::{Descriptor, Digest, Reference, RepositoryName};

use crate::blobs::HoldLast;
use crate::error::{Result, TransferError};

/// A blob's bytes, in order. The stream is verified: bytes that do not hash
/// to the blob's digest end in an error in place of the last chunk (or were
/// checked in full before the run), so an upload of wrong content always
/// ends short.
pub type SourceBlob = BoxStream<'static, Result<Bytes>>;

/// Something images can be copied from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Called once per run and host before its first request (a registry
    /// is pinged, so that parallel images do not all ping it at once). A
    /// failure here is not an error: the first real request reports it.
    async fn ready(&self, _host: &str) {}

    /// The digest of the manifest `reference` names; [`TransferError::Missing`]
    /// or [`TransferError::NotInSource`] when there is none.
    async fn resolve(&self, reference: &Reference) -> Result<Digest>;

    /// The manifest `reference` names, bytes as stored, digest verified.
    async fn manifest(&self, reference: &Reference) -> Result<Manifest>;

    /// The bytes of `blob`, which an image of `repository` at `host` needs.
    async fn open_blob(
        &self,
        host: &str,
        repository: &RepositoryName,
        blob: &Descriptor,
    ) -> Result<SourceBlob>;

    /// Manifests that refer to `subject` (signatures, SBOMs). None, unless
    /// the source keeps such links.
    async fn referrers(
        &self,
        _host: &str,
        _repository: &RepositoryName,
        _subject: &Digest,
    ) -> Result<Vec<Descriptor>> {
        Ok(Vec::new())
    }
}

/// The registry source: what `wharf copy` and `wharf sync` read from.
#[async_trait]
impl Source for Client {
    async fn ready(&self, host: &str) {
        let _ = self.ping(host).await;
    }

    async fn resolve(&self, reference: &Reference) -> Result<Digest> {
        match self.head_manifest(reference).await {
            Ok(info) => Ok(info.digest),
            Err(e) if e.is_not_found() => Err(TransferError::Missing(e)),
            Err(e) => Err(e.into()),
        }
    }

    async fn manifest(&self, reference: &Reference) -> Result<Manifest> {
        Ok(self.get_manifest(reference).await?)
    }

    async fn open_blob(
        &self,
        host: &str,
        repository: &RepositoryName,
        blob: &Descriptor,
    ) -> Result<SourceBlob> {
        let (digest, size) = (&blob.digest, blob.size);
        let stream = self.get_blob(host, repository, digest).await?;
        if let Some(announced) = stream.size().filter(|s| *s != size) {
            return Err(TransferError::Source(format!(
                "blob {digest}: the source sends {announced} bytes, the manifest says {size}"
            )));
        }
        Ok(HoldLast::new(stream)
            .map(|item| item.map_err(TransferError::from))
            .boxed())
    }

    async fn referrers(
        &self,
        host: &str,
        repository: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>> {
        Ok(Client::referrers(self, host, repository, subject, None).await?)
    }
}
