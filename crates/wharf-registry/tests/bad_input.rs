//! Hostile and broken input: invalid names, path traversal, malformed and
//! truncated bodies, lying lengths, vanishing clients. The registry must
//! answer with the spec's 4xx codes and keep serving.

mod common;

use common::raw;
use common::*;
use reqwest::{Method, Url};
use serde_json::json;
use wharf_testkit::{pseudo_random, sha256_digest};

const REPO: &str = "hostile/input";

/// The server still answers and still accepts a complete push.
async fn assert_still_serving(reg: &TestRegistry) {
    reg.get("/v2/")
        .await
        .expect_status(200, "the registry must keep serving after bad input");
    let data = pseudo_random(777, 2048);
    let digest = reg.push_blob("health/check", &data).await;
    let resp = reg.get(&format!("/v2/health/check/blobs/{digest}")).await;
    assert_eq!(
        resp.body.as_ref(),
        data.as_slice(),
        "a push after bad input round-trips"
    );
}

/// The temporary directory holds the store and nothing that escaped it.
fn assert_nothing_escaped(reg: &TestRegistry) {
    let entries: Vec<String> = std::fs::read_dir(reg.dir())
        .expect("read the temporary directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        entries,
        vec!["store"],
        "no request may write outside the store root"
    );
}

fn assert_refused_raw(resp: &raw::RawResponse, allowed: &[u16], why: &str) {
    assert!(
        allowed.contains(&resp.status),
        "{why}: got {} (body: {})",
        resp.status,
        resp.text()
    );
}

mod names {
    use super::*;

    const INVALID: [&str; 9] = [
        "UPPER",
        "Mixed/case",
        "-lead",
        "trail-",
        "a..b",
        "a___b",
        "a//b",
        "a/",
        "a.-b",
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_repository_names_are_400_name_invalid() {
        let reg = TestRegistry::start().await;
        let digest = sha256_digest(b"x");
        for name in INVALID {
            for (method, target) in [
                ("GET", format!("/v2/{name}/manifests/latest")),
                ("GET", format!("/v2/{name}/blobs/{digest}")),
                ("GET", format!("/v2/{name}/tags/list")),
                ("POST", format!("/v2/{name}/blobs/uploads/")),
            ] {
                let resp = raw::request(reg.addr(), method, &target, &[], b"").await;
                assert_refused_raw(
                    &resp,
                    &[400],
                    &format!("{method} {target}: <name> must match the spec regex"),
                );
                let body: serde_json::Value =
                    serde_json::from_slice(&resp.body).expect("JSON error body");
                assert_eq!(
                    body["errors"][0]["code"],
                    json!("NAME_INVALID"),
                    "{target}: NAME_INVALID"
                );
            }
        }
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ns_with_an_invalid_host_is_400() {
        let reg = TestRegistry::start().await;
        reg.get("/v2/library/alpine/manifests/latest?ns=bad/host")
            .await
            .expect_error(
                400,
                &["NAME_INVALID"],
                "an ns value that is no host name is refused",
            );
    }
}

mod traversal {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dot_segments_never_reach_the_filesystem() {
        let reg = TestRegistry::start().await;
        let digest = sha256_digest(b"x");
        let targets = [
            format!("/v2/../../etc/passwd/blobs/{digest}"),
            "/v2/../../../../etc/passwd/manifests/latest".to_string(),
            "/v2/%2e%2e/%2e%2e/etc/manifests/latest".to_string(),
            "/v2/%2E%2E%2F%2E%2E%2Fetc/tags/list".to_string(),
            format!("/v2/a/..%2f..%2f..%2fescaped/blobs/{digest}"),
            "/v2/a/blobs/uploads/..%2f..%2f..%2fescaped".to_string(),
            "/v2/a/blobs/uploads/../../../escaped".to_string(),
        ];
        for target in &targets {
            let resp = raw::request(reg.addr(), "GET", target, &[], b"").await;
            assert_refused_raw(
                &resp,
                &[400, 404],
                &format!("GET {target}: traversal must be refused"),
            );
        }
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traversal_writes_are_refused_and_nothing_escapes() {
        let reg = TestRegistry::start().await;
        let img = image(1);
        let writes = [
            ("PUT", "/v2/..%2f..%2fescaped/manifests/latest".to_string()),
            ("PUT", "/v2/../../escaped/manifests/latest".to_string()),
            ("POST", "/v2/%2e%2e/escaped/blobs/uploads/".to_string()),
            (
                "PATCH",
                "/v2/a/blobs/uploads/..%2f..%2f..%2fescaped".to_string(),
            ),
            (
                "PUT",
                format!(
                    "/v2/a/blobs/uploads/..%2F..%2F..%2Fescaped?digest={}",
                    sha256_digest(b"x")
                ),
            ),
        ];
        for (method, target) in &writes {
            let headers = [("Content-Type", OCI_MANIFEST)];
            let resp = raw::request(reg.addr(), method, target, &headers, &img.manifest.body).await;
            assert_refused_raw(
                &resp,
                &[400, 404],
                &format!("{method} {target}: traversal must be refused"),
            );
        }
        assert_nothing_escaped(&reg);
        assert_still_serving(&reg).await;
    }
}

mod malformed_bodies {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifests_of_the_wrong_shape_are_400() {
        let reg = TestRegistry::start().await;
        let bodies = [
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "nope", "layers": []}),
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": {}}),
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": OCI_CONFIG, "digest": "nope", "size": 2}, "layers": []}),
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": "nope"}),
        ];
        for body in &bodies {
            let media_type = body["mediaType"].as_str().expect("mediaType");
            let bytes = serde_json::to_vec(body).expect("serialise");
            let resp = reg.put_manifest(REPO, "shape", media_type, &bytes).await;
            resp.expect_error(
                400,
                &["MANIFEST_INVALID", "DIGEST_INVALID"],
                &format!("end-7: {body} is not a valid manifest"),
            );
        }
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deeply_nested_and_binary_bodies_are_400() {
        let reg = TestRegistry::start().await;
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let binary = pseudo_random(5, 4096);
        for body in [nested.as_bytes(), binary.as_slice()] {
            reg.put_manifest(REPO, "weird", OCI_MANIFEST, body)
                .await
                .expect_error(
                    400,
                    &["MANIFEST_INVALID"],
                    "end-7: a body that is no manifest must be 400 MANIFEST_INVALID",
                );
        }
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_manifest_body_is_refused() {
        let reg = TestRegistry::start().await;
        let img = image(2);
        reg.push_blobs(REPO, &img.blobs()).await;
        let length = img.manifest.body.len().to_string();
        let headers = [
            ("Content-Type", OCI_MANIFEST),
            ("Content-Length", length.as_str()),
        ];
        let mut request = raw::head("PUT", &format!("/v2/{REPO}/manifests/cut"), &headers);
        request.extend_from_slice(&img.manifest.body[..img.manifest.body.len() / 2]);
        if let Some(resp) = raw::send_truncated(reg.addr(), &request).await {
            assert_refused_raw(
                &resp,
                &[400],
                "a body shorter than Content-Length must be refused",
            );
        }
        reg.head(&format!("/v2/{REPO}/manifests/cut"))
            .await
            .expect_status(404, "a truncated manifest must not be stored");
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_blob_body_is_refused() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(3, 10_000);
        let digest = sha256_digest(&data);
        let target = format!("/v2/{REPO}/blobs/uploads/?digest={digest}");
        let headers = [("Content-Type", OCTET_STREAM), ("Content-Length", "10000")];
        let mut request = raw::head("POST", &target, &headers);
        request.extend_from_slice(&data[..100]);
        if let Some(resp) = raw::send_truncated(reg.addr(), &request).await {
            assert_refused_raw(
                &resp,
                &[400],
                "a blob body shorter than Content-Length must be refused",
            );
        }
        reg.head(&format!("/v2/{REPO}/blobs/{digest}"))
            .await
            .expect_status(404, "a truncated blob must not exist");
        assert_still_serving(&reg).await;
    }
}

mod lying_lengths {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_manifest_length_claim_is_413_without_reading() {
        let reg = TestRegistry::start().await;
        let headers = [
            ("Content-Type", OCI_MANIFEST),
            ("Content-Length", "1000000000000"),
        ];
        let request = raw::head("PUT", &format!("/v2/{REPO}/manifests/huge"), &headers);
        let resp = raw::exchange(reg.addr(), &request)
            .await
            .expect("a manifest over the limit must be answered from its Content-Length");
        assert_refused_raw(
            &resp,
            &[413],
            "end-7: a claimed size over the manifest limit is 413",
        );
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn huge_blob_length_claims_do_not_hurt() {
        let reg = TestRegistry::start().await;
        let digest = sha256_digest(b"x");
        for length in [
            "1000000000000000000",
            "99999999999999999999999",
            "-1",
            "abc",
        ] {
            let headers = [("Content-Type", OCTET_STREAM), ("Content-Length", length)];
            let target = format!("/v2/{REPO}/blobs/uploads/?digest={digest}");
            let mut request = raw::head("POST", &target, &headers);
            request.extend_from_slice(b"x");
            if let Some(resp) = raw::send_truncated(reg.addr(), &request).await {
                assert_refused_raw(
                    &resp,
                    &[400, 413],
                    &format!("Content-Length {length} with a 1-byte body"),
                );
            }
        }
        reg.head(&format!("/v2/{REPO}/blobs/{digest}"))
            .await
            .expect_status(404, "no blob comes out of a lying length");
        assert_still_serving(&reg).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_vanishing_mid_upload_leaves_the_server_healthy() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        let target = upload_target(&upload);
        let headers = [
            ("Content-Type", OCTET_STREAM),
            ("Content-Range", "0-999999"),
            ("Content-Length", "1000000"),
        ];
        let mut request = raw::head("PATCH", &target, &headers);
        request.extend_from_slice(&pseudo_random(4, 64 * 1024));
        raw::send_and_vanish(reg.addr(), &request).await;
        assert_still_serving(&reg).await;
        let status = reg.get_url(upload).await;
        assert!(
            status.status() == 204 || status.status() == 404,
            "end-13: an interrupted upload is either still active or gone, got {}",
            status.status()
        );
    }

    fn upload_target(upload: &Url) -> String {
        match upload.query() {
            Some(q) => format!("{}?{q}", upload.path()),
            None => upload.path().to_string(),
        }
    }
}

mod uploads {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_url_of_another_repository_is_404() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload("repo/a").await;
        let id = upload
            .path()
            .rsplit('/')
            .next()
            .expect("upload id")
            .to_string();
        let foreign = reg.url(&format!("/v2/repo/b/blobs/uploads/{id}"));
        let data = b"belongs to a".to_vec();
        for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            let request = reg.request(
                method.clone(),
                with_query(&foreign, "digest", &sha256_digest(&data)),
            );
            reg.send(request.body(data.clone())).await.expect_error(
                404,
                &["BLOB_UPLOAD_UNKNOWN"],
                &format!("{method}: an upload of repo/a is unknown under repo/b"),
            );
        }
        let done = reg
            .close_upload(&upload, &sha256_digest(&data), data.clone())
            .await;
        done.expect_status(201, "the upload still completes in its own repository");
        reg.head(&format!("/v2/repo/b/blobs/{}", sha256_digest(&data)))
            .await
            .expect_status(404, "nothing was written to repo/b");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_content_ranges_are_refused_and_the_upload_is_unchanged() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &[7u8; 10])
            .await
            .expect_status(202, "end-5: first chunk");
        for range in ["garbage", "20-10", "10-29", "10-", "-5", "bytes=10-19"] {
            let resp = reg
                .send(
                    reg.request(Method::PATCH, upload.clone())
                        .header("Content-Type", OCTET_STREAM)
                        .header("Content-Range", range)
                        .body(vec![8u8; 10]),
                )
                .await;
            resp.expect_status_in(
                &[400, 416],
                &format!("end-5: Content-Range {range:?} must be refused"),
            );
            let status = reg.get_url(upload.clone()).await;
            status.expect_header(
                "Range",
                "0-9",
                &format!("end-13: a refused {range:?} must not change the upload"),
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_digests_are_400_digest_invalid() {
        let reg = TestRegistry::start().await;
        for digest in [
            "sha256:zz",
            "notadigest",
            "sha256:",
            ":abc",
            "sha256:ABCDEF",
        ] {
            let upload = reg.start_upload(REPO).await;
            reg.close_upload(&upload, digest, b"data".to_vec())
                .await
                .expect_error(
                    400,
                    &["DIGEST_INVALID"],
                    &format!("end-6: digest {digest:?} is invalid"),
                );
            let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
            resp.expect_status_in(&[400, 404], &format!("end-2: GET of blob {digest:?}"));
        }
        reg.get(&format!("/v2/{REPO}/blobs/sha256:abc"))
            .await
            .expect_error(
                400,
                &["DIGEST_INVALID"],
                "wharf: a malformed blob digest is 400 DIGEST_INVALID",
            );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_of_the_same_blob_both_succeed() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(9, 200_000);
        let digest = sha256_digest(&data);
        let (a, b) = (reg.start_upload(REPO).await, reg.start_upload(REPO).await);
        let (ra, rb) = tokio::join!(
            reg.close_upload(&a, &digest, data.clone()),
            reg.close_upload(&b, &digest, data.clone())
        );
        ra.expect_status(
            201,
            "Layer Upload De-duplication: both concurrent uploads proceed",
        );
        rb.expect_status(
            201,
            "Layer Upload De-duplication: both concurrent uploads proceed",
        );
        let pulled = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
        assert_eq!(
            pulled.body.as_ref(),
            data.as_slice(),
            "the stored blob is intact"
        );
    }
}

mod error_bodies {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_methods_are_405_with_an_error_body() {
        let reg = TestRegistry::start().await;
        let digest = sha256_digest(b"x");
        let cases = [
            (Method::POST, format!("/v2/{REPO}/manifests/latest")),
            (Method::PUT, format!("/v2/{REPO}/blobs/{digest}")),
            (Method::DELETE, "/v2/".to_string()),
            (Method::PATCH, format!("/v2/{REPO}/tags/list")),
        ];
        for (method, path) in cases {
            let resp = reg.send(reg.request(method.clone(), reg.url(&path))).await;
            resp.expect_status(405, &format!("{method} {path}: method not allowed"));
            error_codes(&resp);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_error_carries_the_api_version_and_a_spec_body() {
        let reg = TestRegistry::start().await;
        let digest = sha256_digest(b"x");
        let paths = [
            "/v2/a/unknown/thing".to_string(),
            "/v3/".to_string(),
            format!("/v2/{REPO}/blobs/{digest}"),
            format!("/v2/{REPO}/manifests/latest"),
            "/v2/UPPER/tags/list".to_string(),
        ];
        for path in &paths {
            let resp = reg.get(path).await;
            assert!(
                resp.status.is_client_error(),
                "{path}: must be a 4xx, got {}",
                resp.status
            );
            error_codes(&resp);
            resp.expect_header(
                "Docker-Distribution-API-Version",
                "registry/2.0",
                &format!("{path}: wharf sends the API version on every response"),
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_not_satisfiable_bodies_use_spec_codes() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        let resp = reg.patch_chunk(&upload, 100, b"out of order").await;
        resp.expect_status(416, "end-5: out-of-order chunk");
        if serde_json::from_slice::<serde_json::Value>(&resp.body).is_ok() {
            error_codes(&resp);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn odd_pagination_parameters_are_not_server_errors() {
        let reg = TestRegistry::start().await;
        reg.push_image(REPO, "v1", &image(10)).await;
        for query in [
            "n=-1",
            "n=abc",
            "n=99999999999999999999",
            "last=",
            "n=",
            "last=%00",
        ] {
            for path in [
                format!("/v2/{REPO}/tags/list?{query}"),
                format!("/v2/_catalog?{query}"),
            ] {
                let resp = reg.get(&path).await;
                resp.expect_status_in(
                    &[200, 400],
                    &format!("{path}: a bad parameter is 200 or 400"),
                );
                if resp.status() == 400 {
                    error_codes(&resp);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_after_shutdown() {
    let reg = TestRegistry::start().await;
    reg.get("/v2/")
        .await
        .expect_status(200, "serving before shutdown");
    let addr = reg.addr();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), reg.stop()).await;
    let result = stopped.expect("serve must return promptly once shutdown completes");
    result.expect("serve returns Ok after a clean shutdown");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "after shutdown the listener is closed"
    );
}

mod content_types {
    use super::*;

    /// An image manifest without `mediaType`, as the image spec allows.
    fn untyped_manifest(img: &Image) -> Vec<u8> {
        let mut value = img.manifest.value();
        value
            .as_object_mut()
            .expect("a manifest is an object")
            .remove("mediaType");
        serde_json::to_vec(&value).expect("serialise")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_manifest_pushed_as_a_page_or_script_is_refused() {
        let reg = TestRegistry::start().await;
        let img = image(40);
        reg.push_blobs(REPO, &img.blobs()).await;
        let body = untyped_manifest(&img);
        for content_type in [
            "text/html",
            "text/html; charset=utf-8",
            "application/javascript",
            "image/svg+xml",
            "application/json",
        ] {
            reg.put_manifest(REPO, "page", content_type, &body)
                .await
                .expect_error(
                    400,
                    &["MANIFEST_INVALID"],
                    &format!("a manifest pushed as {content_type} would be served as one"),
                );
        }
        reg.head(&format!("/v2/{REPO}/manifests/page"))
            .await
            .expect_status(404, "nothing was stored");
        // The same bytes pushed as what they are, and served as such.
        reg.put_manifest(REPO, "page", OCI_MANIFEST, &body)
            .await
            .expect_status(201, "an untyped manifest pushed as an OCI manifest");
        let served = reg.get(&format!("/v2/{REPO}/manifests/page")).await;
        served.expect_header("Content-Type", OCI_MANIFEST, "served as a manifest");
        assert_eq!(served.body.as_ref(), body.as_slice());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mediatype_field_that_is_no_manifest_type_is_refused() {
        let reg = TestRegistry::start().await;
        let img = image(41);
        reg.push_blobs(REPO, &img.blobs()).await;
        let mut value = img.manifest.value();
        value["mediaType"] = json!("text/html");
        let body = serde_json::to_vec(&value).expect("serialise");
        reg.put_manifest(REPO, "typed-page", "text/html", &body)
            .await
            .expect_error(400, &["MANIFEST_INVALID"], "mediaType text/html");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_response_forbids_content_sniffing() {
        let reg = TestRegistry::start().await;
        let img = image(42);
        reg.push_image(REPO, "v1", &img).await;
        let blob = &img.blobs()[0].digest;
        for path in [
            "/v2/".to_string(),
            format!("/v2/{REPO}/manifests/v1"),
            format!("/v2/{REPO}/blobs/{blob}"),
            format!("/v2/{REPO}/tags/list"),
            format!("/v2/{REPO}/manifests/missing"),
            "/v2/no/such/path/at/all".to_string(),
            "/metrics".to_string(),
        ] {
            reg.get(&path).await.expect_header(
                "X-Content-Type-Options",
                "nosniff",
                &format!("GET {path}"),
            );
        }
    }
}
