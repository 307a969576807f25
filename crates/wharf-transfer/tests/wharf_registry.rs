//! Copies between wharf registries served in-process.

mod common;

use common::proxy::CountingProxy;
use common::*;
use wharf_oci::{media_type, Digest, ParsedManifest};
use wharf_registry::RegistryConfig;
use wharf_testkit::image::{push, referrer, Artifact, Format};
use wharf_testkit::WharfRegistry;
use wharf_transfer::{
    parse_list, parse_sync_file, plan_jobs, DestinationMap, Options, PlatformSpec, Status,
};

/// The manifest the destination serves at `reference`: its bytes.
async fn manifest_at(reference: &str) -> Option<(Vec<u8>, String)> {
    client()
        .get_manifest(&common::reference(reference))
        .await
        .ok()
        .map(|m| (m.bytes.to_vec(), m.media_type))
}

#[tokio::test]
async fn oci_and_docker_images_keep_their_digests() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let c = client();
    let oci = oci_image(1);
    let docker = docker_image(2);
    push(&c, &src.host, &repo("library/oci"), Some("v1"), &oci).await;
    push(&c, &src.host, &repo("library/docker"), Some("v1"), &docker).await;

    let reports = run(
        vec![
            job(
                &format!("{}/library/oci:v1", src.host),
                &format!("{}/library/oci:v1", dst.host),
            ),
            job(
                &format!("{}/library/docker:v1", src.host),
                &format!("{}/x/docker:v1", dst.host),
            ),
        ],
        Options::default(),
    )
    .await;

    assert!(
        reports.iter().all(|r| r.status == Status::Copied),
        "{reports:?}"
    );
    let (bytes, mt) = manifest_at(&format!("{}/library/oci:v1", dst.host))
        .await
        .unwrap();
    assert_eq!(bytes, oci.manifest);
    assert_eq!(mt, media_type::OCI_MANIFEST);
    let (bytes, mt) = manifest_at(&format!("{}/x/docker:v1", dst.host))
        .await
        .unwrap();
    assert_eq!(bytes, docker.manifest);
    assert_eq!(mt, media_type::DOCKER_MANIFEST);
    assert_eq!(reports[0].digest, Some(oci.digest()));
    assert_eq!(reports[0].bytes_sent, oci.blob_bytes());
    assert_eq!(reports[0].blobs_sent, 2);
    for blob in &docker.blobs {
        let size = c
            .head_blob(&dst.host, &repo("x/docker"), &blob.digest())
            .await
            .unwrap();
        assert_eq!(size, Some(blob.bytes.len() as u64));
    }
}

#[tokio::test]
async fn a_copy_by_digest_writes_no_tag() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let img = oci_image(3);
    push(&client(), &src.host, &repo("a/b"), Some("v1"), &img).await;
    let source = format!("{}/a/b@{}", src.host, img.digest());
    let destination = format!("{}/a/b@{}", dst.host, img.digest());
    let reports = run(vec![job(&source, &destination)], Options::default()).await;
    assert_eq!(reports[0].status, Status::Copied, "{reports:?}");
    assert_eq!(manifest_at(&destination).await.unwrap().0, img.manifest);
    assert!(manifest_at(&format!("{}/a/b:v1", dst.host)).await.is_none());
}

/// Five images in five repositories sharing a base layer; the layer crosses
/// the network once, the others are mounted. A second run sends nothing
/// and costs one manifest HEAD per image at each registry.
#[tokio::test]
async fn a_second_sync_sends_nothing_and_asks_little() {
    let (src_reg, dst_reg) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let src = CountingProxy::start(&src_reg.host, None).await;
    let dst = CountingProxy::start(&dst_reg.host, None).await;
    let c = client();
    let images: Vec<Artifact> = (0..5)
        .map(|i| layered(Format::Oci, "linux/amd64", 100 + i, &[99]))
        .collect();
    let mut list = String::new();
    for (i, img) in images.iter().enumerate() {
        push(
            &c,
            &src_reg.host,
            &repo(&format!("library/sync-{i:02}")),
            Some("v1"),
            img,
        )
        .await;
        list.push_str(&format!("{}/library/sync-{i:02}:v1\n", src.host));
    }
    let map = DestinationMap::new(&dst.host, true);
    let sync = || async {
        let (jobs, failures, _) = plan_jobs(&client(), parse_list(&list), &map, false).await;
        assert!(failures.is_empty(), "{failures:?}");
        run(jobs, Options::default()).await
    };

    let first = sync().await;
    assert!(
        first.iter().all(|r| r.status == Status::Copied),
        "{first:?}"
    );
    let unique: u64 = images.iter().map(|i| i.blob_bytes()).sum::<u64>()
        - 4 * images[0].layers()[0].bytes.len() as u64;
    let sent: u64 = first.iter().map(|r| r.bytes_sent).sum();
    assert_eq!(sent, unique, "the shared layer is sent once");
    assert_eq!(first.iter().map(|r| r.blobs_mounted).sum::<u32>(), 4);

    src.reset();
    dst.reset();
    let second = sync().await;
    assert!(
        second.iter().all(|r| r.status == Status::UpToDate),
        "{second:?}"
    );
    assert_eq!(second.iter().map(|r| r.bytes_sent).sum::<u64>(), 0);
    assert_eq!(dst.bytes_in(), 0);
    for proxy in [&src, &dst] {
        let seen = proxy.seen();
        let pings = seen.iter().filter(|s| s.is_ping()).count();
        let others: Vec<_> = seen.iter().filter(|s| !s.is_ping()).collect();
        assert!(pings <= 1, "{seen:?}");
        assert_eq!(others.len(), images.len(), "{seen:?}");
        assert!(others
            .iter()
            .all(|s| s.method == "HEAD" && s.path.contains("/manifests/")));
    }
    for (i, img) in images.iter().enumerate() {
        let at = format!("{}/library/sync-{i:02}:v1", dst_reg.host);
        assert_eq!(manifest_at(&at).await.unwrap().0, img.manifest);
    }
}

#[tokio::test]
async fn a_blob_with_wrong_bytes_is_never_pushed() {
    let (src_reg, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let bad = oci_image(7);
    let bad_layer = bad.layers()[0].digest();
    let src = CountingProxy::start(&src_reg.host, Some(bad_layer.clone())).await;
    let good = oci_image(8);
    let c = client();
    push(&c, &src_reg.host, &repo("bad"), Some("v1"), &bad).await;
    push(&c, &src_reg.host, &repo("good"), Some("v1"), &good).await;

    let reports = run(
        vec![
            job(
                &format!("{}/bad:v1", src.host),
                &format!("{}/bad:v1", dst.host),
            ),
            job(
                &format!("{}/good:v1", src.host),
                &format!("{}/good:v1", dst.host),
            ),
        ],
        Options::default(),
    )
    .await;

    assert_eq!(reports[0].status, Status::Failed);
    assert_eq!(
        reports[0].error_cause,
        Some("digest-mismatch"),
        "{:?}",
        reports[0]
    );
    assert!(reports[0]
        .error
        .as_ref()
        .unwrap()
        .contains(&bad_layer.to_string()));
    assert_eq!(
        c.head_blob(&dst.host, &repo("bad"), &bad_layer)
            .await
            .unwrap(),
        None
    );
    assert!(manifest_at(&format!("{}/bad:v1", dst.host)).await.is_none());
    assert_eq!(reports[1].status, Status::Copied);
    assert_eq!(
        manifest_at(&format!("{}/good:v1", dst.host))
            .await
            .unwrap()
            .0,
        good.manifest
    );
}

#[tokio::test]
async fn bad_list_entries_are_named_and_the_rest_copied() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let img = oci_image(11);
    push(&client(), &src.host, &repo("app"), Some("v1"), &img).await;
    let list = format!(
        "# apps\n{s}/app:v1\n{s}/app:missing\nNOT//valid\n{s}/app:v1\n127.0.0.1:1/nowhere:v1\n",
        s = src.host
    );
    let input = parse_list(&list);
    let map = DestinationMap::new(&dst.host, true);
    let (jobs, failures, notes) = plan_jobs(&client(), input, &map, false).await;
    assert_eq!(jobs.len(), 3, "the duplicate is dropped");
    assert!(
        notes.iter().any(|n| n.contains("more than once")),
        "{notes:?}"
    );
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].source, "NOT//valid");

    let reports = run(jobs, Options::default()).await;
    assert_eq!(reports[0].status, Status::Copied);
    assert_eq!(
        reports[1].error_cause,
        Some("not-found"),
        "{:?}",
        reports[1]
    );
    assert!(reports[1].source.ends_with("app:missing"));
    assert_eq!(reports[2].error_cause, Some("network"), "{:?}", reports[2]);
    assert_eq!(
        manifest_at(&format!("{}/app:v1", dst.host))
            .await
            .unwrap()
            .0,
        img.manifest
    );
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let img = oci_image(12);
    push(&client(), &src.host, &repo("app"), Some("v1"), &img).await;
    let reports = run(
        vec![job(
            &format!("{}/app:v1", src.host),
            &format!("{}/app:v1", dst.host),
        )],
        Options {
            dry_run: true,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(reports[0].status, Status::Planned, "{reports:?}");
    assert_eq!(reports[0].bytes_sent, img.blob_bytes());
    assert!(manifest_at(&format!("{}/app:v1", dst.host)).await.is_none());
    for blob in &img.blobs {
        let d = blob.digest();
        assert_eq!(
            client()
                .head_blob(&dst.host, &repo("app"), &d)
                .await
                .unwrap(),
            None
        );
    }
}

fn arm64_only() -> Options {
    Options {
        platforms: vec!["linux/arm64".parse::<PlatformSpec>().unwrap()],
        ..Options::default()
    }
}

#[tokio::test]
async fn all_platforms_by_default() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let index = multi_platform(
        Format::Docker,
        &["linux/amd64", "linux/arm64", "linux/arm/v7"],
        20,
    );
    push(&client(), &src.host, &repo("multi"), Some("v1"), &index).await;
    let reports = run(
        vec![job(
            &format!("{}/multi:v1", src.host),
            &format!("{}/multi:v1", dst.host),
        )],
        Options::default(),
    )
    .await;
    assert_eq!(reports[0].status, Status::Copied, "{reports:?}");
    assert_eq!(reports[0].manifests_written, 4);
    let (bytes, mt) = manifest_at(&format!("{}/multi:v1", dst.host))
        .await
        .unwrap();
    assert_eq!(bytes, index.manifest);
    assert_eq!(mt, media_type::DOCKER_MANIFEST_LIST);
    // The base layer is shared by the three platforms: sent once.
    let unique: u64 = index.children.iter().map(|i| i.blob_bytes()).sum::<u64>()
        - 2 * index.children[0].layers()[0].bytes.len() as u64;
    assert_eq!(reports[0].bytes_sent, unique);
}

#[tokio::test]
async fn a_platform_subset_keeps_the_index_digest_where_sparse_indexes_are_allowed() {
    let src = WharfRegistry::start().await;
    let dst = WharfRegistry::start_with(RegistryConfig {
        sparse_indexes: true,
        ..RegistryConfig::default()
    })
    .await;
    let index = multi_platform(Format::Oci, &["linux/amd64", "linux/arm64"], 30);
    push(&client(), &src.host, &repo("multi"), Some("v1"), &index).await;
    let reports = run(
        vec![job(
            &format!("{}/multi:v1", src.host),
            &format!("{}/multi:v1", dst.host),
        )],
        arm64_only(),
    )
    .await;
    assert_eq!(reports[0].status, Status::Copied, "{reports:?}");
    assert!(reports[0].notes.is_empty());
    assert_eq!(reports[0].digest, Some(index.digest()));
    assert_eq!(
        manifest_at(&format!("{}/multi:v1", dst.host))
            .await
            .unwrap()
            .0,
        index.manifest
    );
    let arm = format!("{}/multi@{}", dst.host, index.child("linux/arm64").digest());
    let amd = format!("{}/multi@{}", dst.host, index.child("linux/amd64").digest());
    assert!(manifest_at(&arm).await.is_some());
    assert!(manifest_at(&amd).await.is_none());
}

#[tokio::test]
async fn a_platform_subset_writes_a_filtered_index_where_it_must() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let index = multi_platform(Format::Oci, &["linux/amd64", "linux/arm64"], 40);
    push(&client(), &src.host, &repo("multi"), Some("v1"), &index).await;
    let reports = run(
        vec![job(
            &format!("{}/multi:v1", src.host),
            &format!("{}/multi:v1", dst.host),
        )],
        arm64_only(),
    )
    .await;
    let report = &reports[0];
    assert_eq!(report.status, Status::Copied, "{report:?}");
    assert!(report.notes[0].contains("filtered index"), "{report:?}");
    assert_eq!(report.source_digest, Some(index.digest()));
    let (bytes, _) = manifest_at(&format!("{}/multi:v1", dst.host))
        .await
        .unwrap();
    assert_eq!(Some(Digest::sha256_of(&bytes)), report.digest);
    let parsed = ParsedManifest::parse(&bytes, Some(media_type::OCI_INDEX)).unwrap();
    assert_eq!(parsed.manifests.len(), 1);
    assert_eq!(
        parsed.manifests[0].digest,
        index.child("linux/arm64").digest()
    );
}

#[tokio::test]
async fn referrers_follow_their_subject() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let c = client();
    let img = oci_image(50);
    push(&c, &src.host, &repo("signed"), Some("v1"), &img).await;
    let sig = referrer(&img, 51);
    push(&c, &src.host, &repo("signed"), None, &sig).await;

    let jobs = vec![job(
        &format!("{}/signed:v1", src.host),
        &format!("{}/signed:v1", dst.host),
    )];
    let without = run(jobs.clone(), Options::default()).await;
    assert_eq!(without[0].referrers_copied, 0);
    let reports = run(
        jobs,
        Options {
            referrers: true,
            ..Options::default()
        },
    )
    .await;
    assert_eq!(reports[0].status, Status::UpToDate, "{reports:?}");
    assert_eq!(reports[0].referrers_copied, 1);
    let found = c
        .referrers(&dst.host, &repo("signed"), &img.digest(), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sig.digest());
}

#[tokio::test]
async fn all_tags_and_sync_file_filters() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let c = client();
    let tags = [
        "v1.9.0", "v1.10.0", "v1.11.3", "v2.0.0", "latest", "nightly",
    ];
    for (i, tag) in tags.iter().enumerate() {
        let image = oci_image(60 + i as u64);
        push(&c, &src.host, &repo("tool"), Some(tag), &image).await;
    }
    let map = DestinationMap::new(&dst.host, false);

    let input = parse_list(&format!("{}/tool:v1.9.0\n", src.host));
    let (jobs, _, _) = plan_jobs(&c, input, &map, true).await;
    let mut all: Vec<String> = jobs
        .iter()
        .map(|j| j.source.tag().unwrap().to_string())
        .collect();
    all.sort();
    let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(all, expected);

    let file = format!(
        "[[repos]]\nrepo = \"{s}/tool\"\nsemver = \">=1.10, <2\"\n[[repos]]\nrepo = \"{s}/tool\"\ntag_regex = \"^lat\"\n[[images]]\nimage = \"{s}/tool:nightly\"\n",
        s = src.host
    );
    let (jobs, failures, _) = plan_jobs(&c, parse_sync_file(&file).unwrap(), &map, false).await;
    assert!(failures.is_empty(), "{failures:?}");
    let picked: Vec<String> = jobs
        .iter()
        .map(|j| j.source.tag().unwrap().to_string())
        .collect();
    assert_eq!(picked, ["nightly", "v1.10.0", "v1.11.3", "latest"]);
    let reports = run(jobs, Options::default()).await;
    assert!(
        reports.iter().all(|r| r.status == Status::Copied),
        "{reports:?}"
    );
    // The destination keeps the source host in the path.
    let host = src.host.replace(':', "_");
    let listed = c
        .tags_list(&dst.host, &repo(&format!("{host}/tool")))
        .await
        .unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
}

#[tokio::test]
async fn a_layer_from_an_earlier_run_is_mounted_not_sent() {
    let (src, dst) = (WharfRegistry::start().await, WharfRegistry::start().await);
    let c = client();
    // Two images that share one layer (seed 77), in different repositories.
    let first = layered(Format::Oci, "linux/amd64", 201, &[77]);
    let second = layered(Format::Oci, "linux/amd64", 202, &[77]);
    push(&c, &src.host, &repo("team/first"), Some("v1"), &first).await;
    push(&c, &src.host, &repo("team/second"), Some("v1"), &second).await;

    let earlier = run(
        vec![job(
            &format!("{}/team/first:v1", src.host),
            &format!("{}/mirror/first:v1", dst.host),
        )],
        Options::default(),
    )
    .await;
    assert_eq!(earlier[0].status, Status::Copied, "{earlier:?}");

    let later = run(
        vec![job(
            &format!("{}/team/second:v1", src.host),
            &format!("{}/mirror/second:v1", dst.host),
        )],
        Options::default(),
    )
    .await;
    assert_eq!(later[0].status, Status::Copied, "{later:?}");
    let shared = first.layers()[0].bytes.len() as u64;
    assert_eq!(
        later[0].bytes_sent,
        second.blob_bytes() - shared,
        "the shared layer is linked from the earlier run's repository: {later:?}"
    );
    assert_eq!(later[0].blobs_mounted, 1, "{later:?}");
    let (bytes, _) = manifest_at(&format!("{}/mirror/second:v1", dst.host))
        .await
        .unwrap();
    assert_eq!(bytes, second.manifest);
    let layer = first.layers()[0].digest();
    let linked = c
        .head_blob(&dst.host, &repo("mirror/second"), &layer)
        .await
        .unwrap();
    assert_eq!(linked, Some(shared), "the mounted layer is served there");
}
