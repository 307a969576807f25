//! Copies from and to Debian's `docker-registry` (CNCF distribution 2.8),
//! open and with htpasswd Basic auth.

mod common;

use std::sync::Arc;

use common::*;
use wharf_oci::{media_type, Digest, ParsedManifest};
use wharf_testkit::image::{push, referrer, Format};
use wharf_testkit::{DockerAuth, DockerRegistry, TokenPolicy, TokenServer, WharfRegistry};
use wharf_transfer::{NoEvents, Options, PlatformSpec, Status, Transfer};

const USER: &str = "wharf";
const PASSWORD: &str = "s3cret:with:colons";

#[tokio::test]
async fn basic_auth_source_and_destination_keep_digests() {
    let src = DockerRegistry::start(DockerAuth::Htpasswd {
        user: USER,
        password: PASSWORD,
    })
    .await;
    let dst = DockerRegistry::start(DockerAuth::Htpasswd {
        user: USER,
        password: PASSWORD,
    })
    .await;
    let oci = oci_image(201);
    let docker = docker_image(202);
    let src_client = client_for(&src.host, USER, PASSWORD);
    push(&src_client, &src.host, &repo("apps/oci"), Some("v1"), &oci).await;
    push(
        &src_client,
        &src.host,
        &repo("apps/docker"),
        Some("v1"),
        &docker,
    )
    .await;
    let jobs = vec![
        job(
            &format!("{}/apps/oci:v1", src.host),
            &format!("{}/apps/oci:v1", dst.host),
        ),
        job(
            &format!("{}/apps/docker:v1", src.host),
            &format!("{}/apps/docker:v1", dst.host),
        ),
    ];

    let dst_client = client_for(&dst.host, USER, PASSWORD);
    let transfer = Transfer::new(
        src_client,
        dst_client.clone(),
        Options::default(),
        Arc::new(NoEvents),
    );
    let reports = transfer.run(jobs.clone()).await;
    assert!(
        reports.iter().all(|r| r.status == Status::Copied),
        "{reports:?}"
    );
    for (img, name) in [(&oci, "apps/oci"), (&docker, "apps/docker")] {
        let at = reference(&format!("{}/{name}:v1", dst.host));
        let m = dst_client.get_manifest(&at).await.unwrap();
        assert_eq!(m.bytes.to_vec(), img.manifest);
        assert_eq!(m.media_type, img.media_type);
    }

    // Wrong credentials: every image fails, named, with the cause.
    let wrong = client_for(&src.host, USER, "wrong");
    let reports = Transfer::new(wrong, client(), Options::default(), Arc::new(NoEvents))
        .run(jobs)
        .await;
    for r in &reports {
        assert_eq!(r.error_cause, Some("unauthorized"), "{r:?}");
    }
}

#[tokio::test]
async fn a_platform_subset_to_distribution_writes_a_filtered_index() {
    let src = WharfRegistry::start().await;
    let dst = DockerRegistry::start(DockerAuth::None).await;
    let index = multi_platform(
        Format::Docker,
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        210,
    );
    push(&client(), &src.host, &repo("multi"), Some("v1"), &index).await;
    let options = Options {
        platforms: vec![
            "linux/arm64".parse::<PlatformSpec>().unwrap(),
            "linux/arm/v7".parse().unwrap(),
        ],
        ..Options::default()
    };
    let reports = run(
        vec![job(
            &format!("{}/multi:v1", src.host),
            &format!("{}/multi:v1", dst.host),
        )],
        options,
    )
    .await;
    let report = &reports[0];
    assert_eq!(report.status, Status::Copied, "{report:?}");
    assert!(
        report.notes[0].contains("filtered index with 2 of 3"),
        "{report:?}"
    );
    let m = client()
        .get_manifest(&reference(&format!("{}/multi:v1", dst.host)))
        .await
        .unwrap();
    assert_eq!(Some(m.digest.clone()), report.digest);
    assert_ne!(m.digest, index.digest());
    let parsed = ParsedManifest::parse(&m.bytes, Some(media_type::DOCKER_MANIFEST_LIST)).unwrap();
    let kept: Vec<Digest> = parsed.manifests.iter().map(|d| d.digest.clone()).collect();
    assert_eq!(
        kept,
        [
            index.child("linux/arm64").digest(),
            index.child("linux/arm/v7").digest()
        ]
    );
}

#[tokio::test]
async fn distribution_to_wharf_and_back_again_is_incremental() {
    let src = DockerRegistry::start(DockerAuth::None).await;
    let dst = WharfRegistry::start().await;
    let index = multi_platform(Format::Oci, &["linux/amd64", "linux/arm64"], 220);
    push(
        &client(),
        &src.host,
        &repo("library/multi"),
        Some("v1"),
        &index,
    )
    .await;
    let jobs = vec![job(
        &format!("{}/library/multi:v1", src.host),
        &format!("{}/library/multi:v1", dst.host),
    )];
    let first = run(jobs.clone(), Options::default()).await;
    assert_eq!(first[0].status, Status::Copied, "{first:?}");
    assert_eq!(first[0].digest, Some(index.digest()));
    let second = run(jobs, Options::default()).await;
    assert_eq!(second[0].status, Status::UpToDate, "{second:?}");
    assert_eq!(second[0].bytes_sent, 0);
}

/// distribution 2.8 has no referrers API: the copy writes the tag index
/// clients fall back to.
#[tokio::test]
async fn referrers_reach_a_registry_without_the_referrers_api() {
    let src = WharfRegistry::start().await;
    let dst = DockerRegistry::start(DockerAuth::None).await;
    let c = client();
    let img = oci_image(230);
    push(&c, &src.host, &repo("signed"), Some("v1"), &img).await;
    let sig = referrer(&img, 231);
    push(&c, &src.host, &repo("signed"), None, &sig).await;

    let options = Options {
        referrers: true,
        ..Options::default()
    };
    let jobs = vec![job(
        &format!("{}/signed:v1", src.host),
        &format!("{}/signed:v1", dst.host),
    )];
    let reports = run(jobs.clone(), options.clone()).await;
    assert_eq!(reports[0].status, Status::Copied, "{reports:?}");
    assert_eq!(reports[0].referrers_copied, 1);
    let found = c
        .referrers(&dst.host, &repo("signed"), &img.digest(), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sig.digest());
    let again = run(jobs, options).await;
    assert_eq!(again[0].status, Status::UpToDate);
    assert_eq!(again[0].referrers_copied, 0);
}

#[tokio::test]
async fn a_token_auth_source_syncs() {
    let tokens = TokenServer::start(TokenPolicy::default()).await;
    let src = DockerRegistry::start(DockerAuth::token(&tokens)).await;
    let dst = WharfRegistry::start().await;
    let img = docker_image(240);
    push(&client(), &src.host, &repo("library/app"), Some("v1"), &img).await;
    let list = format!("{}/library/app:v1\n", src.host);
    let map = wharf_transfer::DestinationMap::new(&dst.host, true);
    let (jobs, failures, _) =
        wharf_transfer::plan_jobs(&client(), wharf_transfer::parse_list(&list), &map, false).await;
    assert!(failures.is_empty(), "{failures:?}");
    let reports = run(jobs, Options::default()).await;
    assert_eq!(reports[0].status, Status::Copied, "{reports:?}");
    let m = client()
        .get_manifest(&reference(&format!("{}/library/app:v1", dst.host)))
        .await
        .unwrap();
    assert_eq!(m.bytes.to_vec(), img.manifest);
}
