//! The pull-through cache against a real upstream wharf behind a redirector
//! that sends every blob GET elsewhere with a 307.

mod common;

use std::time::Duration;

use common::*;
use futures_util::future::join_all;
use futures_util::StreamExt;
use http::StatusCode;
use wharf_oci::media_type::OCI_MANIFEST;
use wharf_testkit::{eventually, sha256_digest, WharfRegistry};

const REPO: &str = "coredns/coredns";

async fn setup(options: CacheOptions) -> (WharfRegistry, Redirector, CacheServer) {
    let upstream = WharfRegistry::start().await;
    let redirector = Redirector::start(upstream.addr()).await;
    let cache = CacheServer::start(redirector.addr, options).await;
    (upstream, redirector, cache)
}

fn manifest_path(reference: &str) -> String {
    format!("/v2/{REPO}/manifests/{reference}?ns={UPSTREAM_HOST}")
}

fn blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}?ns={UPSTREAM_HOST}")
}

fn upstream_blob_path(digest: &str) -> String {
    format!("/v2/{REPO}/blobs/{digest}")
}

#[tokio::test]
async fn pulls_by_tag_and_digest_byte_exact_through_redirects() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let oci = image(1, 300_000, false);
    let docker = image(2, 1000, true);
    push_upstream(&upstream, REPO, "v1", &oci).await;
    push_upstream(&upstream, REPO, "docker", &docker).await;

    for (tag, image) in [("v1", &oci), ("docker", &docker)] {
        let r = cache.get(&manifest_path(tag)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], image.media_type);
        assert_eq!(
            r.headers()["docker-content-digest"],
            image.digest().to_string().as_str()
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(
            &body[..],
            &image.manifest[..],
            "manifest bytes must be exact"
        );
        // By digest, and path-prefixed instead of ?ns=.
        let (status, body) = cache
            .get_body(&format!(
                "/v2/{UPSTREAM_HOST}/{REPO}/manifests/{}",
                image.digest()
            ))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sha256_digest(&body.unwrap()), image.digest().to_string());
        for blob in [&image.config().bytes, &image.layer().bytes] {
            let digest = sha256_digest(blob);
            let r = cache.get(&blob_path(&digest)).await;
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "never a redirect to the requester"
            );
            assert_eq!(sha256_digest(&r.bytes().await.unwrap()), digest);
            assert_eq!(
                redirector.count("GET", &upstream_blob_path(&digest)),
                1,
                "the upstream answered the blob GET with a 307 that the cache followed"
            );
        }
    }

    // Everything again: served from storage, the upstream sees nothing new
    // but tag checks (none within the TTL).
    let before = redirector.total();
    assert_eq!(
        cache.get_body(&manifest_path("v1")).await.1.unwrap(),
        &oci.manifest[..]
    );
    let (status, body) = cache
        .get_body(&blob_path(&oci.layer().digest().to_string()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &oci.layer().bytes[..]);
    assert_eq!(
        redirector.total(),
        before,
        "a warm pull must not reach the upstream"
    );
    assert!(cache.metric("wharf_cache_hits_total") >= 2);
    assert!(cache.metric("wharf_cache_upstream_bytes_total") >= oci.layer().bytes.len() as u64);
}

#[tokio::test]
async fn head_of_a_missing_blob_asks_upstream_and_stores_nothing() {
    let (upstream, _redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(3, 5000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let r = cache
        .http
        .head(cache.url(&blob_path(&image.layer().digest().to_string())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let size = image.layer().bytes.len().to_string();
    assert_eq!(r.headers()["content-length"], size.as_str());
    assert!(!cache.has_blob(&image.layer().digest().to_string()).await);
    let unknown = sha256_digest(b"nothing like this upstream");
    let r = cache.get(&blob_path(&unknown)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["BLOB_UNKNOWN"]);
}

#[tokio::test]
async fn twenty_parallel_pulls_of_one_blob_make_one_upstream_fetch() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(4, 8 * 1024 * 1024, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let digest = image.layer().digest().to_string();
    let path = blob_path(&digest);
    let bodies = join_all((0..20).map(|_| cache.get_body(&path))).await;
    for (status, body) in bodies {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sha256_digest(&body.expect("whole body")), digest);
    }
    assert_eq!(redirector.count("GET", &upstream_blob_path(&digest)), 1);
    assert!(
        eventually(Duration::from_secs(10), || cache.has_blob(&digest)).await,
        "the download is committed to storage"
    );
}

/// Twenty nodes asking for a tag the cache does not hold yet: one manifest
/// GET upstream, and no `/v2/` ping before it (the endpoint's scheme is
/// written in the configuration, so there is nothing to probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_pulls_of_a_new_tag_make_one_upstream_request() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(12, 1000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    redirector.set_mode(Mode::ManifestsWait);
    let path = manifest_path("v1");
    let pulls = tokio::spawn({
        let urls: Vec<String> = (0..20).map(|_| cache.url(&path)).collect();
        async move {
            let http = reqwest::Client::new();
            join_all(urls.into_iter().map(|u| {
                let request = http.get(u).send();
                async move {
                    let r = request.await.unwrap();
                    (r.status(), r.bytes().await.unwrap())
                }
            }))
            .await
        }
    });
    let upstream_path = format!("/v2/{REPO}/manifests/v1");
    assert!(
        eventually(Duration::from_secs(10), || async {
            redirector.count("GET", &upstream_path) == 1
                && cache.metric("wharf_cache_upstream_joined_total") == 19
        })
        .await,
        "19 requests wait for the first one's upstream GET: {} GETs, {} joined",
        redirector.count("GET", &upstream_path),
        cache.metric("wharf_cache_upstream_joined_total")
    );
    redirector.release_manifest();
    for (status, body) in pulls.await.unwrap() {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], &image.manifest[..]);
    }
    assert_eq!(redirector.count("GET", &upstream_path), 1);
    assert_eq!(redirector.count("GET", "/v2/"), 0, "no ping upstream");
    assert_eq!(
        redirector.total(),
        1,
        "the manifest GET was the only request upstream"
    );
}

#[tokio::test]
async fn first_bytes_reach_the_requester_before_the_upstream_finished() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(5, 2 * 1024 * 1024, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    redirector.set_mode(Mode::HalfThenWait);
    let digest = image.layer().digest().to_string();
    let r = cache.get(&blob_path(&digest)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the first bytes arrive while the upstream still holds back half")
        .expect("a chunk")
        .expect("no error");
    assert!(!first.is_empty());
    assert!(
        !cache.has_blob(&digest).await,
        "nothing committed before the end"
    );
    redirector.release();
    let mut received = first.to_vec();
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("the rest arrives"));
    }
    assert_eq!(sha256_digest(&received), digest);
}

#[tokio::test]
async fn serves_the_cache_when_the_upstream_is_gone() {
    let options = CacheOptions {
        tag_ttl: Duration::ZERO,
        ..CacheOptions::default()
    };
    let (upstream, redirector, cache) = setup(options).await;
    let image = image(6, 10_000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    assert_eq!(cache.get_body(&manifest_path("v1")).await.0, StatusCode::OK);
    let layer_digest = image.layer().digest().to_string();
    let (_, layer) = cache.get_body(&blob_path(&layer_digest)).await;
    assert_eq!(sha256_digest(&layer.unwrap()), layer_digest);
    assert!(eventually(Duration::from_secs(10), || cache.has_blob(&layer_digest)).await);

    // With a TTL of zero every pull by tag asks upstream (HEAD only).
    assert_eq!(cache.get_body(&manifest_path("v1")).await.0, StatusCode::OK);
    assert_eq!(
        redirector.count("HEAD", &format!("/v2/{REPO}/manifests/v1")),
        1
    );
    assert_eq!(
        redirector.count("GET", &format!("/v2/{REPO}/manifests/v1")),
        1
    );

    redirector.stop();
    assert_eq!(cache.metric("wharf_cache_stale_serves_total"), 0);
    let (status, body) = cache.get_body(&manifest_path("v1")).await;
    assert_eq!(status, StatusCode::OK, "a stale tag beats a failed pull");
    assert_eq!(&body.unwrap()[..], &image.manifest[..]);
    assert_eq!(cache.metric("wharf_cache_stale_serves_total"), 1);
    let (status, layer) = cache
        .get_body(&blob_path(&image.layer().digest().to_string()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sha256_digest(&layer.unwrap()),
        image.layer().digest().to_string()
    );
    // A tag never cached cannot be served.
    let r = cache.get(&manifest_path("v2")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_UNKNOWN"]);
}

#[tokio::test]
async fn a_moved_tag_is_fetched_again_after_its_ttl() {
    let options = CacheOptions {
        tag_ttl: Duration::ZERO,
        ..CacheOptions::default()
    };
    let (upstream, _redirector, cache) = setup(options).await;
    let (old, new) = (image(7, 100, false), image(8, 100, false));
    push_upstream(&upstream, REPO, "v1", &old).await;
    assert_eq!(
        cache.get_body(&manifest_path("v1")).await.1.unwrap(),
        &old.manifest[..]
    );
    push_upstream(&upstream, REPO, "v1", &new).await;
    assert_eq!(
        cache.get_body(&manifest_path("v1")).await.1.unwrap(),
        &new.manifest[..]
    );
    // The old manifest stays reachable by digest.
    let (status, body) = cache
        .get_body(&manifest_path(&old.digest().to_string()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &old.manifest[..]);
}

#[tokio::test]
async fn pushes_into_cached_repositories_are_refused() {
    let (_upstream, _redirector, cache) = setup(CacheOptions::default()).await;
    let r = cache
        .http
        .post(cache.url(&format!("/v2/{UPSTREAM_HOST}/{REPO}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["DENIED"]);
    let r = cache
        .http
        .put(cache.url(&format!("/v2/{UPSTREAM_HOST}/{REPO}/manifests/v1")))
        .header("content-type", OCI_MANIFEST)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Repositories outside every upstream take pushes as always.
    let r = cache
        .http
        .post(cache.url("/v2/local/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn pushes_are_accepted_where_allowed() {
    let options = CacheOptions {
        allow_push: true,
        ..CacheOptions::default()
    };
    let (_upstream, _redirector, cache) = setup(options).await;
    let r = cache
        .http
        .post(cache.url(&format!("/v2/{UPSTREAM_HOST}/{REPO}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

/// A blob GET in `mode` fails without storing anything; back to normal, the
/// next request succeeds.
async fn blob_failure_then_retry(mode: Mode, expect_status: Option<StatusCode>) {
    let options = CacheOptions {
        read_timeout: Duration::from_millis(500),
        ..CacheOptions::default()
    };
    let (upstream, redirector, cache) = setup(options).await;
    let image = image(9, 200_000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let digest = image.layer().digest().to_string();
    redirector.set_mode(mode);
    let r = cache.get(&blob_path(&digest)).await;
    match expect_status {
        Some(status) => {
            assert_eq!(r.status(), status, "{mode:?}");
            let codes = error_codes(&r.bytes().await.unwrap());
            assert_eq!(codes, ["BLOB_UNKNOWN"], "{mode:?}");
        }
        // The failure shows only at the end of the download: a requester
        // that is told before its headers went out gets a spec error, one
        // already streaming gets a body that breaks off, never wrong bytes
        // that look complete.
        None if r.status() == StatusCode::OK => match r.bytes().await {
            Err(_) => {}
            Ok(body) => panic!(
                "{mode:?}: a body of {} bytes arrived complete (hash {})",
                body.len(),
                sha256_digest(&body)
            ),
        },
        None => {
            assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{mode:?}");
            let codes = error_codes(&r.bytes().await.unwrap());
            assert_eq!(codes, ["BLOB_UNKNOWN"], "{mode:?}");
        }
    }
    assert!(!cache.has_blob(&digest).await, "{mode:?}: nothing stored");
    assert!(
        eventually(Duration::from_secs(10), || async {
            cache.uploads().await == 0
        })
        .await,
        "{mode:?}: the failed download left its upload behind"
    );
    assert!(cache.metric("wharf_cache_upstream_errors_total") >= 1);
    redirector.set_mode(Mode::Normal);
    // The failed download leaves the table just after its requester heard.
    let last = std::sync::Mutex::new(None);
    let retried = eventually(Duration::from_secs(10), || {
        let path = blob_path(&digest);
        let (cache, last) = (&cache, &last);
        async move {
            let (status, body) = cache.get_body(&path).await;
            match body {
                Ok(body) if status == StatusCode::OK => {
                    *last.lock().unwrap() = Some(body);
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    assert!(retried, "{mode:?}: the retry never succeeded");
    let body = last.into_inner().unwrap().expect("the successful body");
    assert_eq!(sha256_digest(&body), digest, "{mode:?}");
}

#[tokio::test]
async fn wrong_digest_is_never_served_or_stored() {
    blob_failure_then_retry(Mode::WrongDigest, None).await;
}

#[tokio::test]
async fn truncated_body_is_never_served_or_stored() {
    blob_failure_then_retry(Mode::Truncated, None).await;
}

#[tokio::test]
async fn redirect_loop_fails_cleanly() {
    blob_failure_then_retry(Mode::RedirectLoop, Some(StatusCode::BAD_GATEWAY)).await;
}

#[tokio::test]
async fn redirect_to_ftp_fails_cleanly() {
    blob_failure_then_retry(Mode::FtpRedirect, Some(StatusCode::BAD_GATEWAY)).await;
}

#[tokio::test]
async fn silent_upstream_times_out() {
    blob_failure_then_retry(Mode::Silent, Some(StatusCode::GATEWAY_TIMEOUT)).await;
}

#[tokio::test]
async fn enormous_manifest_fails_cleanly_and_is_not_stored() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(10, 100, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    redirector.set_mode(Mode::HugeManifest);
    let r = cache.get(&manifest_path("v1")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_UNKNOWN"]);
    let repo = format!("{UPSTREAM_HOST}/{REPO}").parse().unwrap();
    assert!(cache
        .store
        .manifest_get(&repo, &wharf_oci::Target::Tag("v1".parse().unwrap()))
        .await
        .is_err());
    redirector.set_mode(Mode::Normal);
    let (status, body) = cache.get_body(&manifest_path("v1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &image.manifest[..]);
}

#[tokio::test]
async fn silent_upstream_on_a_manifest_times_out_and_the_next_pull_retries() {
    let options = CacheOptions {
        read_timeout: Duration::from_millis(500),
        ..CacheOptions::default()
    };
    let (upstream, redirector, cache) = setup(options).await;
    let image = image(11, 100, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    redirector.set_mode(Mode::Silent);
    let r = cache.get(&manifest_path("v1")).await;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error_codes(&r.bytes().await.unwrap()), ["MANIFEST_UNKNOWN"]);
    assert!(!cache.has_manifest(REPO, &image.digest().to_string()).await);
    redirector.set_mode(Mode::Normal);
    let (status, body) = cache.get_body(&manifest_path("v1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &image.manifest[..]);
}

#[tokio::test]
async fn a_range_of_an_uncached_blob_is_answered_206_from_the_download() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(12, 1024 * 1024, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let digest = image.layer().digest().to_string();
    let r = cache
        .http
        .get(cache.url(&blob_path(&digest)))
        .header("range", "bytes=1000-199999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-199999/{}", image.layer().bytes.len())
    );
    assert_eq!(r.headers()["content-length"], "199000");
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &image.layer().bytes[1000..200_000]
    );
    assert_eq!(redirector.count("GET", &upstream_blob_path(&digest)), 1);
    // The whole blob was fetched and kept: the next range comes from storage.
    assert!(eventually(Duration::from_secs(10), || cache.has_blob(&digest)).await);
    let r = cache
        .http
        .get(cache.url(&blob_path(&digest)))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &image.layer().bytes[image.layer().bytes.len() - 10..]
    );
    assert_eq!(redirector.count("GET", &upstream_blob_path(&digest)), 1);
}

#[tokio::test]
async fn an_unsatisfiable_range_of_an_uncached_blob_is_416() {
    let (upstream, _redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(13, 5000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let r = cache
        .http
        .get(cache.url(&blob_path(&image.layer().digest().to_string())))
        .header("range", format!("bytes={}-", image.layer().bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let unsatisfied = format!("bytes */{}", image.layer().bytes.len());
    assert_eq!(r.headers()["content-range"], unsatisfied.as_str());
}

#[tokio::test]
async fn a_range_of_a_wrong_upstream_blob_never_arrives_complete() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(14, 300_000, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    let digest = image.layer().digest().to_string();
    // The wrong byte is the last one: a range that stops short of it would
    // carry right-looking bytes of a blob that is not the digest's.
    redirector.set_mode(Mode::WrongDigest);
    let r = cache
        .http
        .get(cache.url(&blob_path(&digest)))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::PARTIAL_CONTENT {
        assert!(
            r.bytes().await.is_err(),
            "a range of a wrong blob completed"
        );
    } else {
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(error_codes(&r.bytes().await.unwrap()), ["BLOB_UNKNOWN"]);
    }
    assert!(!cache.has_blob(&digest).await);
}

#[tokio::test]
async fn garbage_collection_leaves_a_download_in_flight_alone() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let image = image(15, 2 * 1024 * 1024, false);
    push_upstream(&upstream, REPO, "v1", &image).await;
    redirector.set_mode(Mode::HalfThenWait);
    let digest = image.layer().digest().to_string();
    let r = cache.get(&blob_path(&digest)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut body = r.bytes_stream();
    let first = body.next().await.expect("a chunk").expect("no error");
    assert_eq!(
        cache.uploads().await,
        1,
        "the download writes into an upload"
    );
    // The harshest collection: every unreferenced blob and every upload is
    // old enough to go.
    let options = wharf_storage::GcOptions {
        grace: Duration::ZERO,
        settle: Duration::ZERO,
        upload_max_age: Duration::ZERO,
        ..wharf_storage::GcOptions::default()
    };
    let report = cache.store.gc(&options).await.expect("gc runs");
    assert_eq!(report.uploads.count, 0, "the upload in flight was removed");
    redirector.release();
    let mut received = first.to_vec();
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("the rest arrives"));
    }
    assert_eq!(sha256_digest(&received), digest);
    assert!(eventually(Duration::from_secs(10), || cache.has_blob(&digest)).await);
}

#[tokio::test]
async fn cached_images_not_pulled_for_max_age_are_collected_and_fetched_again() {
    let (upstream, redirector, cache) = setup(CacheOptions::default()).await;
    let (hot, cold) = (image(16, 50_000, false), image(17, 60_000, true));
    push_upstream(&upstream, REPO, "hot", &hot).await;
    push_upstream(&upstream, REPO, "cold", &cold).await;
    for (tag, image) in [("hot", &hot), ("cold", &cold)] {
        assert_eq!(cache.get_body(&manifest_path(tag)).await.0, StatusCode::OK);
        for blob in [
            image.config().digest().to_string(),
            image.layer().digest().to_string(),
        ] {
            let (status, body) = cache.get_body(&blob_path(&blob)).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(sha256_digest(&body.unwrap()), blob);
            assert!(eventually(Duration::from_secs(10), || cache.has_blob(&blob)).await);
        }
    }
    // Both were first cached two hours ago; only `hot` is pulled again now.
    let two_hours = Duration::from_secs(2 * 3600);
    cache.last_pulled(REPO, &hot.digest().to_string(), two_hours);
    cache.last_pulled(REPO, &cold.digest().to_string(), two_hours);
    assert_eq!(
        cache.get_body(&manifest_path("hot")).await.0,
        StatusCode::OK
    );

    let mut rule = wharf_storage::RetentionRule::new(&format!("{UPSTREAM_HOST}/**")).unwrap();
    rule.max_age = Some(Duration::from_secs(3600));
    let options = wharf_storage::GcOptions {
        grace: Duration::ZERO,
        settle: Duration::ZERO,
        retention: vec![rule],
        ..wharf_storage::GcOptions::default()
    };
    let report = cache.store.gc(&options).await.expect("gc runs");
    assert_eq!(report.manifests.count, 1, "{:?}", report.removed);
    assert!(!cache.has_manifest(REPO, &cold.digest().to_string()).await);
    assert!(!cache.has_blob(&cold.layer().digest().to_string()).await);
    assert!(!cache.has_blob(&cold.config().digest().to_string()).await);
    assert!(cache.has_manifest(REPO, &hot.digest().to_string()).await);
    assert!(cache.has_blob(&hot.layer().digest().to_string()).await);
    assert!(cache.has_blob(&hot.config().digest().to_string()).await);

    // Pulled again, the collected image comes from upstream once more.
    let manifest_gets = redirector.count("GET", &format!("/v2/{REPO}/manifests/cold"));
    let (status, body) = cache.get_body(&manifest_path("cold")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], &cold.manifest[..]);
    assert_eq!(
        redirector.count("GET", &format!("/v2/{REPO}/manifests/cold")),
        manifest_gets + 1
    );
    let layer = cold.layer().digest().to_string();
    let (status, body) = cache.get_body(&blob_path(&layer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sha256_digest(&body.unwrap()), layer);
    assert_eq!(redirector.count("GET", &upstream_blob_path(&layer)), 2);
}
