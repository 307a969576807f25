//! The client against wharf's own registry, in-process on 127.0.0.1.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{stream, StreamExt};
use wharf_client::{ErrorKind, MountOutcome};
use wharf_oci::{media_type, Digest, Reference, Target};
use wharf_testkit::image::push;
use wharf_testkit::{pseudo_random, WharfRegistry};

fn reference(host: &str, s: &str) -> Reference {
    format!("{host}/{s}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_reports_an_open_registry() {
    let reg = WharfRegistry::start().await;
    let ping = client().ping(&reg.host).await.unwrap();
    assert_eq!(ping.auth_scheme, None);
    assert_eq!(ping.api_version.as_deref(), Some("registry/2.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_and_docker_images_round_trip_byte_exact() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let app = repo("team/app");
    for (img, tag) in [(oci_image(1), "oci"), (docker_image(2), "docker")] {
        push(&client, &reg.host, &app, Some(tag), &img).await;
        let by_tag = client
            .get_manifest(&reference(&reg.host, &format!("team/app:{tag}")))
            .await
            .unwrap();
        assert_eq!(
            by_tag.bytes.as_ref(),
            img.manifest.as_slice(),
            "{tag}: bytes preserved"
        );
        assert_eq!(by_tag.media_type, img.media_type);
        assert_eq!(by_tag.digest, img.digest());
        let by_digest = reference(&reg.host, "team/app").with_digest(img.digest());
        let head = client.head_manifest(&by_digest).await.unwrap();
        assert_eq!(head.digest, img.digest());
        assert_eq!(head.size, img.manifest.len() as u64);
        assert_eq!(head.media_type, img.media_type);
        let head_tag = client
            .head_manifest(&reference(&reg.host, &format!("team/app:{tag}")))
            .await
            .unwrap();
        assert_eq!(head_tag.digest, img.digest());
        let layer = collect(
            client
                .get_blob(&reg.host, &app, &img.layer().digest())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(layer, img.layer().bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_streams_report_progress_and_sizes() {
    let reg = WharfRegistry::start().await;
    let rec = recorder();
    let client = client().with_reporter(rec.clone());
    let app = repo("progress/app");
    let blob = pseudo_random(9, 1_000_000);
    let digest = Digest::sha256_of(&blob);
    assert_eq!(
        client.head_blob(&reg.host, &app, &digest).await.unwrap(),
        None
    );
    let chunks: Vec<Result<Bytes, std::io::Error>> = blob
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .push_blob(
            &reg.host,
            &app,
            &digest,
            blob.len() as u64,
            stream::iter(chunks),
        )
        .await
        .unwrap();
    assert_eq!(
        *rec.progress.lock().unwrap(),
        blob.len() as u64,
        "upload progress"
    );
    assert_eq!(
        client.head_blob(&reg.host, &app, &digest).await.unwrap(),
        Some(blob.len() as u64)
    );
    let s = client.get_blob(&reg.host, &app, &digest).await.unwrap();
    assert_eq!(s.size(), Some(blob.len() as u64));
    assert_eq!(collect(s).await.unwrap(), blob);
    assert_eq!(
        *rec.progress.lock().unwrap(),
        2 * blob.len() as u64,
        "download progress"
    );
    assert_eq!(*rec.finished.lock().unwrap(), 2);
    let mut part = Vec::new();
    let mut r = client
        .get_blob_range(&reg.host, &app, &digest, 1000..1010)
        .await
        .unwrap();
    while let Some(c) = r.next().await {
        part.extend_from_slice(&c.unwrap());
    }
    assert_eq!(part, &blob[1000..1010]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_and_mount() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let (a, b) = (repo("src/a"), repo("dst/b"));
    let blob = pseudo_random(3, 250_000);
    let digest = Digest::sha256_of(&blob);
    let session = client.start_upload(&reg.host, &a).await.unwrap();
    // Uneven input chunks against a 64 KiB upload chunk size.
    let chunks: Vec<Result<Bytes, std::io::Error>> = blob
        .chunks(70_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .upload_chunked(session, &digest, stream::iter(chunks), 64 * 1024)
        .await
        .unwrap();
    assert_eq!(
        client.head_blob(&reg.host, &a, &digest).await.unwrap(),
        Some(blob.len() as u64)
    );

    let outcome = client
        .mount_blob(&reg.host, &b, Some(&a), &digest)
        .await
        .unwrap();
    assert!(matches!(outcome, MountOutcome::Mounted), "{outcome:?}");
    assert_eq!(
        collect(client.get_blob(&reg.host, &b, &digest).await.unwrap())
            .await
            .unwrap(),
        blob
    );

    // A blob the source does not have: the registry opens an upload instead.
    let missing = Digest::sha256_of(b"not there");
    match client
        .mount_blob(&reg.host, &b, Some(&a), &missing)
        .await
        .unwrap()
    {
        MountOutcome::Upload(session) => {
            client
                .upload_monolithic(
                    session,
                    &missing,
                    9,
                    stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"not there"))]),
                )
                .await
                .unwrap();
        }
        MountOutcome::Mounted => panic!("a missing blob cannot be mounted"),
    }
    assert_eq!(
        client.head_blob(&reg.host, &b, &missing).await.unwrap(),
        Some(9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_on_push_is_refused_and_classified() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let app = repo("bad/push");
    let err = client
        .push_blob_bytes(
            &reg.host,
            &app,
            &Digest::sha256_of(b"other"),
            Bytes::from_static(b"bytes"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch, "{err}");
    assert_eq!(err.api_errors()[0].code, "DIGEST_INVALID");
    // Pushing a manifest by a digest it does not have is caught locally.
    let img = oci_image(4);
    let err = client
        .put_manifest(
            &reg.host,
            &app,
            &Target::Digest(Digest::sha256_of(b"x")),
            Bytes::from(img.manifest.clone()),
            img.media_type,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_things_are_not_found_with_context() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let err = client
        .get_manifest(&reference(&reg.host, "no/such:tag"))
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("get manifest {}/no/such:tag: HTTP 404", reg.host)),
        "{msg}"
    );
    assert!(
        msg.contains("MANIFEST_UNKNOWN") || msg.contains("NAME_UNKNOWN"),
        "{msg}"
    );
    let err = client
        .get_blob(&reg.host, &repo("no/such"), &Digest::sha256_of(b"x"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_catalog_follow_pagination() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let app = repo("paged/app");
    let img = oci_image(5);
    push(&client, &reg.host, &app, Some("t00"), &img).await;
    let mut expected: Vec<String> = (0..23).map(|i| format!("t{i:02}")).collect();
    for tag in &expected[1..] {
        client
            .put_manifest(
                &reg.host,
                &app,
                &Target::Tag(tag.parse().unwrap()),
                Bytes::from(img.manifest.clone()),
                img.media_type,
            )
            .await
            .unwrap();
    }
    expected.sort();
    let paged = client
        .tags_list_paged(&reg.host, &app, Some(5))
        .await
        .unwrap();
    assert_eq!(paged, expected, "5 pages of 5 joined in order");
    assert_eq!(client.tags_list(&reg.host, &app).await.unwrap(), expected);
    push(
        &client,
        &reg.host,
        &repo("paged/other"),
        Some("x"),
        &oci_image(6),
    )
    .await;
    assert_eq!(
        client.catalog(&reg.host, Some(1)).await.unwrap(),
        vec!["paged/app".to_string(), "paged/other".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_through_the_api() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let app = repo("sig/app");
    let img = oci_image(7);
    push(&client, &reg.host, &app, Some("v1"), &img).await;
    let empty = b"{}".to_vec();
    client
        .push_blob_bytes(
            &reg.host,
            &app,
            &Digest::sha256_of(&empty),
            Bytes::from(empty.clone()),
        )
        .await
        .unwrap();
    let artifact = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/vnd.example.sig","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{}","size":{}}}}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_EMPTY,
        Digest::sha256_of(&empty),
        media_type::OCI_MANIFEST,
        img.digest(),
        img.manifest.len()
    );
    let artifact_digest = Digest::sha256_of(artifact.as_bytes());
    client
        .put_manifest(
            &reg.host,
            &app,
            &Target::Digest(artifact_digest.clone()),
            Bytes::from(artifact),
            media_type::OCI_MANIFEST,
        )
        .await
        .unwrap();
    let all = client
        .referrers(&reg.host, &app, &img.digest(), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].digest, artifact_digest);
    let sigs = client
        .referrers(
            &reg.host,
            &app,
            &img.digest(),
            Some("application/vnd.example.sig"),
        )
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    let none = client
        .referrers(
            &reg.host,
            &app,
            &img.digest(),
            Some("application/vnd.example.sbom"),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Regression: an HTTP/2 upload polls its body once more after the end; a
/// blob stream polled past its end panicked ("Unfold must not be polled
/// after it returned `Poll::Ready(None)`") and the upload stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_stream_polled_past_its_end_stays_ended() {
    let reg = WharfRegistry::start().await;
    let client = client();
    let app = repo("fused/app");
    let img = oci_image(9);
    push(&client, &reg.host, &app, Some("v1"), &img).await;
    let mut blob = client
        .get_blob(&reg.host, &app, &img.layer().digest())
        .await
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = blob.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, img.layer().bytes);
    assert!(blob.next().await.is_none());
}
