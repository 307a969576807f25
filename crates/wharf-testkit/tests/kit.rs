//! The kit's own promises: images are deterministic and self-consistent,
//! launchers serve what is pushed, certificates verify against their CA,
//! and bounded waits end.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_client::{Client, ClientConfig};
use wharf_oci::{media_type, Digest, ParsedManifest};
use wharf_testkit::image::{self, push, random_image, seeded_image, Format};
use wharf_testkit::pki::Ca;
use wharf_testkit::tools::run_unchecked;
use wharf_testkit::{eventually, wait_for, WharfRegistry};

#[test]
fn the_same_inputs_give_the_same_digests() {
    for format in [Format::Oci, Format::Docker] {
        assert_eq!(
            image::multi_arch(format, "app").digest(),
            image::multi_arch(format, "app").digest()
        );
        assert_eq!(
            random_image(format, 3, 1000).digest(),
            random_image(format, 3, 1000).digest()
        );
        assert_ne!(
            random_image(format, 3, 1000).digest(),
            random_image(format, 4, 1000).digest()
        );
    }
}

#[test]
fn a_manifest_names_its_blobs_and_the_config_its_uncompressed_layers() {
    let image = seeded_image(Format::Docker, "linux/arm/v7", 9, &[(1, 5000), (2, 7000)]);
    let parsed = ParsedManifest::parse(&image.manifest, Some(media_type::DOCKER_MANIFEST))
        .expect("a valid Docker v2s2 manifest");
    let named: Vec<Digest> = parsed.required_blobs().map(|d| d.digest.clone()).collect();
    let blobs: Vec<Digest> = image.blobs.iter().map(|b| b.digest()).collect();
    assert_eq!(
        named, blobs,
        "config first, then layers, as the manifest lists them"
    );
    let config: serde_json::Value = serde_json::from_slice(&image.config().bytes).unwrap();
    assert_eq!(config["architecture"], "arm");
    assert_eq!(config["variant"], "v7");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn an_index_lists_its_children_with_their_platforms() {
    let shared = [(7, 4096)];
    let index = image::index(
        Format::Oci,
        vec![
            seeded_image(Format::Oci, "linux/amd64", 1, &shared),
            seeded_image(Format::Oci, "linux/arm64", 2, &shared),
        ],
    );
    assert_eq!(
        index.child("linux/arm64").digest(),
        index.children[1].digest()
    );
    assert_eq!(
        index.children[0].layer().digest(),
        index.children[1].layer().digest(),
        "children naming the same layer seed share it"
    );
    let text = String::from_utf8(index.manifest.clone()).unwrap();
    assert!(text.contains("\"arm64\""), "{text}");
    assert!(index
        .find(&index.children[1].config().digest().to_string())
        .is_some());
}

#[tokio::test]
async fn the_in_process_registry_serves_what_was_pushed() {
    let registry = WharfRegistry::start().await;
    let client = Client::new(ClientConfig::default()).unwrap();
    let repo = "kit/app".parse().unwrap();
    let index = image::multi_arch(Format::Oci, "kit");
    push(&client, &registry.host, &repo, Some("v1"), &index).await;
    let reference = format!("{}/kit/app:v1", registry.host).parse().unwrap();
    let fetched = client.get_manifest(&reference).await.unwrap();
    assert_eq!(fetched.bytes.as_ref(), index.manifest.as_slice());
    registry.stop().await.expect("the registry stops cleanly");
}

#[test]
fn a_server_certificate_verifies_against_its_ca_only() {
    let ca = Ca::new("kit CA");
    let other = Ca::new("another CA");
    let server = ca.issue(&["127.0.0.1", "registry.test"]);
    let verify = |ca: &Ca| {
        run_unchecked(
            Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&ca.cert)
                .arg(&server.cert),
        )
    };
    assert!(verify(&ca).status.success(), "{}", verify(&ca).describe());
    assert!(!verify(&other).status.success());
    let text = run_unchecked(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&server.cert),
    );
    assert!(
        text.stdout.contains("IP Address:127.0.0.1"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("DNS:registry.test"), "{}", text.stdout);
    server.server_config();
}

#[tokio::test]
async fn bounded_waits_end_at_their_bound() {
    let started = Instant::now();
    assert_eq!(wait_for(Duration::from_millis(100), || None::<()>), None);
    assert!(!eventually(Duration::from_millis(100), || async { false }).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut calls = 0;
    assert_eq!(
        wait_for(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        }),
        Some(3)
    );
}
