//! Spec "Content Management" category: deleting tags and manifests (end-9)
//! and blobs (end-10), and refusing deletes when they are disabled.

mod common;

use common::*;
use wharf_registry::RegistryConfig;
use wharf_testkit::sha256_digest;

const REPO: &str = "conformance/management";

async fn registry_with_image(tags: &[&str]) -> (TestRegistry, Image) {
    let reg = TestRegistry::start().await;
    let img = image(1);
    reg.push_blobs(REPO, &img.blobs()).await;
    for tag in tags {
        reg.push_manifest(REPO, tag, &img.manifest).await;
    }
    (reg, img)
}

fn manifest_path(reference: &str) -> String {
    format!("/v2/{REPO}/manifests/{reference}")
}

fn blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

async fn listed_tags(reg: &TestRegistry) -> Vec<String> {
    let resp = reg.get(&format!("/v2/{REPO}/tags/list")).await;
    resp.expect_status(200, "end-8a: tags list of an existing repository");
    tags_of(&resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tag_is_202_and_removes_only_the_tag() {
    let (reg, img) = registry_with_image(&["keep", "drop"]).await;
    reg.delete(&manifest_path("drop"))
        .await
        .expect_status(202, "end-9: deleting a tag MUST be 202 Accepted");
    reg.get(&manifest_path("drop")).await.expect_error(
        404,
        &["MANIFEST_UNKNOWN"],
        "Deleting tags: a deleted tag will return 404",
    );
    reg.get(&manifest_path("keep"))
        .await
        .expect_status(200, "other tags of the manifest stay");
    reg.get(&manifest_path(&img.manifest.digest))
        .await
        .expect_status(200, "deleting a tag keeps the manifest by digest");
    assert_eq!(
        listed_tags(&reg).await,
        vec!["keep"],
        "end-8a: the tags list reflects the delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_manifest_by_digest_removes_it_and_its_tags() {
    let (reg, img) = registry_with_image(&["a", "b"]).await;
    reg.delete(&manifest_path(&img.manifest.digest))
        .await
        .expect_status(202, "end-9: deleting a manifest MUST be 202 Accepted");
    for reference in [img.manifest.digest.as_str(), "a", "b"] {
        reg.get(&manifest_path(reference)).await.expect_error(
            404,
            &["MANIFEST_UNKNOWN"],
            &format!("Deleting Manifests: {reference} must be 404 once the manifest is deleted"),
        );
        reg.head(&manifest_path(reference))
            .await
            .expect_status(404, "Deleting Manifests: HEAD is 404 too");
    }
    let tags = listed_tags(&reg).await;
    assert!(
        tags.is_empty(),
        "end-8a: tags of a deleted manifest are gone: {tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unknown_manifest_is_404() {
    let (reg, _img) = registry_with_image(&["v1"]).await;
    reg.delete(&manifest_path(&sha256_digest(b"never pushed")))
        .await
        .expect_error(
            404,
            &["MANIFEST_UNKNOWN"],
            "end-9: an unknown manifest cannot be deleted",
        );
    reg.delete(&manifest_path("nosuchtag")).await.expect_error(
        404,
        &["MANIFEST_UNKNOWN"],
        "end-9: an unknown tag cannot be deleted",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_in_an_unknown_repository_is_404() {
    let reg = TestRegistry::start().await;
    let digest = sha256_digest(b"x");
    reg.delete(&format!("/v2/no/such/repo/manifests/{digest}"))
        .await
        .expect_error(
            404,
            &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"],
            "Deleting Manifests: if the repository does not exist the response MUST be 404",
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_manifest_can_be_pushed_again() {
    let (reg, img) = registry_with_image(&["v1"]).await;
    reg.delete(&manifest_path(&img.manifest.digest))
        .await
        .expect_status(202, "end-9: delete");
    reg.push_manifest(REPO, "v1", &img.manifest).await;
    reg.get(&manifest_path("v1"))
        .await
        .expect_status(200, "a re-pushed manifest is served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_index_keeps_its_children() {
    let reg = TestRegistry::start().await;
    let children = [image(2), image(3)];
    let index = index_of(&[&children[0].manifest, &children[1].manifest]);
    reg.push_index(REPO, "multi", &children, &index).await;
    reg.delete(&manifest_path(&index.digest))
        .await
        .expect_status(202, "end-9: delete the index");
    for child in &children {
        reg.get(&manifest_path(&child.manifest.digest))
            .await
            .expect_status(200, "deleting an index does not delete its children");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_blob_is_202_then_404() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob(REPO, b"short-lived").await;
    reg.delete(&blob_path(&digest))
        .await
        .expect_status(202, "end-10: deleting a blob MUST be 202 Accepted");
    reg.get(&blob_path(&digest)).await.expect_error(
        404,
        &["BLOB_UNKNOWN"],
        "end-2: a deleted blob is 404",
    );
    reg.head(&blob_path(&digest))
        .await
        .expect_status(404, "end-2: HEAD of a deleted blob is 404");
    reg.delete(&blob_path(&digest)).await.expect_error(
        404,
        &["BLOB_UNKNOWN"],
        "end-10: deleting it again: the blob is not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_unknown_blob_is_404() {
    let reg = TestRegistry::start().await;
    reg.push_blob(REPO, b"exists").await;
    reg.delete(&blob_path(&sha256_digest(b"does not exist")))
        .await
        .expect_error(
            404,
            &["BLOB_UNKNOWN"],
            "end-10: if the blob is not found, 404 MUST be returned",
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_blob_can_be_pushed_again() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob(REPO, b"comes back").await;
    reg.delete(&blob_path(&digest))
        .await
        .expect_status(202, "end-10");
    reg.push_blob(REPO, b"comes back").await;
    reg.get(&blob_path(&digest))
        .await
        .expect_status(200, "a re-pushed blob is served again");
}

/// The official suite's clean-up: tags, then manifests newest first, then
/// blobs; each delete is immediate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cleanup_in_the_official_order() {
    let reg = TestRegistry::start().await;
    let children = [image(4), image(5)];
    let index = index_of(&[&children[0].manifest, &children[1].manifest]);
    reg.push_index(REPO, "index", &children, &index).await;
    reg.delete(&manifest_path("index"))
        .await
        .expect_status(202, "end-9: tag delete");
    reg.head(&manifest_path("index"))
        .await
        .expect_status(404, "tag delete is immediate");
    let manifests = [&index, &children[1].manifest, &children[0].manifest];
    for m in manifests {
        reg.delete(&manifest_path(&m.digest))
            .await
            .expect_status(202, "end-9: manifest delete");
        reg.head(&manifest_path(&m.digest))
            .await
            .expect_status(404, "manifest delete is immediate");
    }
    for blob in children.iter().flat_map(Image::blobs) {
        reg.delete(&blob_path(&blob.digest))
            .await
            .expect_status(202, "end-10: blob delete");
        reg.head(&blob_path(&blob.digest))
            .await
            .expect_status(404, "blob delete is immediate");
    }
}

mod deletes_disabled {
    use super::*;

    fn assert_refused(resp: &Resp, what: &str) {
        resp.expect_status_in(
            &[400, 405],
            &format!("{what}: when deletion is disabled the registry MUST answer 400 or 405"),
        );
        error_codes(resp);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_delete_is_refused_and_nothing_changes() {
        let config = RegistryConfig {
            delete_enabled: false,
            ..RegistryConfig::default()
        };
        let reg = TestRegistry::start_with(config).await;
        let img = image(6);
        reg.push_image(REPO, "v1", &img).await;
        assert_refused(&reg.delete(&manifest_path("v1")).await, "end-9 tag");
        assert_refused(
            &reg.delete(&manifest_path(&img.manifest.digest)).await,
            "end-9 manifest",
        );
        assert_refused(
            &reg.delete(&blob_path(&img.config.digest)).await,
            "end-10 blob",
        );
        reg.get(&manifest_path("v1"))
            .await
            .expect_status(200, "a refused delete changes nothing");
        reg.get(&blob_path(&img.config.digest))
            .await
            .expect_status(200, "a refused blob delete changes nothing");
    }
}
