//! A transfer from a [`Source`] that is not a registry (what `wharf load`
//! and `wharf copy oci-archive:…` do with a file): manifests and blobs come
//! from the source, the copy logic and the destination's checks are the
//! same as between registries.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use futures_util::stream::{self, StreamExt};
use wharf_client::Manifest;
use wharf_oci::{Descriptor, Digest, Reference, RepositoryName};
use wharf_testkit::image::Artifact;
use wharf_testkit::WharfRegistry;
use wharf_transfer::{
    ImageJob, NoEvents, Options, Source, SourceBlob, Status, Transfer, TransferError,
};

/// One image in memory, each blob served in small chunks (as a file is
/// read); a blob listed in `broken` fails half-way with a read error.
struct MemorySource {
    image: Artifact,
    blobs: HashMap<Digest, Vec<u8>>,
    broken: Option<Digest>,
    blobs_opened: AtomicUsize,
}

impl MemorySource {
    fn of(image: &Artifact) -> MemorySource {
        let blobs = image
            .blobs
            .iter()
            .map(|b| (b.digest(), b.bytes.clone()))
            .collect();
        MemorySource {
            image: image.clone(),
            blobs,
            broken: None,
            blobs_opened: AtomicUsize::new(0),
        }
    }

    fn holds(&self, reference: &Reference) -> bool {
        reference.digest() == Some(&self.image.digest())
    }
}

#[async_trait]
impl Source for MemorySource {
    async fn resolve(&self, reference: &Reference) -> wharf_transfer::Result<Digest> {
        match self.holds(reference) {
            true => Ok(self.image.digest()),
            false => Err(TransferError::NotInSource(format!("{reference}: not here"))),
        }
    }

    async fn manifest(&self, reference: &Reference) -> wharf_transfer::Result<Manifest> {
        self.resolve(reference).await?;
        Ok(Manifest {
            bytes: Bytes::from(self.image.manifest.clone()),
            media_type: self.image.media_type.to_string(),
            digest: self.image.digest(),
        })
    }

    async fn open_blob(
        &self,
        _host: &str,
        _repository: &RepositoryName,
        blob: &Descriptor,
    ) -> wharf_transfer::Result<SourceBlob> {
        self.blobs_opened.fetch_add(1, Ordering::Relaxed);
        let bytes = self.blobs.get(&blob.digest).expect("a blob of the image");
        let mut chunks: Vec<wharf_transfer::Result<Bytes>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        if self.broken.as_ref() == Some(&blob.digest) {
            chunks.truncate(chunks.len() / 2);
            chunks.push(Err(TransferError::Source(format!(
                "blob {}: cannot read it: disk gone",
                blob.digest
            ))));
        }
        Ok(stream::iter(chunks).boxed())
    }
}

/// `name@digest` of the source's image, to `to`.
fn job_for(source: &MemorySource, to: &str) -> ImageJob {
    let name = reference("bundle.example/team/app:v1").with_digest(source.image.digest());
    ImageJob::new(name, reference(to))
}

async fn copy_from(source: Arc<MemorySource>, to: &str) -> wharf_transfer::ImageReport {
    let job = job_for(&source, to);
    Transfer::from_source(source, client(), Options::default(), Arc::new(NoEvents))
        .run(vec![job])
        .await
        .remove(0)
}

#[tokio::test]
async fn an_image_is_copied_byte_for_byte_from_a_source_that_is_not_a_registry() {
    let dst = WharfRegistry::start().await;
    let img = oci_image(21);
    let source = Arc::new(MemorySource::of(&img));

    let to = format!("{}/app:v1", dst.host);
    let report = copy_from(source.clone(), &to).await;

    assert_eq!(report.status, Status::Copied, "{report:?}");
    assert_eq!(report.bytes_sent, img.blob_bytes());
    assert_eq!(report.digest, Some(img.digest()));
    let copied = client().get_manifest(&reference(&to)).await.unwrap();
    assert_eq!(copied.bytes.to_vec(), img.manifest);
    for blob in &img.blobs {
        let digest = blob.digest();
        assert!(client()
            .head_blob(&dst.host, &repo("app"), &digest)
            .await
            .unwrap()
            .is_some());
    }

    // A second run finds the digest there and opens no blob.
    let opened = source.blobs_opened.load(Ordering::Relaxed);
    let again = copy_from(source.clone(), &to).await;
    assert_eq!(again.status, Status::UpToDate, "{again:?}");
    assert_eq!(source.blobs_opened.load(Ordering::Relaxed), opened);
}

#[tokio::test]
async fn an_image_the_source_lacks_fails_naming_it() {
    let dst = WharfRegistry::start().await;
    let source = Arc::new(MemorySource::of(&oci_image(24)));
    let other = oci_image(25).digest();
    let job = ImageJob::new(
        reference("bundle.example/team/app:v1").with_digest(other),
        reference(&format!("{}/app:v1", dst.host)),
    );
    let report = Transfer::from_source(source, client(), Options::default(), Arc::new(NoEvents))
        .run(vec![job])
        .await
        .remove(0);
    assert_eq!(report.status, Status::Failed, "{report:?}");
    assert_eq!(report.error_cause, Some("source"), "{report:?}");
    assert!(
        report.error.as_deref().unwrap().contains("not here"),
        "{report:?}"
    );
    assert_eq!(report.hint(), None, "no registry advice for a file");
}

#[tokio::test]
async fn blobs_with_other_bytes_are_refused_by_the_destination() {
    let dst = WharfRegistry::start().await;
    let img = oci_image(22);
    let mut source = MemorySource::of(&img);
    let layer = img.layers()[0].digest();
    source.blobs.get_mut(&layer).unwrap()[0] ^= 0x01;

    let to = format!("{}/app:v1", dst.host);
    let report = copy_from(Arc::new(source), &to).await;

    assert_eq!(report.status, Status::Failed, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains(&layer.to_string()),
        "{report:?}"
    );
    let c = client();
    assert_eq!(
        c.head_blob(&dst.host, &repo("app"), &layer).await.unwrap(),
        None
    );
    assert!(c.get_manifest(&reference(&to)).await.is_err());
}

#[tokio::test]
async fn a_read_error_names_the_blob_and_pushes_nothing_of_it() {
    let dst = WharfRegistry::start().await;
    let img = oci_image(23);
    let mut source = MemorySource::of(&img);
    let layer = img.layers()[0].digest();
    source.broken = Some(layer.clone());

    let report = copy_from(Arc::new(source), &format!("{}/app:v1", dst.host)).await;

    assert_eq!(report.status, Status::Failed, "{report:?}");
    assert_eq!(report.error_cause, Some("source"), "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(error.contains(&layer.to_string()), "{error}");
    assert!(error.contains("disk gone"), "{error}");
    assert_eq!(
        client()
            .head_blob(&dst.host, &repo("app"), &layer)
            .await
            .unwrap(),
        None
    );
}
