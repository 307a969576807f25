//! Spec "Push" category, blob side: monolithic (end-4a/end-4b/end-6),
//! chunked (end-5, end-13), streamed, cancel (end-14), sha512 (end-4c),
//! and cross-repository mount (end-11).

mod common;

use common::*;
use futures_util::stream;
use reqwest::{Method, Url};
use wharf_testkit::{pseudo_random, sha256_digest, sha512_digest};

const REPO: &str = "conformance/push";

async fn assert_blob_is(reg: &TestRegistry, repo: &str, digest: &str, data: &[u8], why: &str) {
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    resp.expect_status(200, &format!("{why}: the pushed blob must be pullable"));
    assert_eq!(
        resp.body.as_ref(),
        data,
        "{why}: the pulled blob must equal the pushed bytes"
    );
}

async fn assert_blob_absent(reg: &TestRegistry, repo: &str, digest: &str, why: &str) {
    reg.head(&format!("/v2/{repo}/blobs/{digest}"))
        .await
        .expect_status(404, why);
}

/// A 201 for a finished blob: `Location` pulls the blob, and the digest header
/// (when sent) names it.
async fn assert_blob_created(
    reg: &TestRegistry,
    resp: &Resp,
    digest: &str,
    data: &[u8],
    why: &str,
) {
    resp.expect_status(
        201,
        &format!("{why}: a completed blob upload must be 201 Created"),
    );
    resp.expect_header(
        "Docker-Content-Digest",
        digest,
        &format!("{why}: wharf names the finished blob in Docker-Content-Digest"),
    );
    let pulled = reg.get_url(reg.resolve(resp.location())).await;
    pulled.expect_status(200, &format!("{why}: Location must be a pullable blob URL"));
    assert_eq!(
        pulled.body.as_ref(),
        data,
        "{why}: Location must serve the blob"
    );
}

async fn upload_status(reg: &TestRegistry, upload: &Url) -> Resp {
    reg.get_url(upload.clone()).await
}

async fn post(reg: &TestRegistry, path_and_query: &str, body: Vec<u8>) -> Resp {
    reg.send(
        reg.request(Method::POST, reg.url(path_and_query))
            .header("Content-Type", OCTET_STREAM)
            .body(body),
    )
    .await
}

mod monolithic {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_opens_an_upload_with_location_and_uuid() {
        let reg = TestRegistry::start().await;
        let resp = post(&reg, &format!("/v2/{REPO}/blobs/uploads/"), Vec::new()).await;
        resp.expect_status(202, "end-4a: POST must be 202 Accepted");
        let location = resp.location().to_string();
        let uuid = resp
            .header("Docker-Upload-UUID")
            .expect("wharf: upload responses carry Docker-Upload-UUID");
        assert!(
            location.contains(uuid),
            "end-4a: the Location must contain the upload's UUID ({uuid}): {location}"
        );
        let second = post(&reg, &format!("/v2/{REPO}/blobs/uploads/"), Vec::new()).await;
        assert_ne!(
            second.location(),
            location,
            "end-4a: each upload has a unique location"
        );
        if let Some(min) = resp.header("OCI-Chunk-Min-Length") {
            min.parse::<u64>()
                .expect("end-4a: OCI-Chunk-Min-Length is a size in bytes");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_then_put_creates_the_blob() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(1, 3000);
        let digest = sha256_digest(&data);
        let upload = reg.start_upload(REPO).await;
        let resp = reg.close_upload(&upload, &digest, data.clone()).await;
        assert_blob_created(&reg, &resp, &digest, &data, "end-6 POST then PUT").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_post_with_digest_creates_the_blob() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(2, 512);
        let digest = sha256_digest(&data);
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest={digest}"),
            data.clone(),
        )
        .await;
        assert_blob_created(&reg, &resp, &digest, &data, "end-4b single POST").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_post_with_wrong_digest_is_400() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(3, 512);
        let wrong = sha256_digest(b"other content");
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"),
            data.clone(),
        )
        .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-4b: the digest MUST match the blob",
        );
        assert_blob_absent(&reg, REPO, &wrong, "end-4b: a refused blob must not exist").await;
        assert_blob_absent(
            &reg,
            REPO,
            &sha256_digest(&data),
            "end-4b: refused content is not linked",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_with_wrong_digest_is_400_and_blob_absent() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(4, 700);
        let wrong = sha256_digest(b"not this");
        let upload = reg.start_upload(REPO).await;
        let resp = reg.close_upload(&upload, &wrong, data.clone()).await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-6: a digest mismatch must be 400 DIGEST_INVALID",
        );
        assert_blob_absent(&reg, REPO, &wrong, "end-6: a refused blob must not exist").await;
        assert_blob_absent(
            &reg,
            REPO,
            &sha256_digest(&data),
            "end-6: refused content is not linked",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_without_digest_is_400() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        let resp = reg
            .send(reg.request(Method::PUT, upload).body(b"data".to_vec()))
            .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID", "BLOB_UPLOAD_INVALID"],
            "end-6: the closing PUT MUST include the digest",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_upload_is_gone() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        let data = b"closing".to_vec();
        reg.close_upload(&upload, &sha256_digest(&data), data)
            .await
            .expect_status(201, "end-6: closing PUT");
        upload_status(&reg, &upload).await.expect_error(
            404,
            &["BLOB_UPLOAD_UNKNOWN"],
            "end-13: a closed upload is no longer active",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushing_the_same_blob_twice_is_fine() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(5, 100);
        let digest = reg.push_blob(REPO, &data).await;
        reg.push_blob(REPO, &data).await;
        assert_blob_is(&reg, REPO, &digest, &data, "Layer Upload De-duplication").await;
    }
}

mod chunked {
    use super::*;

    const LEN: usize = 3 * 1024 - 5;
    const CHUNK: usize = 1024;

    fn blob() -> (Vec<u8>, String) {
        let data = pseudo_random(99, LEN);
        let digest = sha256_digest(&data);
        (data, digest)
    }

    fn assert_chunk_accepted(resp: &Resp, last_byte: usize, why: &str) {
        resp.expect_status(
            202,
            &format!("{why}: an in-order chunk must be 202 Accepted"),
        );
        let range = format!("0-{last_byte}");
        resp.expect_header(
            "Range",
            &range,
            &format!("{why}: Range must be 0-<end-of-range>"),
        );
        resp.location();
    }

    /// PATCH all of `data` from `from` in CHUNK-sized pieces, following
    /// each response's Location; returns the latest upload URL.
    async fn patch_all(reg: &TestRegistry, mut upload: Url, data: &[u8], from: usize) -> Url {
        let mut start = from;
        while start < data.len() {
            let end = (start + CHUNK).min(data.len());
            let resp = reg.patch_chunk(&upload, start, &data[start..end]).await;
            assert_chunk_accepted(&resp, end - 1, "end-5");
            upload = reg.resolve(resp.location());
            start = end;
        }
        upload
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_chunks_then_put_creates_the_blob() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        let upload = patch_all(&reg, upload, &data, 0).await;
        let resp = reg.close_upload(&upload, &digest, Vec::new()).await;
        assert_blob_created(&reg, &resp, &digest, &data, "end-6 after chunks").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn final_chunk_in_the_closing_put() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        let split = 2 * CHUNK;
        let upload = patch_all(&reg, upload, &data[..split], 0).await;
        let resp = reg
            .send(
                reg.request(Method::PUT, with_query(&upload, "digest", &digest))
                    .header("Content-Type", OCTET_STREAM)
                    .header("Content-Range", format!("{split}-{}", LEN - 1))
                    .body(data[split..].to_vec()),
            )
            .await;
        assert_blob_created(&reg, &resp, &digest, &data, "end-6 with the final chunk").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_reports_range_location_and_uuid() {
        let reg = TestRegistry::start().await;
        let (data, _) = blob();
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &data[..CHUNK]).await;
        let resp = upload_status(&reg, &upload).await;
        resp.expect_status(
            204,
            "end-13: an active upload's status must be 204 No Content",
        );
        let range = format!("0-{}", CHUNK - 1);
        resp.expect_header("Range", &range, "end-13: Range must be 0-<end-of-range>");
        resp.location();
        assert!(
            resp.header("Docker-Upload-UUID").is_some(),
            "wharf: status carries Docker-Upload-UUID"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn skipping_ahead_is_416_and_keeps_the_state() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &data[..CHUNK]).await;
        let gap = reg
            .patch_chunk(&upload, 2 * CHUNK, &data[2 * CHUNK..])
            .await;
        gap.expect_status(416, "end-5: an out-of-order chunk must be 416");
        let status = upload_status(&reg, &upload).await;
        status.expect_status(204, "end-13: the upload stays active after a 416");
        let range = format!("0-{}", CHUNK - 1);
        status.expect_header(
            "Range",
            &range,
            "end-13: a 416 must not change the received range",
        );
        let upload = patch_all(&reg, reg.resolve(status.location()), &data, CHUNK).await;
        let done = reg.close_upload(&upload, &digest, Vec::new()).await;
        assert_blob_created(
            &reg,
            &done,
            &digest,
            &data,
            "end-6 after recovering from a 416",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retrying_a_chunk_on_the_first_location_is_416() {
        let reg = TestRegistry::start().await;
        let (data, _) = blob();
        let first_location = reg.start_upload(REPO).await;
        let first = reg.patch_chunk(&first_location, 0, &data[..CHUNK]).await;
        assert_chunk_accepted(&first, CHUNK - 1, "end-5 first chunk");
        let retry = reg.patch_chunk(&first_location, 0, &data[..CHUNK]).await;
        retry.expect_status(
            416,
            "end-5: a chunk not starting at end-of-range + 1 must be 416",
        );
        let status = upload_status(&reg, &first_location).await;
        status.expect_status(204, "end-13: the POST's location still reports the upload");
        let range = format!("0-{}", CHUNK - 1);
        status.expect_header(
            "Range",
            &range,
            "end-13: Range is unchanged by the refused retry",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_chunk_not_at_zero_is_416_and_status_still_answers() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        let resp = reg
            .patch_chunk(&upload, CHUNK, &data[CHUNK..2 * CHUNK])
            .await;
        resp.expect_status(416, "end-5: the first chunk's range MUST begin with 0");
        let status = upload_status(&reg, &upload).await;
        status.expect_status(204, "end-13: the upload stays active after a 416");
        // The official suite resumes from `Range: 0-<n>`; an empty upload needs one too.
        let range = status
            .header("Range")
            .expect("end-13: status MUST carry Range, also when empty");
        let last = range
            .strip_prefix("0-")
            .expect("end-13: Range has the form 0-<end>");
        last.parse::<i64>()
            .expect("end-13: <end-of-range> is a number");
        let upload = patch_all(&reg, reg.resolve(status.location()), &data, 0).await;
        let done = reg.close_upload(&upload, &digest, Vec::new()).await;
        assert_blob_created(
            &reg,
            &done,
            &digest,
            &data,
            "end-6 after a refused first chunk",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_order_final_put_chunk_is_416() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &data[..CHUNK]).await;
        let skipped = 2 * CHUNK;
        let resp = reg
            .send(
                reg.request(Method::PUT, with_query(&upload, "digest", &digest))
                    .header("Content-Type", OCTET_STREAM)
                    .header("Content-Range", format!("{skipped}-{}", LEN - 1))
                    .body(data[skipped..].to_vec()),
            )
            .await;
        resp.expect_status(
            416,
            "end-6: a final chunk uploaded out of order MUST be 416",
        );
        let status = upload_status(&reg, &upload).await;
        let range = format!("0-{}", CHUNK - 1);
        status.expect_status(204, "end-13: the upload stays active after a 416 on PUT");
        status.expect_header(
            "Range",
            &range,
            "end-13: the refused PUT must not change the range",
        );
        assert_blob_absent(
            &reg,
            REPO,
            &digest,
            "a refused PUT must not create the blob",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_works_with_a_digest_query_on_the_location() {
        // The official suite asks for status on `<location>?digest=…` after a 416.
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &data[..CHUNK]).await;
        let status = upload_status(&reg, &with_query(&upload, "digest", &digest)).await;
        status.expect_status(204, "end-13: upload status with extra query parameters");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunked_upload_with_wrong_digest_is_400() {
        let reg = TestRegistry::start().await;
        let (data, digest) = blob();
        let wrong = sha256_digest(b"wrong");
        let upload = reg.start_upload(REPO).await;
        let upload = patch_all(&reg, upload, &data, 0).await;
        let resp = reg.close_upload(&upload, &wrong, Vec::new()).await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-6: a digest mismatch must be 400 DIGEST_INVALID",
        );
        assert_blob_absent(&reg, REPO, &wrong, "end-6: a refused blob must not exist").await;
        assert_blob_absent(&reg, REPO, &digest, "end-6: refused content is not linked").await;
    }
}

mod streamed {
    use super::*;

    /// PATCH without Content-Range or Content-Length (chunked transfer coding).
    async fn stream_patch(reg: &TestRegistry, upload: &Url, data: &[u8]) -> Resp {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            data.chunks(700).map(|c| Ok(c.to_vec())).collect();
        let body = reqwest::Body::wrap_stream(stream::iter(pieces));
        reg.send(
            reg.request(Method::PATCH, upload.clone())
                .header("Content-Type", OCTET_STREAM)
                .body(body),
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_patch_then_put_creates_the_blob() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(11, 5000);
        let digest = sha256_digest(&data);
        let upload = reg.start_upload(REPO).await;
        let resp = stream_patch(&reg, &upload, &data).await;
        resp.expect_status(202, "a streamed PATCH must be 202 Accepted");
        resp.expect_header("Range", "0-4999", "a streamed PATCH reports Range 0-<end>");
        let upload = reg.resolve(resp.location());
        let done = reg.close_upload(&upload, &digest, Vec::new()).await;
        assert_blob_created(&reg, &done, &digest, &data, "end-6 after a streamed PATCH").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_patches_append() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(12, 4000);
        let digest = sha256_digest(&data);
        let upload = reg.start_upload(REPO).await;
        stream_patch(&reg, &upload, &data[..1500]).await;
        let second = stream_patch(&reg, &upload, &data[1500..]).await;
        second.expect_header("Range", "0-3999", "a second streamed PATCH appends");
        let done = reg.close_upload(&upload, &digest, Vec::new()).await;
        assert_blob_created(
            &reg,
            &done,
            &digest,
            &data,
            "end-6 after two streamed PATCHes",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_upload_with_wrong_digest_is_400() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(13, 3000);
        let upload = reg.start_upload(REPO).await;
        stream_patch(&reg, &upload, &data).await;
        let wrong = sha256_digest(b"mismatch");
        let resp = reg.close_upload(&upload, &wrong, Vec::new()).await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-6: a digest mismatch must be 400 DIGEST_INVALID",
        );
        assert_blob_absent(&reg, REPO, &wrong, "a refused blob must not exist").await;
    }
}

mod cancel {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_is_204_then_the_upload_is_gone() {
        let reg = TestRegistry::start().await;
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, b"some bytes").await;
        let resp = reg
            .send(
                reg.request(Method::DELETE, upload.clone())
                    .header("Content-Length", "0"),
            )
            .await;
        resp.expect_status(204, "end-14: cancelling an upload SHOULD be 204 No Content");
        upload_status(&reg, &upload).await.expect_error(
            404,
            &["BLOB_UPLOAD_UNKNOWN"],
            "end-13: a cancelled upload must be unknown",
        );
        reg.patch_chunk(&upload, 10, b"more").await.expect_error(
            404,
            &["BLOB_UPLOAD_UNKNOWN"],
            "end-5: PATCH of a cancelled upload must be 404",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_upload_ids_are_404_blob_upload_unknown() {
        let reg = TestRegistry::start().await;
        reg.push_blob(REPO, b"make the repository exist").await;
        for id in [
            "6f1c3a0e-2b6d-4a8e-9a55-0c3f5b8d7e21",
            "not-an-upload",
            "AAAA",
        ] {
            let url = reg.url(&format!("/v2/{REPO}/blobs/uploads/{id}"));
            for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
                let request = reg.request(
                    method.clone(),
                    with_query(&url, "digest", &sha256_digest(b"x")),
                );
                reg.send(request.body(b"x".to_vec())).await.expect_error(
                    404,
                    &["BLOB_UPLOAD_UNKNOWN"],
                    &format!("{method} of unknown upload {id:?} must be 404 BLOB_UPLOAD_UNKNOWN"),
                );
            }
        }
    }
}

mod sha512 {
    use super::*;

    async fn assert_sha512_blob(reg: &TestRegistry, resp: &Resp, data: &[u8], why: &str) {
        let digest = sha512_digest(data);
        assert_blob_created(reg, resp, &digest, data, why).await;
        let head = reg.head(&format!("/v2/{REPO}/blobs/{digest}")).await;
        head.expect_status(200, &format!("{why}: HEAD by sha512 digest"));
        head.expect_header(
            "Docker-Content-Digest",
            &digest,
            &format!("{why}: the sha512 digest is kept"),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn digest_algorithm_parameter_then_put() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(31, 2000);
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"),
            Vec::new(),
        )
        .await;
        resp.expect_status(
            202,
            "end-4c: POST with digest-algorithm=sha512 must open an upload",
        );
        let upload = reg.resolve(resp.location());
        let done = reg
            .close_upload(&upload, &sha512_digest(&data), data.clone())
            .await;
        assert_sha512_blob(&reg, &done, &data, "end-4c then end-6").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_post_with_sha512_digest() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(32, 512);
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest={}", sha512_digest(&data)),
            data.clone(),
        )
        .await;
        assert_sha512_blob(&reg, &resp, &data, "end-4b with sha512").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_put_with_sha512_digest_and_no_algorithm_parameter() {
        // The official suite opens sha512 uploads with a plain POST.
        let reg = TestRegistry::start().await;
        let data = pseudo_random(33, 512);
        let upload = reg.start_upload(REPO).await;
        let done = reg
            .close_upload(&upload, &sha512_digest(&data), data.clone())
            .await;
        assert_sha512_blob(&reg, &done, &data, "end-6 with a sha512 digest").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunked_upload_closed_with_sha512_digest_and_no_algorithm_parameter() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(34, 3000);
        let upload = reg.start_upload(REPO).await;
        reg.patch_chunk(&upload, 0, &data[..1024])
            .await
            .expect_status(202, "end-5: first chunk");
        reg.patch_chunk(&upload, 1024, &data[1024..])
            .await
            .expect_status(202, "end-5: second chunk");
        let done = reg
            .close_upload(&upload, &sha512_digest(&data), Vec::new())
            .await;
        assert_sha512_blob(&reg, &done, &data, "chunked upload closed with sha512").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sha512_wrong_digest_is_400() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(35, 512);
        let wrong = sha512_digest(b"different");
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest={wrong}"),
            data,
        )
        .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-4b: a sha512 mismatch must be 400",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_algorithm_is_400() {
        let reg = TestRegistry::start().await;
        let md5 = "md5:5eb63bbbe01eeed093cb22bb8f5acdc3";
        let resp = post(
            &reg,
            &format!("/v2/{REPO}/blobs/uploads/?digest={md5}"),
            b"hello world".to_vec(),
        )
        .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID", "UNSUPPORTED"],
            "Pushing blobs: an unsupported digest algorithm SHOULD be 400",
        );
        let upload = reg.start_upload(REPO).await;
        reg.close_upload(&upload, md5, b"hello world".to_vec())
            .await
            .expect_error(
                400,
                &["DIGEST_INVALID", "UNSUPPORTED"],
                "end-6: an unsupported digest algorithm SHOULD be 400",
            );
    }
}

mod mount {
    use super::*;

    async fn mount(reg: &TestRegistry, repo: &str, digest: &str, from: Option<&str>) -> Resp {
        let mut path = format!("/v2/{repo}/blobs/uploads/?mount={digest}");
        if let Some(from) = from {
            path.push_str(&format!("&from={from}"));
        }
        post(reg, &path, Vec::new()).await
    }

    fn location_path(reg: &TestRegistry, resp: &Resp) -> String {
        reg.resolve(resp.location()).path().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mount_from_a_repository_holding_the_blob_is_201() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(51, 512);
        let digest = reg.push_blob("mount/source", &data).await;
        let resp = mount(&reg, "mount/target", &digest, Some("mount/source")).await;
        resp.expect_status(201, "end-11: a successful mount MUST be 201 Created");
        assert_eq!(
            location_path(&reg, &resp),
            format!("/v2/mount/target/blobs/{digest}"),
            "end-11: Location names the blob in the target repository"
        );
        if let Some(header) = resp.header("Docker-Content-Digest") {
            assert_eq!(
                header, digest,
                "end-11: Docker-Content-Digest names the mounted blob"
            );
        }
        assert_blob_is(&reg, "mount/target", &digest, &data, "end-11 mounted blob").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mount_of_a_missing_blob_is_202_with_a_usable_upload() {
        let reg = TestRegistry::start().await;
        reg.push_blob("mount/source", b"something else").await;
        let data = pseudo_random(52, 512);
        let digest = sha256_digest(&data);
        let resp = mount(&reg, "mount/target", &digest, Some("mount/source")).await;
        resp.expect_status(202, "end-11: a mount the registry cannot do SHOULD be 202");
        assert!(
            location_path(&reg, &resp).starts_with("/v2/mount/target/blobs/uploads/"),
            "end-11: the 202 Location is an upload in the target repository"
        );
        let done = reg
            .close_upload(&reg.resolve(resp.location()), &digest, data.clone())
            .await;
        assert_blob_created(
            &reg,
            &done,
            &digest,
            &data,
            "end-6 on the upload a 202 mount opened",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mount_without_from_finds_the_blob_anywhere() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(53, 512);
        let digest = reg.push_blob("mount/elsewhere", &data).await;
        let resp = mount(&reg, "mount/target", &digest, None).await;
        resp.expect_status(
            201,
            "end-11: the registry MAY treat from as optional (wharf does)",
        );
        assert_blob_is(
            &reg,
            "mount/target",
            &digest,
            &data,
            "end-11 mount without from",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mount_without_from_of_an_unknown_blob_is_202() {
        let reg = TestRegistry::start().await;
        let resp = mount(&reg, "mount/target", &sha256_digest(b"hello world"), None).await;
        resp.expect_status(
            202,
            "end-11: an unknown blob cannot be mounted, an upload opens",
        );
        resp.location();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mounted_blob_is_deleted_per_repository() {
        let reg = TestRegistry::start().await;
        let data = pseudo_random(54, 512);
        let digest = reg.push_blob("mount/source", &data).await;
        mount(&reg, "mount/target", &digest, Some("mount/source")).await;
        reg.delete(&format!("/v2/mount/target/blobs/{digest}"))
            .await
            .expect_status(202, "end-10: delete of the mounted blob");
        assert_blob_absent(
            &reg,
            "mount/target",
            &digest,
            "end-10: the blob is gone from the target",
        )
        .await;
        assert_blob_is(
            &reg,
            "mount/source",
            &digest,
            &data,
            "the source repository keeps its blob",
        )
        .await;
        reg.delete(&format!("/v2/mount/source/blobs/{digest}"))
            .await
            .expect_status(202, "end-10: delete from the source");
    }
}
