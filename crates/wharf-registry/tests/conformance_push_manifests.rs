//! Spec "Push" category, manifest side: end-7a/end-7b, references to
//! missing content, size limits, digests, tag parameters and `subject`.

mod common;

use common::*;
use serde_json::json;
use wharf_registry::RegistryConfig;
use wharf_testkit::{pseudo_random, sha256_digest};

const REPO: &str = "conformance/manifests";

async fn assert_pullable(reg: &TestRegistry, reference: &str, m: &Manifest, why: &str) {
    let resp = reg.get(&format!("/v2/{REPO}/manifests/{reference}")).await;
    resp.expect_status(200, &format!("{why}: the pushed manifest must be pullable"));
    assert_eq!(
        resp.body, m.body,
        "{why}: the registry MUST store the exact bytes"
    );
    resp.expect_header(
        "Content-Type",
        &m.media_type,
        &format!("{why}: Content-Type is the pushed type"),
    );
}

async fn assert_manifest_absent(reg: &TestRegistry, reference: &str, why: &str) {
    reg.head(&format!("/v2/{REPO}/manifests/{reference}"))
        .await
        .expect_status(404, why);
}

/// Blobs pushed, manifest not yet.
async fn registry_with_blobs_of(img: &Image) -> TestRegistry {
    let reg = TestRegistry::start().await;
    reg.push_blobs(REPO, &img.blobs()).await;
    reg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_by_tag_is_201_with_location_and_digest() {
    let img = image(1);
    let reg = registry_with_blobs_of(&img).await;
    let resp = reg.push_manifest(REPO, "v1", &img.manifest).await;
    resp.expect_header(
        "Docker-Content-Digest",
        &img.manifest.digest,
        "end-7: Docker-Content-Digest is the digest of the uploaded manifest",
    );
    let pulled = reg.get_url(reg.resolve(resp.location())).await;
    pulled.expect_status(200, "end-7: Location is a pullable manifest URL");
    assert_eq!(
        pulled.body, img.manifest.body,
        "end-7: Location serves the manifest"
    );
    assert_pullable(&reg, "v1", &img.manifest, "end-7 by tag").await;
    assert_pullable(
        &reg,
        &img.manifest.digest,
        &img.manifest,
        "end-7 by tag, pulled by digest",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_by_digest_is_201() {
    let img = image(2);
    let reg = registry_with_blobs_of(&img).await;
    let resp = reg
        .push_manifest(REPO, &img.manifest.digest, &img.manifest)
        .await;
    resp.expect_header(
        "Docker-Content-Digest",
        &img.manifest.digest,
        "end-7: Docker-Content-Digest MUST equal the client provided digest",
    );
    assert_pullable(&reg, &img.manifest.digest, &img.manifest, "end-7 by digest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusual_formatting_is_stored_byte_exact() {
    let img = image(3);
    let reg = registry_with_blobs_of(&img).await;
    let layers: Vec<String> = img
        .layers
        .iter()
        .map(|l| l.descriptor().to_string())
        .collect();
    let body = format!(
        "{{\n\t\"schemaVersion\" :  2,\r\n  \"layers\": [ {} ],\n\"config\":{} ,\"mediaType\": \"{OCI_MANIFEST}\"\n}}\n\n",
        layers.join(" ,\n "),
        img.config.descriptor()
    );
    let m = Manifest::from_bytes(OCI_MANIFEST, body.into_bytes());
    reg.push_manifest(REPO, "formatted", &m).await;
    assert_pullable(&reg, "formatted", &m, "end-7 with unusual whitespace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_without_layers_is_accepted() {
    let img = ImageSpec {
        seed: 4,
        layers: 0,
        ..ImageSpec::default()
    }
    .build();
    let reg = registry_with_blobs_of(&img).await;
    reg.push_manifest(REPO, "nolayers", &img.manifest).await;
    assert_pullable(
        &reg,
        "nolayers",
        &img.manifest,
        "end-7: the list of blobs MAY be empty",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_without_media_type_field_is_accepted() {
    let config = Blob::new(
        OCI_CONFIG,
        br#"{"os":"linux","architecture":"arm64"}"#.to_vec(),
    );
    let reg = TestRegistry::start().await;
    reg.push_blobs(REPO, &[&config]).await;
    let body = json!({"schemaVersion": 2, "config": config.descriptor(), "layers": []});
    let m = Manifest::from_json(OCI_MANIFEST, &body, Algorithm::Sha256);
    reg.push_manifest(REPO, "emptylayer", &m).await;
    assert_pullable(
        &reg,
        "emptylayer",
        &m,
        "end-7: mediaType is a SHOULD, not a MUST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_using_one_blob_as_config_and_layer_is_accepted() {
    // The official suite's "artifact without layers": `{}` is both config and layer.
    let empty = Blob::new(OCI_EMPTY_JSON, b"{}".to_vec());
    let reg = TestRegistry::start().await;
    reg.push_blobs(REPO, &[&empty]).await;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.oci.conformance.v1",
        "config": empty.descriptor(),
        "layers": [empty.descriptor()],
    });
    let m = Manifest::from_json(OCI_MANIFEST, &body, Algorithm::Sha256);
    reg.push_manifest(REPO, "artifact-without-layers", &m).await;
    assert_pullable(
        &reg,
        "artifact-without-layers",
        &m,
        "one blob referenced twice",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_parameters_are_ignored() {
    let img = image(5);
    let reg = registry_with_blobs_of(&img).await;
    let content_type = format!("{OCI_MANIFEST}; charset=utf-8");
    let resp = reg
        .put_manifest(REPO, "params", &content_type, &img.manifest.body)
        .await;
    resp.expect_status(
        201,
        "end-7: the registry SHOULD ignore Content-Type parameters",
    );
    let pulled = reg.get(&format!("/v2/{REPO}/manifests/params")).await;
    let served = pulled.header("Content-Type").unwrap_or_default();
    assert!(
        served.starts_with(OCI_MANIFEST),
        "end-3: the served Content-Type names the manifest type: {served}"
    );
}

mod missing_references {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_layer_is_400_manifest_blob_unknown() {
        let img = image(10);
        let reg = TestRegistry::start().await;
        reg.push_blobs(REPO, &[&img.config, &img.layers[0]]).await;
        let resp = reg
            .put_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest.body)
            .await;
        resp.expect_error(
            400,
            &["MANIFEST_BLOB_UNKNOWN"],
            "Push: a manifest refused for a missing blob MUST give MANIFEST_BLOB_UNKNOWN",
        );
        assert_manifest_absent(&reg, "v1", "a refused manifest must not be tagged").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_config_is_400_manifest_blob_unknown() {
        let img = image(11);
        let reg = TestRegistry::start().await;
        reg.push_blobs(REPO, &[&img.layers[0], &img.layers[1]])
            .await;
        let resp = reg
            .put_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest.body)
            .await;
        resp.expect_error(
            400,
            &["MANIFEST_BLOB_UNKNOWN"],
            "Push: a missing config is MANIFEST_BLOB_UNKNOWN",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_in_another_repository_does_not_count() {
        let img = image(12);
        let reg = TestRegistry::start().await;
        reg.push_blobs("other/repo", &img.blobs()).await;
        let resp = reg
            .put_manifest(REPO, "v1", OCI_MANIFEST, &img.manifest.body)
            .await;
        resp.expect_error(
            400,
            &["MANIFEST_BLOB_UNKNOWN"],
            "wharf: manifests may only reference blobs of their own repository",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nondistributable_layers_need_not_be_pushed() {
        // The official suite's "non-distributable layers" data set.
        let img = image(13);
        let reg = registry_with_blobs_of(&img).await;
        let foreign = |seed: u64, media_type: &str| {
            let digest = sha256_digest(&pseudo_random(seed, 256));
            let url = format!("https://store.example.com/blobs/sha256/{}", &digest[7..]);
            json!({"mediaType": media_type, "digest": digest, "size": 123_456, "urls": [url]})
        };
        let mut value = img.manifest.value();
        let layers = value["layers"].as_array_mut().expect("layers");
        layers.insert(0, foreign(901, OCI_LAYER_ND_GZIP));
        layers.insert(1, foreign(902, OCI_LAYER_ND));
        let m = Manifest::from_json(OCI_MANIFEST, &value, Algorithm::Sha256);
        reg.push_manifest(REPO, "nondistributable", &m).await;
        assert_pullable(
            &reg,
            "nondistributable",
            &m,
            "non-distributable layers are not pushed",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_with_missing_child_is_refused() {
        let reg = TestRegistry::start().await;
        let present = image(14);
        reg.push_image(REPO, &present.manifest.digest, &present)
            .await;
        let absent = image(15);
        let index = index_of(&[&present.manifest, &absent.manifest]);
        let resp = reg
            .put_manifest(REPO, "sparse", OCI_INDEX, &index.body)
            .await;
        resp.expect_error(
            400,
            &["MANIFEST_BLOB_UNKNOWN"],
            "wharf: an index with absent children is refused unless sparse_indexes",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_with_missing_child_is_accepted_when_sparse() {
        let config = RegistryConfig {
            sparse_indexes: true,
            ..RegistryConfig::default()
        };
        let reg = TestRegistry::start_with(config).await;
        let present = image(16);
        reg.push_image(REPO, &present.manifest.digest, &present)
            .await;
        let index = index_of(&[&present.manifest, &image(17).manifest]);
        reg.push_manifest(REPO, "sparse", &index).await;
        assert_pullable(&reg, "sparse", &index, "sparse index").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nested_index_is_accepted() {
        let reg = TestRegistry::start().await;
        let images = [image(18), image(19), image(20), image(21)];
        for img in &images {
            reg.push_image(REPO, &img.manifest.digest, img).await;
        }
        let inner_a = index_of(&[&images[0].manifest, &images[1].manifest]);
        let inner_b = index_of(&[&images[2].manifest, &images[3].manifest]);
        reg.push_manifest(REPO, &inner_a.digest, &inner_a).await;
        reg.push_manifest(REPO, &inner_b.digest, &inner_b).await;
        let outer = index_of(&[&inner_a, &inner_b]);
        reg.push_manifest(REPO, "index-of-index", &outer).await;
        assert_pullable(&reg, "index-of-index", &outer, "an index of indexes").await;
    }
}

mod limits_and_validation {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifest_over_the_limit_is_413_size_invalid() {
        let config = RegistryConfig {
            max_manifest_bytes: 2048,
            ..RegistryConfig::default()
        };
        let reg = TestRegistry::start_with(config).await;
        let big = ImageSpec {
            seed: 30,
            annotations: Some(json!({ "padding": "x".repeat(4096) })),
            ..ImageSpec::default()
        }
        .build();
        reg.push_blobs(REPO, &big.blobs()).await;
        let resp = reg
            .put_manifest(REPO, "big", OCI_MANIFEST, &big.manifest.body)
            .await;
        resp.expect_error(
            413,
            &["SIZE_INVALID"],
            "end-7: a manifest over the limit SHOULD be 413 Payload Too Large",
        );
        assert_manifest_absent(&reg, "big", "a refused manifest must not exist").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_manifest_under_four_mebibytes_is_accepted() {
        // The official suite's "large manifest": 390 annotations of 10000 bytes.
        let annotations: serde_json::Map<String, serde_json::Value> = (0..390)
            .map(|i| (format!("large-annotation-{i}"), json!("A".repeat(10_000))))
            .collect();
        let img = ImageSpec {
            seed: 31,
            annotations: Some(serde_json::Value::Object(annotations)),
            ..ImageSpec::default()
        }
        .build();
        assert!(
            img.manifest.body.len() > 3_900_000,
            "the test manifest is large"
        );
        let reg = registry_with_blobs_of(&img).await;
        reg.push_manifest(REPO, "large", &img.manifest).await;
        assert_pullable(
            &reg,
            "large",
            &img.manifest,
            "end-7: at least 4 MB manifests SHOULD work",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn content_type_must_match_media_type() {
        let img = image(32);
        let reg = registry_with_blobs_of(&img).await;
        let resp = reg
            .put_manifest(REPO, "mismatch", OCI_INDEX, &img.manifest.body)
            .await;
        resp.expect_error(
            400,
            &["MANIFEST_INVALID"],
            "end-7: Content-Type MUST match the manifest's mediaType",
        );
        assert_manifest_absent(&reg, "mismatch", "a refused manifest must not be tagged").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_json_is_400_manifest_invalid() {
        let reg = TestRegistry::start().await;
        for body in [
            &b"blablabla"[..],
            b"{\"schemaVersion\": 2, ",
            b"[]",
            b"null",
            b"",
        ] {
            let resp = reg.put_manifest(REPO, "broken", OCI_MANIFEST, body).await;
            resp.expect_error(
                400,
                &["MANIFEST_INVALID"],
                &format!(
                    "end-7: {:?} is not a manifest",
                    String::from_utf8_lossy(body)
                ),
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_by_wrong_digest_is_400_digest_invalid() {
        let img = image(33);
        let reg = registry_with_blobs_of(&img).await;
        let mut body = img.manifest.body.clone();
        body.extend_from_slice(b"  ");
        let resp = reg
            .put_manifest(REPO, &img.manifest.digest, OCI_MANIFEST, &body)
            .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-7: the body must match the digest it is pushed by",
        );
        assert_manifest_absent(
            &reg,
            &img.manifest.digest,
            "a refused manifest must not exist",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_by_malformed_digest_is_400() {
        let img = image(34);
        let reg = registry_with_blobs_of(&img).await;
        let resp = reg
            .put_manifest(
                REPO,
                "sha256:baddigeststring",
                OCI_MANIFEST,
                &img.manifest.body,
            )
            .await;
        resp.expect_error(
            400,
            &["DIGEST_INVALID"],
            "end-7: a malformed digest reference must be 400",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tag_length_limit_is_128() {
        let img = image(35);
        let reg = registry_with_blobs_of(&img).await;
        let longest = format!("t{}", "a".repeat(127));
        reg.push_manifest(REPO, &longest, &img.manifest).await;
        let too_long = format!("t{}", "a".repeat(128));
        let resp = reg
            .put_manifest(REPO, &too_long, OCI_MANIFEST, &img.manifest.body)
            .await;
        resp.expect_status(400, "Pulling manifests: a tag is at most 128 characters");
        error_codes(&resp);
    }
}

mod tags {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tag_parameters_create_tags_and_oci_tag_headers() {
        let img = image(40);
        let reg = registry_with_blobs_of(&img).await;
        let path = format!(
            "/v2/{REPO}/manifests/{}?tag=1.2.3&tag=latest",
            img.manifest.digest
        );
        let resp = reg
            .send(
                reg.request(reqwest::Method::PUT, reg.url(&path))
                    .header("Content-Type", OCI_MANIFEST)
                    .body(img.manifest.body.clone()),
            )
            .await;
        resp.expect_status(201, "end-7b: push by digest with tag parameters");
        let announced: Vec<String> = resp
            .header_values("OCI-Tag")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .collect();
        for tag in ["1.2.3", "latest"] {
            assert!(
                announced.iter().any(|t| t == tag),
                "end-7b: an OCI-Tag header MUST list each accepted tag ({tag}): {announced:?}"
            );
            assert_pullable(&reg, tag, &img.manifest, "end-7b tag created by parameter").await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushing_a_tag_again_moves_it() {
        let (first, second) = (image(41), image(42));
        let reg = registry_with_blobs_of(&first).await;
        reg.push_blobs(REPO, &second.blobs()).await;
        reg.push_manifest(REPO, "moving", &first.manifest).await;
        reg.push_manifest(REPO, "moving", &second.manifest).await;
        assert_pullable(
            &reg,
            "moving",
            &second.manifest,
            "a re-pushed tag points at the new manifest",
        )
        .await;
        assert_pullable(
            &reg,
            &first.manifest.digest,
            &first.manifest,
            "the old manifest stays by digest",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_manifest_under_several_tags() {
        let img = image(43);
        let reg = registry_with_blobs_of(&img).await;
        for i in 0..4 {
            reg.push_manifest(REPO, &format!("test{i}"), &img.manifest)
                .await;
        }
        for i in 0..4 {
            assert_pullable(
                &reg,
                &format!("test{i}"),
                &img.manifest,
                "each tag resolves",
            )
            .await;
        }
    }
}

mod subject {
    use super::*;

    fn assert_oci_subject(resp: &Resp, subject: &Manifest, why: &str) {
        resp.expect_header(
            "OCI-Subject",
            &subject.digest,
            &format!("{why}: a registry with the referrers API MUST answer OCI-Subject"),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn image_manifest_with_subject_answers_oci_subject() {
        let reg = TestRegistry::start().await;
        let subject = image(50);
        reg.push_image(REPO, "base", &subject).await;
        let art = artifact(
            51,
            "application/vnd.example.signature.v1",
            Some(&subject.manifest),
        );
        let resp = reg.push_image(REPO, &art.manifest.digest, &art).await;
        assert_oci_subject(&resp, &subject.manifest, "Pushing Manifests with Subject");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subject_that_does_not_exist_is_accepted() {
        let reg = TestRegistry::start().await;
        let never_pushed = image(52);
        let art = artifact(
            53,
            "application/vnd.example.sbom.v1",
            Some(&never_pushed.manifest),
        );
        let resp = reg.push_image(REPO, "tagged-artifact", &art).await;
        assert_oci_subject(
            &resp,
            &never_pushed.manifest,
            "Push: a missing subject MUST be accepted",
        );
        assert_pullable(
            &reg,
            "tagged-artifact",
            &art.manifest,
            "artifact with a missing subject",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_with_subject_answers_oci_subject() {
        let reg = TestRegistry::start().await;
        let subject = image(54);
        reg.push_image(REPO, "base", &subject).await;
        let child = image(55);
        reg.push_image(REPO, &child.manifest.digest, &child).await;
        let index = IndexSpec {
            artifact_type: Some("application/vnd.example.bundle.v1".into()),
            subject: Some(subject.manifest.descriptor()),
            ..IndexSpec::default()
        }
        .build(&[&child.manifest]);
        let resp = reg.push_manifest(REPO, &index.digest, &index).await;
        assert_oci_subject(&resp, &subject.manifest, "an index with subject");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifest_without_subject_has_no_oci_subject() {
        let img = image(56);
        let reg = registry_with_blobs_of(&img).await;
        let resp = reg.push_manifest(REPO, "plain", &img.manifest).await;
        assert!(
            resp.header("OCI-Subject").is_none(),
            "OCI-Subject answers a processed subject; a manifest without one gets none"
        );
    }
}

mod sha512 {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sha512_image_and_index_by_digest() {
        let reg = TestRegistry::start().await;
        let children: Vec<Image> = (60..62)
            .map(|seed| {
                ImageSpec {
                    seed,
                    algorithm: Algorithm::Sha512,
                    ..ImageSpec::default()
                }
                .build()
            })
            .collect();
        for child in &children {
            let resp = reg.push_image(REPO, &child.manifest.digest, child).await;
            resp.expect_header(
                "Docker-Content-Digest",
                &child.manifest.digest,
                "end-7 with a sha512 digest",
            );
        }
        let index = IndexSpec {
            algorithm: Algorithm::Sha512,
            ..IndexSpec::default()
        }
        .build(&[&children[0].manifest, &children[1].manifest]);
        reg.push_manifest(REPO, &index.digest, &index).await;
        let resp = reg
            .get(&format!("/v2/{REPO}/manifests/{}", index.digest))
            .await;
        resp.expect_status(200, "end-3: pull by sha512 digest");
        assert_eq!(resp.body, index.body, "end-3: the sha512 index bytes");
        resp.expect_header(
            "Docker-Content-Digest",
            &index.digest,
            "end-3: the sha512 digest is kept",
        );
    }
}
