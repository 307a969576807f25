//! Spec "Content Discovery" category: tags list (end-8a/end-8b), referrers
//! (end-12a/end-12b), and wharf's catalog.

mod common;

use common::*;
use serde_json::{json, Value};
use wharf_testkit::sha256_digest;

const REPO: &str = "conformance/discovery";

/// One manifest pushed under every tag in `tags`.
async fn registry_with_tags(tags: &[&str]) -> TestRegistry {
    let reg = TestRegistry::start().await;
    let img = image(1);
    reg.push_blobs(REPO, &img.blobs()).await;
    for tag in tags {
        reg.push_manifest(REPO, tag, &img.manifest).await;
    }
    reg
}

fn is_sorted_for_spec(tags: &[String]) -> bool {
    let mut ascii = tags.to_vec();
    ascii.sort();
    let mut lexical = tags.to_vec();
    lexical.sort_by_key(|t| t.to_lowercase());
    tags == ascii.as_slice() || tags == lexical.as_slice()
}

fn sorted(tags: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    all.sort();
    all
}

async fn tags_page(reg: &TestRegistry, query: &str) -> Resp {
    let resp = reg.get(&format!("/v2/{REPO}/tags/list{query}")).await;
    resp.expect_status(200, &format!("end-8: tags list{query} must be 200 OK"));
    resp
}

mod tags_list {
    use super::*;

    const TAGS: [&str; 8] = [
        "test1", "TEST0", "test0", "latest", "1.0", "TEST1", "v2", "a_b",
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_every_tag_in_order() {
        let reg = registry_with_tags(&TAGS).await;
        let resp = tags_page(&reg, "").await;
        assert_eq!(
            resp.json()["name"],
            json!(REPO),
            "end-8a: \"name\" is the repository"
        );
        let tags = tags_of(&resp);
        let mut got = tags.clone();
        got.sort();
        assert_eq!(got, sorted(&TAGS), "end-8a: every tag must be listed");
        assert!(
            is_sorted_for_spec(&tags),
            "end-8a: tags MUST be in lexical or ASCIIbetical order: {tags:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn n_limits_the_page() {
        let reg = registry_with_tags(&TAGS).await;
        let all = tags_of(&tags_page(&reg, "").await);
        let page = tags_page(&reg, "?n=3").await;
        assert_eq!(
            tags_of(&page),
            all[..3].to_vec(),
            "end-8b: n=3 MUST return the first 3 tags"
        );
        assert!(
            next_link(&page).is_some(),
            "wharf: a Link header announces the next page when more tags exist"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_starts_after_the_given_tag() {
        let reg = registry_with_tags(&TAGS).await;
        let all = tags_of(&tags_page(&reg, "").await);
        let last = &all[3];
        let page = tags_page(&reg, &format!("?n=2&last={last}")).await;
        assert_eq!(
            tags_of(&page),
            all[4..6].to_vec(),
            "end-8b: last is exclusive, n bounds the page"
        );
        let rest = tags_page(&reg, &format!("?last={last}")).await;
        assert_eq!(
            tags_of(&rest),
            all[4..].to_vec(),
            "end-8b: n is OPTIONAL with last"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn n_zero_is_empty_without_link() {
        let reg = registry_with_tags(&TAGS).await;
        let page = tags_page(&reg, "?n=0").await;
        assert!(
            tags_of(&page).is_empty(),
            "end-8b: n=0 MUST return an empty list"
        );
        assert!(
            page.header("Link").is_none(),
            "end-8b: n=0 MUST NOT include a Link header"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn following_links_walks_every_tag_once() {
        let reg = registry_with_tags(&TAGS).await;
        let all = tags_of(&tags_page(&reg, "").await);
        let mut walked = Vec::new();
        let mut resp = tags_page(&reg, "?n=3").await;
        loop {
            let page = tags_of(&resp);
            assert!(page.len() <= 3, "end-8b: a page holds at most n tags");
            walked.extend(page);
            let Some(next) = next_link(&resp) else { break };
            resp = reg.get_url(reg.resolve(&next)).await;
            resp.expect_status(200, "end-8b: the Link target must be 200 OK");
        }
        assert_eq!(
            walked, all,
            "end-8b: following Link yields the whole list once, in order"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_repository_is_404_name_unknown() {
        let reg = TestRegistry::start().await;
        reg.get("/v2/no/such/repo/tags/list").await.expect_error(
            404,
            &["NAME_UNKNOWN"],
            "end-8a: the tags of an unknown repository are 404 NAME_UNKNOWN",
        );
    }
}

mod referrers {
    use super::*;

    const SBOM: &str = "application/vnd.example.sbom.v1";
    const SIGNATURE: &str = "application/vnd.example.signature.v1";

    async fn referrers(reg: &TestRegistry, repo: &str, subject: &str, query: &str) -> Resp {
        let resp = reg
            .get(&format!("/v2/{repo}/referrers/{subject}{query}"))
            .await;
        resp.expect_status(200, "end-12: referrers MUST be 200 OK (never 404)");
        resp.expect_header(
            "Content-Type",
            OCI_INDEX,
            "end-12: Content-Type MUST be application/vnd.oci.image.index.v1+json",
        );
        let index = resp.json();
        assert_eq!(
            index["schemaVersion"],
            json!(2),
            "end-12: the answer is an image index"
        );
        assert_eq!(
            index["mediaType"],
            json!(OCI_INDEX),
            "end-12: the index names its mediaType"
        );
        resp
    }

    fn entries(resp: &Resp) -> Vec<Value> {
        resp.json()["manifests"]
            .as_array()
            .expect("end-12: \"manifests\" must be an array")
            .clone()
    }

    fn entry_for<'a>(entries: &'a [Value], m: &Manifest) -> &'a Value {
        entries
            .iter()
            .find(|e| e["digest"] == json!(m.digest))
            .unwrap_or_else(|| panic!("end-12: referrer {} must be listed", m.digest))
    }

    fn assert_descriptor(entry: &Value, m: &Manifest, artifact_type: Option<&str>) {
        assert_eq!(
            entry["mediaType"],
            json!(m.media_type),
            "end-12: descriptor mediaType"
        );
        assert_eq!(
            entry["size"],
            json!(m.body.len()),
            "end-12: descriptor size"
        );
        match artifact_type {
            Some(at) => assert_eq!(
                entry["artifactType"],
                json!(at),
                "end-12: descriptor artifactType"
            ),
            None => assert!(
                entry.get("artifactType").is_none(),
                "end-12: an index without artifactType MUST have it omitted: {entry}"
            ),
        }
        let annotations = m.value()["annotations"].clone();
        if !annotations.is_null() {
            assert_eq!(
                entry["annotations"], annotations,
                "end-12: annotations MUST be copied"
            );
        }
    }

    /// A subject image plus referrers of every kind the spec distinguishes.
    struct Fixture {
        reg: TestRegistry,
        subject: Image,
        sbom: Image,
        signature: Image,
        config_typed: Image,
        typed_index: Manifest,
        untyped_index: Manifest,
    }

    async fn fixture() -> Fixture {
        let reg = TestRegistry::start().await;
        let subject = image(100);
        reg.push_image(REPO, "image", &subject).await;
        let sbom = artifact(101, SBOM, Some(&subject.manifest));
        let signature = artifact(102, SIGNATURE, Some(&subject.manifest));
        let config_typed = ImageSpec {
            seed: 103,
            config_media_type: "application/vnd.example.config.v1+json".into(),
            config_data: Some(b"{\"kind\":\"config-typed\"}".to_vec()),
            subject: Some(subject.manifest.descriptor()),
            annotations: Some(json!({"org.example.kind": "config-typed"})),
            ..ImageSpec::default()
        }
        .build();
        for art in [&sbom, &signature, &config_typed] {
            reg.push_image(REPO, &art.manifest.digest, art).await;
        }
        let typed_index = referrer_index(
            &reg,
            &sbom,
            Some("application/vnd.example.bundle.v1"),
            &subject,
        )
        .await;
        let untyped_index = referrer_index(&reg, &signature, None, &subject).await;
        Fixture {
            reg,
            subject,
            sbom,
            signature,
            config_typed,
            typed_index,
            untyped_index,
        }
    }

    async fn referrer_index(
        reg: &TestRegistry,
        child: &Image,
        artifact_type: Option<&str>,
        subject: &Image,
    ) -> Manifest {
        let index = IndexSpec {
            artifact_type: artifact_type.map(str::to_string),
            subject: Some(subject.manifest.descriptor()),
            annotations: Some(json!({"org.example.index": artifact_type.unwrap_or("untyped")})),
            ..IndexSpec::default()
        }
        .build(&[&child.manifest]);
        reg.push_manifest(REPO, &index.digest, &index).await;
        index
    }

    /// An SBOM referrer of `subject` whose one annotation is `size` bytes.
    fn annotated_artifact(seed: u64, subject: &Image, size: usize) -> Image {
        ImageSpec {
            seed,
            layers: 1,
            config_media_type: OCI_EMPTY_JSON.to_string(),
            config_data: Some(b"{}".to_vec()),
            layer_media_type: SBOM.to_string(),
            artifact_type: Some(SBOM.to_string()),
            subject: Some(subject.manifest.descriptor()),
            annotations: Some(json!({ "org.example.note": "n".repeat(size) })),
            ..ImageSpec::default()
        }
        .build()
    }

    /// The `rel="next"` target of a response, if any.
    fn next_page(resp: &Resp) -> Option<String> {
        let link = resp.header("link")?;
        assert!(link.ends_with("rel=\"next\""), "a next link: {link}");
        let target = link.strip_prefix('<')?.split_once('>')?.0;
        Some(target.to_string())
    }

    /// Every page of a listing: the entries, and each page's body size.
    async fn every_page(
        reg: &TestRegistry,
        subject: &str,
        query: &str,
    ) -> (Vec<Value>, Vec<usize>) {
        let mut resp = referrers(reg, REPO, subject, query).await;
        let (mut all, mut sizes) = (Vec::new(), Vec::new());
        loop {
            all.extend(entries(&resp));
            sizes.push(resp.body.len());
            let Some(next) = next_page(&resp) else {
                return (all, sizes);
            };
            assert!(sizes.len() < 100, "the pages never end");
            resp = reg.get(&next).await;
            resp.expect_status(200, "end-12: the next page");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn annotations_cannot_inflate_a_listing() {
        let reg = TestRegistry::start().await;
        let subject = image(110);
        reg.push_image(REPO, "image", &subject).await;
        let heavy: Vec<Image> = (0..12)
            .map(|i| annotated_artifact(111 + i, &subject, 1024 * 1024))
            .collect();
        let light = artifact(130, SBOM, Some(&subject.manifest));
        for art in heavy.iter().chain([&light]) {
            reg.push_image(REPO, &art.manifest.digest, art).await;
        }
        let (listed, sizes) = every_page(&reg, &subject.manifest.digest, "").await;
        assert_eq!(listed.len(), 13, "every referrer is listed once");
        assert!(
            sizes.iter().all(|s| *s < 64 * 1024),
            "12 MiB of annotations must not reach the listing: pages of {sizes:?} bytes"
        );
        for art in &heavy {
            let entry = entry_for(&listed, &art.manifest);
            assert_eq!(entry["artifactType"], json!(SBOM));
            assert_eq!(entry["size"], json!(art.manifest.body.len()));
            assert!(
                entry.get("annotations").is_none(),
                "annotations past the bound are left to the manifest: {}",
                entry["digest"]
            );
        }
        assert_descriptor(
            entry_for(&listed, &light.manifest),
            &light.manifest,
            Some(SBOM),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_is_bounded_in_bytes_and_links_to_the_next() {
        let reg = TestRegistry::start().await;
        let subject = image(140);
        reg.push_image(REPO, "image", &subject).await;
        // Just under the bound on annotations, so each is listed with them.
        let arts: Vec<Image> = (0..40)
            .map(|i| annotated_artifact(141 + i, &subject, 15 * 1024))
            .collect();
        for art in &arts {
            reg.push_image(REPO, &art.manifest.digest, art).await;
        }
        let (listed, sizes) = every_page(&reg, &subject.manifest.digest, "").await;
        assert!(sizes.len() > 1, "600 KiB of descriptors take several pages");
        assert!(
            sizes.iter().all(|s| *s <= 256 * 1024 + 16 * 1024),
            "pages of {sizes:?} bytes"
        );
        assert_eq!(listed.len(), arts.len());
        for art in &arts {
            assert_descriptor(entry_for(&listed, &art.manifest), &art.manifest, Some(SBOM));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn n_pages_a_listing_and_the_link_keeps_the_filter() {
        let f = fixture().await;
        let subject = &f.subject.manifest.digest;
        let (all, sizes) = every_page(&f.reg, subject, "?n=2").await;
        assert_eq!(sizes.len(), 3, "5 referrers in pages of 2");
        let mut digests: Vec<&str> = all.iter().map(|e| e["digest"].as_str().unwrap()).collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 5, "each referrer exactly once");

        for seed in [150, 151] {
            let sbom = artifact(seed, SBOM, Some(&f.subject.manifest));
            f.reg.push_image(REPO, &sbom.manifest.digest, &sbom).await;
        }
        let query = format!("?n=1&artifactType={SBOM}");
        let first = referrers(&f.reg, REPO, subject, &query).await;
        first.expect_header("OCI-Filters-Applied", "artifactType", "end-12: filtered");
        let next = next_page(&first).expect("two more SBOMs follow the first");
        assert!(
            next.contains("artifactType="),
            "the link keeps the filter: {next}"
        );
        let (sboms, _) = every_page(&f.reg, subject, &query).await;
        assert_eq!(sboms.len(), 3, "every SBOM, nothing else: {sboms:?}");
        assert!(sboms.iter().all(|e| e["artifactType"] == json!(SBOM)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_subject_is_an_empty_index() {
        let reg = TestRegistry::start().await;
        reg.push_image(REPO, "image", &image(1)).await;
        let resp = referrers(&reg, REPO, &sha256_digest(b"no such subject"), "").await;
        assert!(
            entries(&resp).is_empty(),
            "end-12: no referrers MUST be an empty manifests list"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_every_referrer_with_its_descriptor() {
        let f = fixture().await;
        let resp = referrers(&f.reg, REPO, &f.subject.manifest.digest, "").await;
        let list = entries(&resp);
        assert_eq!(
            list.len(),
            5,
            "end-12: exactly the five manifests with this subject"
        );
        assert_descriptor(
            entry_for(&list, &f.sbom.manifest),
            &f.sbom.manifest,
            Some(SBOM),
        );
        assert_descriptor(
            entry_for(&list, &f.signature.manifest),
            &f.signature.manifest,
            Some(SIGNATURE),
        );
        assert_descriptor(
            entry_for(&list, &f.config_typed.manifest),
            &f.config_typed.manifest,
            Some("application/vnd.example.config.v1+json"),
        );
        assert_descriptor(
            entry_for(&list, &f.typed_index),
            &f.typed_index,
            Some("application/vnd.example.bundle.v1"),
        );
        assert_descriptor(entry_for(&list, &f.untyped_index), &f.untyped_index, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn artifact_type_filter_applies_and_says_so() {
        let f = fixture().await;
        let query = format!("?artifactType={SBOM}");
        let resp = referrers(&f.reg, REPO, &f.subject.manifest.digest, &query).await;
        resp.expect_header(
            "OCI-Filters-Applied",
            "artifactType",
            "end-12b: an applied filter MUST be named in OCI-Filters-Applied",
        );
        let list = entries(&resp);
        assert_eq!(list.len(), 1, "end-12b: only the matching referrer remains");
        assert_descriptor(
            entry_for(&list, &f.sbom.manifest),
            &f.sbom.manifest,
            Some(SBOM),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn percent_encoded_filter_value_matches() {
        let f = fixture().await;
        let query = "?artifactType=application%2Fvnd.example.config.v1%2Bjson";
        let resp = referrers(&f.reg, REPO, &f.subject.manifest.digest, query).await;
        let list = entries(&resp);
        assert_eq!(
            list.len(),
            1,
            "end-12b: the decoded filter value selects one referrer"
        );
        assert_descriptor(
            entry_for(&list, &f.config_typed.manifest),
            &f.config_typed.manifest,
            Some("application/vnd.example.config.v1+json"),
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filter_without_matches_is_empty() {
        let f = fixture().await;
        let query = "?artifactType=application/vnd.example.none";
        let resp = referrers(&f.reg, REPO, &f.subject.manifest.digest, query).await;
        assert!(
            entries(&resp).is_empty(),
            "end-12b: nothing matches the filter"
        );
        resp.expect_header(
            "OCI-Filters-Applied",
            "artifactType",
            "end-12b: the filter was applied",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn referrers_pushed_before_their_subject_are_listed() {
        let reg = TestRegistry::start().await;
        let subject = image(110);
        let early = artifact(111, SBOM, Some(&subject.manifest));
        reg.push_image(REPO, &early.manifest.digest, &early).await;
        let before = referrers(&reg, REPO, &subject.manifest.digest, "").await;
        assert_descriptor(
            entry_for(&entries(&before), &early.manifest),
            &early.manifest,
            Some(SBOM),
        );
        reg.push_image(REPO, "image", &subject).await;
        let after = referrers(&reg, REPO, &subject.manifest.digest, "").await;
        assert_eq!(
            entries(&after).len(),
            1,
            "end-12: the referrer is still listed once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn referrers_are_scoped_to_the_repository() {
        let reg = TestRegistry::start().await;
        let subject = image(120);
        reg.push_image("scope/a", "image", &subject).await;
        reg.push_image("scope/b", "image", &subject).await;
        let art = artifact(121, SBOM, Some(&subject.manifest));
        reg.push_image("scope/a", &art.manifest.digest, &art).await;
        let other = referrers(&reg, "scope/b", &subject.manifest.digest, "").await;
        assert!(
            entries(&other).is_empty(),
            "end-12: descriptors are of manifests in the same <name> namespace"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleted_referrer_is_no_longer_listed() {
        let f = fixture().await;
        f.reg
            .delete(&format!("/v2/{REPO}/manifests/{}", f.sbom.manifest.digest))
            .await
            .expect_status(202, "end-9: delete the referrer");
        let resp = referrers(&f.reg, REPO, &f.subject.manifest.digest, "").await;
        let list = entries(&resp);
        assert_eq!(
            list.len(),
            4,
            "end-12: a deleted manifest is no longer a referrer"
        );
        assert!(
            !list
                .iter()
                .any(|e| e["digest"] == json!(f.sbom.manifest.digest)),
            "end-12: the deleted referrer must be gone"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_digest_is_400() {
        let reg = TestRegistry::start().await;
        reg.push_image(REPO, "image", &image(1)).await;
        for bad in ["sha256:abc", "notadigest", "sha256:ZZZZ"] {
            let resp = reg.get(&format!("/v2/{REPO}/referrers/{bad}")).await;
            resp.expect_status(
                400,
                &format!("end-12: a digest with invalid syntax ({bad}) MUST be 400"),
            );
            error_codes(&resp);
        }
    }
}

mod catalog {
    use super::*;

    const REPOS: [&str; 4] = ["zeta", "alpha/one", "beta", "alpha/two"];

    async fn registry_with_repos() -> TestRegistry {
        let reg = TestRegistry::start().await;
        let img = image(200);
        for repo in REPOS {
            reg.push_image(repo, "latest", &img).await;
        }
        reg
    }

    fn repositories(resp: &Resp) -> Vec<String> {
        resp.json()["repositories"]
            .as_array()
            .expect("catalog: \"repositories\" is an array")
            .iter()
            .map(|r| {
                r.as_str()
                    .expect("repository names are strings")
                    .to_string()
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catalog_lists_repositories_sorted() {
        let reg = registry_with_repos().await;
        let resp = reg.get("/v2/_catalog").await;
        resp.expect_status(200, "catalog must be 200 OK");
        assert_eq!(
            repositories(&resp),
            sorted(&REPOS),
            "catalog lists every repository, sorted"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catalog_pages_with_n_last_and_link() {
        let reg = registry_with_repos().await;
        let first = reg.get("/v2/_catalog?n=2").await;
        first.expect_status(200, "catalog page");
        let all = sorted(&REPOS);
        assert_eq!(
            repositories(&first),
            all[..2].to_vec(),
            "catalog n=2 returns the first two"
        );
        let next = next_link(&first).expect("catalog: a Link header announces the next page");
        let second = reg.get_url(reg.resolve(&next)).await;
        assert_eq!(
            repositories(&second),
            all[2..].to_vec(),
            "catalog: the Link target is the next page"
        );
        let after = reg.get(&format!("/v2/_catalog?last={}", all[1])).await;
        assert_eq!(
            repositories(&after),
            all[2..].to_vec(),
            "catalog: last is exclusive"
        );
    }
}
