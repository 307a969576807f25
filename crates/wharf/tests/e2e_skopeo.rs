//! skopeo against a real `wharf serve`: pushes of generated OCI and Docker
//! v2 schema 2 images (single- and multi-platform) must come back byte for
//! byte, with the media type they were pushed with.

mod common;

use std::path::{Path, PathBuf};

use common::api::Api;
use common::image::{
    self, digest_hex, host_arch, sha256_digest, write_dir_transport, write_oci_layout, Artifact,
    Format,
};
use common::server::Wharf;
use common::tools::{run, skopeo};
use serde_json::Value;
use tempfile::TempDir;

struct Fixture {
    work: TempDir,
    wharf: Wharf,
    api: Api,
}

impl Fixture {
    fn new() -> Fixture {
        let work = tempfile::tempdir().expect("temp dir");
        let wharf = Wharf::start(work.path());
        let api = Api::new(&wharf.url());
        Fixture { work, wharf, api }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `docker://127.0.0.1:PORT/<repo_ref>`
    fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.wharf.host())
    }
}

fn skopeo_copy(extra: &[&str], from: &str, to: &str) {
    run(
        skopeo()
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(extra)
            .args([from, to]),
        &format!("skopeo copy {from} -> {to}"),
    );
}

fn skopeo_push(from: &str, to: &str, all: bool) {
    let mut extra = vec!["--preserve-digests"];
    if all {
        extra.push("--all");
    }
    skopeo_copy(&extra, from, to);
}

/// `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them.
fn skopeo_raw_manifest(reference: &str) -> Vec<u8> {
    let out = run(
        skopeo().args(["inspect", "--tls-verify=false", "--raw", reference]),
        &format!("skopeo inspect --raw {reference}"),
    );
    out.stdout.into_bytes()
}

/// The registry serves `artifact` (and everything it references) byte for
/// byte, with its media type and digest.
fn assert_stored(api: &Api, repo: &str, reference: &str, artifact: &Artifact) {
    let fetched = api
        .manifest(repo, reference)
        .unwrap_or_else(|e| panic!("manifest {repo}:{reference} not served: {e}"));
    assert_eq!(
        fetched.content_type, artifact.media_type,
        "{repo}:{reference}: served with a different media type than pushed"
    );
    assert_eq!(
        fetched.digest,
        artifact.digest(),
        "{repo}:{reference}: Docker-Content-Digest differs from the pushed manifest digest"
    );
    assert!(
        fetched.body == artifact.manifest,
        "{repo}:{reference}: manifest bytes differ from the pushed ones:\n{}",
        String::from_utf8_lossy(&fetched.body)
    );
    for child in &artifact.children {
        assert_stored(api, repo, &child.digest(), child);
    }
    for blob in &artifact.blobs {
        let digest = blob.digest();
        let bytes = api
            .blob(repo, &digest)
            .unwrap_or_else(|e| panic!("blob {digest} not served: {e}"));
        assert!(bytes == blob.bytes, "{repo}@{digest}: blob content differs");
    }
}

fn assert_raw_manifest(reference: &str, artifact: &Artifact) {
    let raw = skopeo_raw_manifest(reference);
    assert_eq!(
        sha256_digest(&raw),
        artifact.digest(),
        "skopeo inspect --raw {reference} returned a different manifest:\n{}",
        String::from_utf8_lossy(&raw)
    );
}

fn assert_tag_listed(api: &Api, repo: &str, tag: &str) {
    let tags = api
        .tags(repo)
        .unwrap_or_else(|e| panic!("tags of {repo}: {e}"));
    assert!(
        tags.iter().any(|t| t == tag),
        "tag {tag} missing from {repo} tags list: {tags:?}"
    );
}

/// The OCI layout at `dir` maps `tag` to `artifact` and holds all its blobs intact.
fn assert_layout_holds(dir: &Path, tag: &str, artifact: &Artifact) {
    let index: Value = serde_json::from_slice(
        &std::fs::read(dir.join("index.json")).expect("pulled layout has index.json"),
    )
    .expect("index.json is JSON");
    let entry = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("pulled layout has no entry for tag {tag}: {index}"));
    assert_eq!(
        entry["digest"],
        artifact.digest(),
        "pulled layout: manifest digest for {tag} was not preserved"
    );
    let mut manifests = vec![artifact];
    manifests.extend(&artifact.children);
    let mut expected: Vec<(String, &[u8])> = manifests
        .iter()
        .map(|m| (m.digest(), m.manifest.as_slice()))
        .collect();
    expected.extend(
        artifact
            .all_blobs()
            .into_iter()
            .map(|b| (b.digest(), b.bytes.as_slice())),
    );
    for (digest, bytes) in expected {
        let path = dir.join("blobs/sha256").join(digest_hex(&digest));
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("pulled layout lacks {}: {e}", path.display()));
        assert!(stored == bytes, "pulled layout: {digest} differs");
    }
}

/// The `dir:` directory holds `artifact` (manifest, per-platform manifests, blobs) unchanged.
fn assert_dir_holds(dir: &Path, artifact: &Artifact) {
    let manifest = std::fs::read(dir.join("manifest.json")).expect("pulled dir has manifest.json");
    assert_eq!(
        sha256_digest(&manifest),
        artifact.digest(),
        "pulled dir: manifest.json changed:\n{}",
        String::from_utf8_lossy(&manifest)
    );
    for child in &artifact.children {
        let name = format!("{}.manifest.json", digest_hex(&child.digest()));
        let bytes = std::fs::read(dir.join(&name))
            .unwrap_or_else(|e| panic!("pulled dir lacks {name}: {e}"));
        assert_eq!(
            sha256_digest(&bytes),
            child.digest(),
            "pulled dir: {name} changed"
        );
    }
    for blob in artifact.all_blobs() {
        let digest = blob.digest();
        let bytes = std::fs::read(dir.join(digest_hex(&digest)))
            .unwrap_or_else(|e| panic!("pulled dir lacks blob {digest}: {e}"));
        assert!(bytes == blob.bytes, "pulled dir: blob {digest} differs");
    }
}

#[test]
fn skopeo_round_trips_an_oci_image() {
    let fx = Fixture::new();
    let artifact = image::image(Format::Oci, "skopeo-oci", host_arch());
    let layout = fx.path("source-layout");
    write_oci_layout(&artifact, &layout, "v1");
    let repo = "e2e/skopeo-oci";
    let tagged = fx.docker_ref(&format!("{repo}:v1"));

    skopeo_push(&format!("oci:{}:v1", layout.display()), &tagged, false);

    assert_stored(&fx.api, repo, "v1", &artifact);
    assert_tag_listed(&fx.api, repo, "v1");
    assert_raw_manifest(&tagged, &artifact);
    let by_digest = fx.docker_ref(&format!("{repo}@{}", artifact.digest()));
    assert_raw_manifest(&by_digest, &artifact);

    let pulled = fx.path("pulled-layout");
    skopeo_copy(&[], &tagged, &format!("oci:{}:v1", pulled.display()));
    assert_layout_holds(&pulled, "v1", &artifact);
}

#[test]
fn skopeo_round_trips_a_docker_v2s2_image_without_conversion() {
    let fx = Fixture::new();
    let artifact = image::image(Format::Docker, "skopeo-v2s2", host_arch());
    let source = fx.path("source-dir");
    write_dir_transport(&artifact, &source);
    let repo = "e2e/skopeo-v2s2";
    let tagged = fx.docker_ref(&format!("{repo}:v1"));

    skopeo_push(&format!("dir:{}", source.display()), &tagged, false);

    assert_stored(&fx.api, repo, "v1", &artifact);
    assert_tag_listed(&fx.api, repo, "v1");
    assert_raw_manifest(&tagged, &artifact);

    let pulled = fx.path("pulled-dir");
    let by_digest = fx.docker_ref(&format!("{repo}@{}", artifact.digest()));
    skopeo_copy(&[], &by_digest, &format!("dir:{}", pulled.display()));
    assert_dir_holds(&pulled, &artifact);
}

#[test]
fn skopeo_round_trips_a_multi_arch_oci_index() {
    let fx = Fixture::new();
    let artifact = image::multi_arch(Format::Oci, "skopeo-index");
    let layout = fx.path("source-layout");
    write_oci_layout(&artifact, &layout, "multi");
    let repo = "e2e/skopeo-index";
    let tagged = fx.docker_ref(&format!("{repo}:multi"));

    skopeo_push(&format!("oci:{}:multi", layout.display()), &tagged, true);

    assert_stored(&fx.api, repo, "multi", &artifact);
    assert_raw_manifest(&tagged, &artifact);

    let pulled = fx.path("pulled-layout");
    skopeo_copy(
        &["--all"],
        &tagged,
        &format!("oci:{}:multi", pulled.display()),
    );
    assert_layout_holds(&pulled, "multi", &artifact);
}

#[test]
fn skopeo_round_trips_a_docker_manifest_list() {
    let fx = Fixture::new();
    let artifact = image::multi_arch(Format::Docker, "skopeo-list");
    let source = fx.path("source-dir");
    write_dir_transport(&artifact, &source);
    let repo = "e2e/skopeo-list";
    let tagged = fx.docker_ref(&format!("{repo}:multi"));

    skopeo_push(&format!("dir:{}", source.display()), &tagged, true);

    assert_stored(&fx.api, repo, "multi", &artifact);
    assert_raw_manifest(&tagged, &artifact);

    // Without --all, skopeo picks the host's platform from the list.
    let single = fx.path("pulled-single");
    skopeo_copy(&[], &tagged, &format!("dir:{}", single.display()));
    assert_dir_holds(&single, artifact.child_for(host_arch()));

    let pulled = fx.path("pulled-all");
    skopeo_copy(&["--all"], &tagged, &format!("dir:{}", pulled.display()));
    assert_dir_holds(&pulled, &artifact);
}

/// README.md's `skopeo copy` command lines, as written.
fn readme_skopeo_copies() -> Vec<String> {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
    readme
        .lines()
        .filter(|l| l.starts_with("skopeo copy "))
        .map(|l| l.split(" #").next().unwrap_or(l).trim().to_owned())
        .collect()
}

#[test]
fn the_readme_skopeo_copy_fills_a_plain_http_wharf_digest_for_digest() {
    let copies = readme_skopeo_copies();
    assert!(!copies.is_empty(), "README.md shows a skopeo copy");
    let upstream = Fixture::new();
    let fx = Fixture::new();
    // docker.io's stand-in: a multi-platform image, as alpine is.
    let artifact = image::multi_arch(Format::Docker, "readme-alpine");
    common::api::push_artifact(&upstream.api, "docker.io/library/alpine", "3.21", &artifact);

    for line in copies {
        // The registry of the README is this wharf; docker.io is the stand-in,
        // which, unlike docker.io, speaks plain HTTP: that side gets its flag here.
        let words: Vec<String> = line
            .split_whitespace()
            .skip(1)
            .map(|w| {
                w.replace(
                    "docker://docker.io/",
                    &format!("docker://{}/docker.io/", upstream.wharf.host()),
                )
                .replace("registry.home.arpa:5000", &fx.wharf.host())
            })
            .collect();
        let out = run(
            skopeo().args(&words).arg("--src-tls-verify=false"),
            &format!("README's `{line}`"),
        );
        assert!(out.status.success());
        // What a node resolving the tag through ?ns= gets: upstream's digest.
        assert_stored(&fx.api, "docker.io/library/alpine", "3.21", &artifact);
    }
}
