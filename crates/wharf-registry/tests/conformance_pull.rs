//! Spec "Pull" category: end-1, end-2, end-3, blob Range requests, and the
//! `ns` mirror mapping (spec "Registry Proxying").

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use wharf_testkit::{pseudo_random, sha256_digest};

const REPO: &str = "conformance/pull";

async fn registry_with_image(tag: &str) -> (TestRegistry, Image) {
    let reg = TestRegistry::start().await;
    let img = image(1);
    reg.push_image(REPO, tag, &img).await;
    (reg, img)
}

fn assert_manifest_response(resp: &Resp, m: &Manifest, why: &str) {
    resp.expect_status(200, &format!("{why}: an existing manifest must be 200 OK"));
    assert_eq!(
        resp.body, m.body,
        "{why}: the registry must serve the exact bytes pushed"
    );
    resp.expect_header(
        "Content-Type",
        &m.media_type,
        &format!("{why}: Content-Type must match the pushed manifest's type"),
    );
    resp.expect_header(
        "Docker-Content-Digest",
        &m.digest,
        &format!("{why}: a successful response must carry Docker-Content-Digest"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_endpoint_is_200() {
    let reg = TestRegistry::start().await;
    let resp = reg.get("/v2/").await;
    resp.expect_status(
        200,
        "end-1: GET /v2/ must be 200 OK on a conforming registry",
    );
    resp.expect_header(
        "Docker-Distribution-API-Version",
        "registry/2.0",
        "wharf: every response carries Docker-Distribution-API-Version",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_get_by_tag_returns_the_pushed_bytes() {
    let (reg, img) = registry_with_image("v1").await;
    let resp = reg
        .send(
            reg.request(Method::GET, reg.url(&format!("/v2/{REPO}/manifests/v1")))
                .header("Accept", OCI_MANIFEST)
                .header("Accept", OCI_INDEX),
        )
        .await;
    assert_manifest_response(&resp, &img.manifest, "end-3 GET by tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_get_by_digest_returns_the_pushed_bytes() {
    let (reg, img) = registry_with_image("v1").await;
    let resp = reg
        .get(&format!("/v2/{REPO}/manifests/{}", img.manifest.digest))
        .await;
    assert_manifest_response(&resp, &img.manifest, "end-3 GET by digest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_head_reports_digest_size_and_type() {
    let (reg, img) = registry_with_image("v1").await;
    let by_digest = format!("/v2/{REPO}/manifests/{}", img.manifest.digest);
    for path in [format!("/v2/{REPO}/manifests/v1"), by_digest] {
        let resp = reg.head(&path).await;
        resp.expect_status(200, "end-3: HEAD of an existing manifest must be 200 OK");
        assert!(resp.body.is_empty(), "end-3: a HEAD response has no body");
        let length = img.manifest.body.len().to_string();
        resp.expect_header(
            "Content-Length",
            &length,
            "end-3: HEAD must carry the manifest size in Content-Length",
        );
        resp.expect_header(
            "Docker-Content-Digest",
            &img.manifest.digest,
            "end-3: HEAD must carry Docker-Content-Digest",
        );
        resp.expect_header(
            "Content-Type",
            OCI_MANIFEST,
            "end-3: HEAD carries the manifest type",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_manifest_is_404_manifest_unknown() {
    let (reg, _img) = registry_with_image("v1").await;
    let absent_digest = sha256_digest(b"never pushed");
    for reference in ["nosuchtag", absent_digest.as_str()] {
        let path = format!("/v2/{REPO}/manifests/{reference}");
        reg.get(&path).await.expect_error(
            404,
            &["MANIFEST_UNKNOWN"],
            "end-3: a manifest not in the repository must be 404 MANIFEST_UNKNOWN",
        );
        reg.head(&path)
            .await
            .expect_status(404, "end-3: HEAD of a missing manifest must be 404");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_in_unknown_repository_is_404() {
    let reg = TestRegistry::start().await;
    reg.get("/v2/no/such/repo/manifests/latest")
        .await
        .expect_error(
            404,
            &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"],
            "end-3: pulling from a nonexistent repository must be 404",
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tag_reference_is_404_on_pull() {
    // The official suite pulls `.INVALID_MANIFEST_NAME` and requires 404.
    let (reg, _img) = registry_with_image("v1").await;
    let path = format!("/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME");
    reg.get(&path).await.expect_status(
        404,
        "end-3: GET of a manifest that cannot exist must be 404 Not Found",
    );
    reg.head(&path).await.expect_status(
        404,
        "end-3: HEAD of a manifest that cannot exist must be 404 Not Found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_digest_reference_is_400_or_404_with_spec_body() {
    let (reg, _img) = registry_with_image("v1").await;
    for reference in ["sha256:totallywrong", "sha256:baddigeststring"] {
        let resp = reg.get(&format!("/v2/{REPO}/manifests/{reference}")).await;
        resp.expect_status_in(&[400, 404], "end-3: a malformed digest must be 400 or 404");
        if resp.status() == 400 {
            error_codes(&resp);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_get_returns_content_and_digest() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(7, 4096);
    let digest = reg.push_blob(REPO, &data).await;
    let resp = reg.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
    resp.expect_status(200, "end-2: GET of an existing blob must be 200 OK");
    assert_eq!(
        resp.body.as_ref(),
        data.as_slice(),
        "end-2: the blob body must be returned"
    );
    resp.expect_header(
        "Docker-Content-Digest",
        &digest,
        "end-2: Docker-Content-Digest must match the body",
    );
    resp.expect_header(
        "Content-Length",
        "4096",
        "end-2: Content-Length is the blob size",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_head_reports_size_and_digest() {
    let reg = TestRegistry::start().await;
    let data = pseudo_random(8, 1500);
    let digest = reg.push_blob(REPO, &data).await;
    let resp = reg.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
    resp.expect_status(200, "HEAD of an existing blob must be 200 OK");
    assert!(resp.body.is_empty(), "a HEAD response has no body");
    resp.expect_header(
        "Content-Length",
        "1500",
        "HEAD must carry the blob size in Content-Length",
    );
    resp.expect_header(
        "Docker-Content-Digest",
        &digest,
        "HEAD must carry Docker-Content-Digest",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_blob_is_404_blob_unknown() {
    let reg = TestRegistry::start().await;
    reg.push_blob(REPO, b"something else").await;
    let path = format!("/v2/{REPO}/blobs/{}", sha256_digest(b"hello world"));
    reg.get(&path).await.expect_error(
        404,
        &["BLOB_UNKNOWN"],
        "end-2: a missing blob must be 404 BLOB_UNKNOWN",
    );
    reg.head(&path)
        .await
        .expect_status(404, "end-2: HEAD of a missing blob must be 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_scoped_to_their_repository() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("scope/a", b"only in a").await;
    reg.get(&format!("/v2/scope/b/blobs/{digest}"))
        .await
        .expect_status(
            404,
            "end-2: a blob that is not in the requested repository must be 404",
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_blob_round_trips() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob(REPO, b"").await;
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let head = reg.head(&path).await;
    head.expect_status(200, "HEAD of the zero-byte blob must be 200");
    head.expect_header(
        "Content-Length",
        "0",
        "the zero-byte blob has Content-Length 0",
    );
    let get = reg.get(&path).await;
    get.expect_status(200, "end-2: GET of the zero-byte blob must be 200");
    assert!(get.body.is_empty(), "the zero-byte blob's body is empty");
    get.expect_header(
        "Docker-Content-Digest",
        &digest,
        "Docker-Content-Digest of the empty blob",
    );
}

mod ranges {
    use super::*;

    const LEN: usize = 2048;

    async fn ranged_get(range: &str) -> (Resp, Vec<u8>) {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(42, LEN);
        let digest = reg.push_blob(REPO, &data).await;
        let url = reg.url(&format!("/v2/{REPO}/blobs/{digest}"));
        let resp = reg
            .send(reg.request(Method::GET, url).header("Range", range))
            .await;
        (resp, data)
    }

    async fn assert_partial(range: &str, first: usize, last: usize) {
        let (resp, data) = ranged_get(range).await;
        let why = format!("blob Range {range}");
        resp.expect_status(
            206,
            &format!("{why}: a satisfiable range must be 206 Partial Content"),
        );
        assert_eq!(
            resp.body.as_ref(),
            &data[first..=last],
            "{why}: body must be the requested bytes"
        );
        let length = (last - first + 1).to_string();
        resp.expect_header(
            "Content-Length",
            &length,
            &format!("{why}: Content-Length of the part"),
        );
        let content_range = format!("bytes {first}-{last}/{LEN}");
        resp.expect_header(
            "Content-Range",
            &content_range,
            &format!("{why}: Content-Range (RFC 9110 14.4)"),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_range_is_206() {
        assert_partial("bytes=500-1499", 500, 1499).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_ended_range_is_206() {
        assert_partial("bytes=500-", 500, LEN - 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suffix_range_is_206() {
        assert_partial("bytes=-500", LEN - 500, LEN - 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_past_the_end_is_truncated() {
        assert_partial("bytes=2000-5000", 2000, LEN - 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn inverted_range_is_416() {
        let (resp, _) = ranged_get("bytes=500-0").await;
        resp.expect_status(416, "RFC 9110: an invalid range (last < first) must be 416");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_starting_past_the_end_is_416() {
        let (resp, _) = ranged_get("bytes=5000-10000").await;
        resp.expect_status(416, "RFC 9110: a range starting past the end must be 416");
    }
}

mod manifest_types {
    use super::*;

    async fn assert_round_trip(reg: &TestRegistry, repo: &str, tag: &str, m: &Manifest) {
        reg.push_manifest(repo, tag, m).await;
        let resp = reg.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_manifest_response(&resp, m, &format!("pull of a {} manifest", m.media_type));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oci_index_round_trips() {
        let reg = TestRegistry::start().await;
        let children = [image(1), image(2)];
        for child in &children {
            reg.push_image(REPO, &child.manifest.digest, child).await;
        }
        let index = index_of(&[&children[0].manifest, &children[1].manifest]);
        assert_round_trip(&reg, REPO, "multi", &index).await;
    }

    fn docker_image(seed: u64) -> Image {
        ImageSpec {
            seed,
            manifest_media_type: DOCKER_MANIFEST.into(),
            config_media_type: DOCKER_CONFIG.into(),
            layer_media_type: DOCKER_LAYER.into(),
            ..ImageSpec::default()
        }
        .build()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_schema2_manifest_round_trips() {
        let reg = TestRegistry::start().await;
        let img = docker_image(3);
        reg.push_blobs(REPO, &img.blobs()).await;
        assert_round_trip(&reg, REPO, "docker", &img.manifest).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn docker_manifest_list_round_trips() {
        let reg = TestRegistry::start().await;
        let children = [docker_image(4), docker_image(5)];
        for child in &children {
            reg.push_image(REPO, &child.manifest.digest, child).await;
        }
        let list = IndexSpec {
            media_type: DOCKER_MANIFEST_LIST.into(),
            ..IndexSpec::default()
        }
        .build(&[&children[0].manifest, &children[1].manifest]);
        assert_round_trip(&reg, REPO, "list", &list).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn artifact_with_custom_type_round_trips() {
        let reg = TestRegistry::start().await;
        let art = artifact(6, "application/vnd.example.sbom.v1", None);
        reg.push_blobs(REPO, &art.blobs()).await;
        assert_round_trip(&reg, REPO, "sbom", &art.manifest).await;
    }
}

mod mirror_namespace {
    use super::*;

    const UPSTREAM_REPO: &str = "docker.io/library/alpine";

    async fn mirrored() -> (TestRegistry, Image) {
        let reg = TestRegistry::start().await;
        let img = image(21);
        reg.push_image(UPSTREAM_REPO, "3.21", &img).await;
        (reg, img)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifest_pull_with_ns_reads_the_host_prefixed_repository() {
        let (reg, img) = mirrored().await;
        let path = "/v2/library/alpine/manifests/3.21?ns=docker.io";
        let resp = reg.get(path).await;
        assert_manifest_response(&resp, &img.manifest, "GET with ?ns=docker.io");
        resp.expect_header(
            "OCI-Namespace",
            "docker.io",
            "Proxying: a registry that scopes by ns SHOULD return it in OCI-Namespace",
        );
        let head = reg.head(path).await;
        head.expect_status(200, "HEAD with ?ns= must find the mirrored manifest");
        head.expect_header(
            "OCI-Namespace",
            "docker.io",
            "HEAD with ?ns= carries OCI-Namespace",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_pull_with_ns_reads_the_host_prefixed_repository() {
        let (reg, img) = mirrored().await;
        let layer = &img.layers[0];
        let path = format!("/v2/library/alpine/blobs/{}?ns=docker.io", layer.digest);
        let resp = reg.get(&path).await;
        resp.expect_status(200, "blob GET with ?ns= must find the mirrored blob");
        assert_eq!(
            resp.body.as_ref(),
            layer.data.as_slice(),
            "blob GET with ?ns= returns the blob"
        );
        resp.expect_header(
            "OCI-Namespace",
            "docker.io",
            "blob GET with ?ns= carries OCI-Namespace",
        );
        reg.head(&path)
            .await
            .expect_status(200, "blob HEAD with ?ns= must find the mirrored blob");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_ns_the_path_is_the_repository() {
        let (reg, _img) = mirrored().await;
        reg.get("/v2/library/alpine/manifests/3.21")
            .await
            .expect_status(
                404,
                "without ?ns= the path names the repository, which is empty",
            );
        reg.get("/v2/docker.io/library/alpine/manifests/3.21")
            .await
            .expect_status(200, "the full repository name still pulls directly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_with_unknown_fields_and_data_is_served_verbatim() {
    let reg = TestRegistry::start().await;
    let config = Blob::new(
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
    );
    reg.push_blobs(REPO, &[&config]).await;
    let mut descriptor = config.descriptor();
    descriptor["data"] = json!("eyJhcmNoaXRlY3R1cmUiOiJhbWQ2NCIsIm9zIjoibGludXgifQ==");
    descriptor["newUnspecifiedField"] = json!("aGVsbG8gd29ybGQ=");
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor,
        "layers": [],
        "org.example.custom": "extension fields must be kept",
    });
    let m = Manifest::from_json(OCI_MANIFEST, &body, Algorithm::Sha256);
    reg.push_manifest(REPO, "custom", &m).await;
    let resp = reg.get(&format!("/v2/{REPO}/manifests/custom")).await;
    assert_manifest_response(&resp, &m, "a manifest with extension fields");
}
