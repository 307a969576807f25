//! A cached repository serves only what the upstream serves for it: a blob
//! that the store holds for another repository (a private one, or another
//! cached one) is neither served nor revealed through the cache, and is
//! never linked into the cached repository.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::stream;
use http::StatusCode;
use wharf_oci::{Digest, RepositoryName};
use wharf_testkit::{eventually, pseudo_random, sha256_digest, WharfRegistry};

const REPO: &str = "coredns/coredns";

async fn setup() -> (WharfRegistry, Redirector, CacheServer) {
    let upstream = WharfRegistry::start().await;
    let redirector = Redirector::start(upstream.addr()).await;
    let cache = CacheServer::start(redirector.addr, CacheOptions::default()).await;
    (upstream, redirector, cache)
}

/// Store `bytes` in `repo` of the cache's storage, as a push would.
async fn store_blob(cache: &CacheServer, repo: &str, bytes: &[u8]) -> Digest {
    let repo: RepositoryName = repo.parse().unwrap();
    let digest: Digest = sha256_digest(bytes).parse().unwrap();
    let body = Bytes::from(bytes.to_vec());
    cache
        .store
        .put_blob(&repo, &digest, Box::pin(stream::iter([Ok(body)])))
        .await
        .expect("store a blob");
    digest
}

async fn linked(cache: &CacheServer, repo: &str, digest: &Digest) -> bool {
    let repo: RepositoryName = repo.parse().unwrap();
    cache
        .store
        .blob_size(&repo, digest)
        .await
        .unwrap()
        .is_some()
}

async fn head(cache: &CacheServer, path: &str) -> StatusCode {
    cache
        .http
        .head(cache.url(path))
        .send()
        .await
        .expect("the cache answers")
        .status()
}

#[tokio::test]
async fn a_private_blob_is_not_readable_through_a_cached_repository() {
    let (_upstream, redirector, cache) = setup().await;
    let secret = pseudo_random(70, 4096);
    let digest = store_blob(&cache, "private/app", &secret).await;
    let cached = format!("{UPSTREAM_HOST}/anything");

    for path in [
        format!("/v2/{cached}/blobs/{digest}"),
        format!("/v2/anything/blobs/{digest}?ns={UPSTREAM_HOST}"),
    ] {
        let r = cache.get(&path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(
            error_codes(&r.bytes().await.unwrap()),
            ["BLOB_UNKNOWN"],
            "GET {path}: the upstream's answer, as for a blob nobody has"
        );
        assert_eq!(
            head(&cache, &path).await,
            StatusCode::NOT_FOUND,
            "HEAD {path} must not reveal that the store holds the blob"
        );
    }
    let upstream_path = format!("/v2/anything/blobs/{digest}");
    assert_eq!(
        redirector.count("GET", &upstream_path),
        2,
        "each GET went to the upstream"
    );
    assert_eq!(redirector.count("HEAD", &upstream_path), 2);
    assert!(
        !linked(&cache, &cached, &digest).await,
        "the private blob must not be linked into the cached repository"
    );
    assert!(linked(&cache, "private/app", &digest).await);
}

#[tokio::test]
async fn a_blob_the_upstream_serves_is_fetched_for_the_repository_even_when_stored() {
    let (upstream, redirector, cache) = setup().await;
    let image = image(71, 20_000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    // The same bytes were pushed into a private repository first.
    let digest = store_blob(&cache, "private/app", &image.layer().bytes).await;

    let path = format!("/v2/{REPO}/blobs/{digest}?ns={UPSTREAM_HOST}");
    let (status, body) = cache.get_body(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &image.layer().bytes[..]);
    assert_eq!(
        redirector.count("GET", &format!("/v2/{REPO}/blobs/{digest}")),
        1,
        "served only after the upstream served it for this repository"
    );
    let cached = format!("{UPSTREAM_HOST}/{REPO}");
    assert!(
        eventually(std::time::Duration::from_secs(5), || linked(
            &cache, &cached, &digest
        ))
        .await,
        "the verified fetch links the blob into the cached repository"
    );
    // From now on the repository's own link answers, without the upstream.
    let before = redirector.total();
    let (status, body) = cache.get_body(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &image.layer().bytes[..]);
    assert_eq!(head(&cache, &path).await, StatusCode::OK);
    assert_eq!(redirector.total(), before);
}

#[tokio::test]
async fn a_blob_cached_for_one_repository_is_not_served_for_another() {
    let (upstream, redirector, cache) = setup().await;
    let image = image(72, 10_000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let digest = image.layer().digest().to_string();
    let (status, _) = cache
        .get_body(&format!("/v2/{REPO}/blobs/{digest}?ns={UPSTREAM_HOST}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            cache.has_blob(&digest).await
        })
        .await
    );

    // The upstream has no such blob under another name: neither has the cache.
    let other = format!("/v2/{UPSTREAM_HOST}/other/blobs/{digest}");
    let r = cache.get(&other).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["BLOB_UNKNOWN"]);
    assert_eq!(head(&cache, &other).await, StatusCode::NOT_FOUND);
    assert_eq!(
        redirector.count("GET", &format!("/v2/other/blobs/{digest}")),
        1
    );
    let digest: Digest = digest.parse().unwrap();
    assert!(!linked(&cache, &format!("{UPSTREAM_HOST}/other"), &digest).await);
}
