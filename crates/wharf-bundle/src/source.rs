//! A verified bundle (or `docker save` / OCI archive) as a
//! [`wharf_transfer::Source`]: `wharf load --to` and `wharf copy
//! oci-archive:…` copy from it with the same parallelism, HEAD before
//! upload, mounts and reports as `wharf sync`, reading manifests and blobs
//! straight from the tar (every byte was verified when it was opened).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use wharf_client::Manifest;
use wharf_oci::{Descriptor, Digest, Reference, RepositoryName, Target};
use wharf_transfer::{Source, SourceBlob, TransferError};

use crate::reader::{Bundle, Location};

/// Bytes read from the tar at a time.
const CHUNK: u64 = 1 << 20;
/// Chunks of the tar read ahead of the consumer.
const READ_AHEAD: usize = 2;

/// A verified bundle's images, by digest or by the names it holds them
/// under.
pub struct BundleSource(Arc<Bundle>);

impl BundleSource {
    pub fn new(bundle: Arc<Bundle>) -> BundleSource {
        BundleSource(bundle)
    }

    /// The digest `reference` names in the bundle: its digest, or the image
    /// listed under that name and tag.
    fn digest_of(&self, reference: &Reference) -> wharf_transfer::Result<Digest> {
        let bundle = &self.0;
        let found = match reference.target() {
            Target::Digest(d) => bundle.manifest_type(&d).is_some().then_some(d),
            Target::Tag(_) => bundle
                .images()
                .iter()
                .find(|i| i.name == *reference)
                .map(|i| i.manifest.digest.clone()),
        };
        found.ok_or_else(|| {
            TransferError::NotInSource(format!(
                "{}: the archive has no image {reference}",
                bundle.path().display()
            ))
        })
    }
}

#[async_trait]
impl Source for BundleSource {
    async fn resolve(&self, reference: &Reference) -> wharf_transfer::Result<Digest> {
        self.digest_of(reference)
    }

    async fn manifest(&self, reference: &Reference) -> wharf_transfer::Result<Manifest> {
        let digest = self.digest_of(reference)?;
        let absent = || {
            TransferError::Source(format!(
                "{}: manifest {digest} is not in the archive",
                self.0.path().display()
            ))
        };
        let media_type = self.0.manifest_type(&digest).ok_or_else(absent)?;
        // A manifest is small: one read of the verified tar.
        let bytes = self
            .0
            .manifest(&digest)
            .map_err(|e| TransferError::Source(e.to_string()))?
            .ok_or_else(absent)?;
        Ok(Manifest {
            bytes,
            media_type: media_type.to_string(),
            digest: digest.clone(),
        })
    }

    async fn open_blob(
        &self,
        _host: &str,
        _repository: &RepositoryName,
        blob: &Descriptor,
    ) -> wharf_transfer::Result<SourceBlob> {
        let bundle = &self.0;
        let digest = blob.digest.clone();
        let Some(location) = bundle.blob(&digest) else {
            let why = if bundle.is_omitted(&digest) {
                format!(
                    "is left to the base bundle{}: load that first",
                    bundle.base().map(|b| format!(" {b}")).unwrap_or_default()
                )
            } else {
                "is not in the archive".to_string()
            };
            return Err(TransferError::NotInSource(format!(
                "{}: blob {digest} {why}",
                bundle.path().display()
            )));
        };
        let path = bundle.path().display().to_string();
        Ok(read_ahead(bundle.clone(), location)
            .map(move |chunk| {
                chunk.map_err(|e| {
                    TransferError::Source(format!("blob {digest}: cannot read it from {path}: {e}"))
                })
            })
            .boxed())
    }
}

/// `location`'s bytes, read in 1 MiB chunks by a blocking task that stays
/// up to [`READ_AHEAD`] chunks ahead of the consumer (so reading from disk
/// and sending overlap) and stops when the consumer drops the stream.
pub(crate) fn read_ahead(
    bundle: Arc<Bundle>,
    location: Location,
) -> BoxStream<'static, std::io::Result<Bytes>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let end = location.offset + location.size;
        let mut at = location.offset;
        while at < end {
            let len = CHUNK.min(end - at) as usize;
            let mut buf = vec![0u8; len];
            let chunk = bundle.read_at(&mut buf, at).map(|()| Bytes::from(buf));
            let failed = chunk.is_err();
            if sender.blocking_send(chunk).is_err() || failed {
                return;
            }
            at += len as u64;
        }
    });
    stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    })
    .boxed()
}
