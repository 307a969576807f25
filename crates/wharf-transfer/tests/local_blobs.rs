//! Blobs read from the caller ([`LocalBlobs`]) instead of the source
//! registry: what `wharf load` does with a verified bundle.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use common::proxy::CountingProxy;
use common::*;
use futures_util::stream::{self, StreamExt};
use wharf_oci::Digest;
use wharf_testkit::image::{push, Artifact};
use wharf_testkit::WharfRegistry;
use wharf_transfer::{BlobBody, LocalBlobs, NoEvents, Options, Status, Transfer};

/// Blobs in memory, each served in small chunks (as a file is read); a
/// blob listed in `broken` fails half-way with a read error.
#[derive(Default)]
struct MemoryBlobs {
    blobs: HashMap<Digest, Vec<u8>>,
    broken: Option<Digest>,
}

impl MemoryBlobs {
    fn of(image: &Artifact) -> MemoryBlobs {
        let blobs = image
            .blobs
            .iter()
            .map(|b| (b.digest(), b.bytes.clone()))
            .collect();
        MemoryBlobs {
            blobs,
            broken: None,
        }
    }
}

impl LocalBlobs for MemoryBlobs {
    fn open(&self, digest: &Digest) -> Option<BlobBody> {
        let bytes = self.blobs.get(digest)?.clone();
        let mut chunks: Vec<std::io::Result<Bytes>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        if self.broken.as_ref() == Some(digest) {
            chunks.truncate(chunks.len() / 2);
            chunks.push(Err(std::io::Error::other("disk gone")));
        }
        Some(stream::iter(chunks).boxed())
    }
}

async fn copy_with(local: MemoryBlobs, from: &str, to: &str) -> wharf_transfer::ImageReport {
    Transfer::new(client(), client(), Options::default(), Arc::new(NoEvents))
        .with_local_blobs(Arc::new(local))
        .run(vec![job(from, to)])
        .await
        .remove(0)
}

#[tokio::test]
async fn local_blobs_are_read_from_there_and_manifests_from_the_source() {
    let (src_reg, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let src = CountingProxy::start(&src_reg.host, None).await;
    let img = oci_image(21);
    push(&client(), &src_reg.host, &repo("app"), Some("v1"), &img).await;

    let report = copy_with(
        MemoryBlobs::of(&img),
        &format!("{}/app:v1", src.host),
        &format!("{}/app:v1", dst.host),
    )
    .await;

    assert_eq!(report.status, Status::Copied, "{report:?}");
    assert_eq!(report.bytes_sent, img.blob_bytes());
    let seen = src.seen();
    assert!(
        seen.iter().all(|s| !s.path.contains("/blobs/")),
        "no blob was asked of the source: {seen:?}"
    );
    assert!(seen.iter().any(|s| s.path.contains("/manifests/")));
    let copied = client()
        .get_manifest(&common::reference(&format!("{}/app:v1", dst.host)))
        .await
        .unwrap();
    assert_eq!(copied.bytes.to_vec(), img.manifest);
}

#[tokio::test]
async fn local_blobs_with_other_bytes_are_refused_by_the_destination() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let img = oci_image(22);
    push(&client(), &src.host, &repo("app"), Some("v1"), &img).await;
    let mut local = MemoryBlobs::of(&img);
    let layer = img.layers()[0].digest();
    local.blobs.get_mut(&layer).unwrap()[0] ^= 0x01;

    let report = copy_with(
        local,
        &format!("{}/app:v1", src.host),
        &format!("{}/app:v1", dst.host),
    )
    .await;

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
    assert!(c
        .get_manifest(&common::reference(&format!("{}/app:v1", dst.host)))
        .await
        .is_err());
}

#[tokio::test]
async fn a_read_error_names_the_blob_and_pushes_nothing_of_it() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let img = oci_image(23);
    push(&client(), &src.host, &repo("app"), Some("v1"), &img).await;
    let mut local = MemoryBlobs::of(&img);
    let layer = img.layers()[0].digest();
    local.broken = Some(layer.clone());

    let report = copy_with(
        local,
        &format!("{}/app:v1", src.host),
        &format!("{}/app:v1", dst.host),
    )
    .await;

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
