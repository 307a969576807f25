//! `wharf copy` from the files skopeo writes (`oci:DIR[:REF]`,
//! `oci-archive:FILE[:REF]`, `docker-archive:FILE[:REF]`) and `docker://`
//! references, between real `wharf serve` processes, with real skopeo
//! writing the files: the pushed digest is the one the file holds; and
//! into an `oci:DIR[:REF]` layout that skopeo reads with the digest. And
//! `wharf load` of an OCI archive whose index entry has no name: refused,
//! naming the file and the fix, until `--name` gives it one.

mod common;

use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use wharf_testkit::image;
use wharf_testkit::image::host_arch;
use wharf_testkit::image::Artifact;
use wharf_testkit::image::Format;
use wharf_testkit::tools::run;
use wharf_testkit::tools::skopeo;

use common::api::{push_artifact as push, Api};
use serde_json::Value;

/// `wharf ARGS…` as (exit code, stdout, stderr).
fn wharf(args: &[&str]) -> (i32, String, String) {
    let out = common::cli::wharf(args);
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// A registry holding a single-platform OCI image and a multi-platform OCI
/// index, for skopeo to write files from.
struct Upstream {
    server: Wharf,
    app: Artifact,
    multi: Artifact,
}

impl Upstream {
    fn start(dir: &Path) -> Upstream {
        let server = Wharf::start(dir);
        let api = Api::new(&server.url());
        let app = image::image(Format::Oci, "transport-app", host_arch());
        let multi = image::multi_arch(Format::Oci, "transport-multi");
        push(&api, "team/app", "v1", &app);
        push(&api, "team/multi", "v1", &multi);
        Upstream { server, app, multi }
    }

    /// `skopeo copy --preserve-digests docker://<here>/<repo_ref> <to>`:
    /// the file holds the registry's manifests byte for byte, or skopeo fails.
    fn write(&self, repo_ref: &str, to: &str, extra: &[&str]) {
        let from = format!("docker://{}/{repo_ref}", self.server.host());
        run(
            skopeo()
                .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
                .args(extra)
                .args([from.as_str(), to]),
            &format!("skopeo copy {from} {to}"),
        );
    }
}

/// The digest `repo:reference` has at `server`, or None.
fn digest_at(server: &Wharf, repo: &str, reference: &str) -> Option<String> {
    Api::new(&server.url())
        .manifest(repo, reference)
        .ok()
        .map(|m| m.digest)
}

/// The digest of the manifest `skopeo inspect --raw` reads from `file_ref`.
fn skopeo_digest(file_ref: &str) -> String {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", file_ref])
        .output()
        .expect("run skopeo inspect");
    assert!(out.status.success(), "skopeo inspect --raw {file_ref}");
    wharf_testkit::sha256_digest(&out.stdout)
}

fn copy_json(source: &str, destination: &str) -> Value {
    let (code, out, err) = wharf(&["copy", "-q", "--output", "json", source, destination]);
    assert_eq!(code, 0, "wharf copy {source} {destination}: {out}\n{err}");
    serde_json::from_str(&out).expect("a JSON report")
}

#[test]
fn an_oci_archive_skopeo_wrote_is_pushed_with_its_digest() {
    let work = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&work.path().join("up"));
    let dst = Wharf::start(&work.path().join("dst"));
    let archive = work.path().join("app.tar");
    let file_ref = format!("oci-archive:{}:reg.example/team/app:v1", archive.display());
    upstream.write("team/app:v1", &file_ref, &[]);

    let report = copy_json(&file_ref, &format!("{}/mirror/app:v1", dst.host()));

    let pushed = digest_at(&dst, "mirror/app", "v1");
    assert_eq!(pushed, Some(upstream.app.digest().to_string()), "{report}");
    assert_eq!(pushed, Some(skopeo_digest(&file_ref)));
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{report}");
    assert_eq!(images[0]["source"], file_ref.as_str(), "named as written");
    assert_eq!(images[0]["status"], "copied");
    let api = Api::new(&dst.url());
    for blob in &upstream.app.blobs {
        assert_eq!(
            api.blob("mirror/app", &blob.digest().to_string()).unwrap(),
            blob.bytes
        );
    }

    // To a bare registry the image keeps the full name the archive gives it,
    // under its upstream host as with sync; docker:// is read as skopeo does.
    copy_json(&file_ref, &format!("docker://{}", dst.host()));
    assert_eq!(
        digest_at(&dst, "reg.example/team/app", "v1"),
        Some(upstream.app.digest().to_string())
    );

    // Again: up to date, nothing sent.
    let again = copy_json(&file_ref, &format!("{}/mirror/app:v1", dst.host()));
    assert_eq!(again["images"][0]["status"], "up-to-date", "{again}");
    assert_eq!(again["images"][0]["bytes_sent"], 0);
}

#[test]
fn an_oci_layout_of_an_index_is_pushed_with_every_platform_and_its_tag() {
    let work = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&work.path().join("up"));
    let dst = Wharf::start(&work.path().join("dst"));
    let layout = work.path().join("layout");
    let file_ref = format!("oci:{}:v1", layout.display());
    upstream.write("team/multi:v1", &file_ref, &["--all"]);
    // A second image in the same layout: REF must pick.
    upstream.write("team/app:v1", &format!("oci:{}:app", layout.display()), &[]);

    // No tag on the destination: the image keeps the one it is listed as.
    copy_json(&file_ref, &format!("{}/mirror/multi", dst.host()));

    assert_eq!(
        digest_at(&dst, "mirror/multi", "v1"),
        Some(upstream.multi.digest().to_string())
    );
    assert_eq!(
        Some(skopeo_digest(&file_ref)),
        Some(upstream.multi.digest().to_string())
    );
    for child in &upstream.multi.children {
        assert_eq!(
            digest_at(&dst, "mirror/multi", &child.digest().to_string()),
            Some(child.digest().to_string()),
            "every platform of the index"
        );
    }

    // Without REF the layout's two images are listed, nothing is copied.
    let bare = format!("oci:{}", layout.display());
    let (code, _, err) = wharf(&["copy", "-q", &bare, &format!("{}/x/y:z", dst.host())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&layout.display().to_string()), "{err}");
    assert!(
        err.contains("2 images") && err.contains("v1") && err.contains("app"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(digest_at(&dst, "x/y", "z"), None);
}

#[test]
fn a_docker_archive_skopeo_wrote_lands_under_its_repo_tag() {
    let work = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&work.path().join("up"));
    let dst = Wharf::start(&work.path().join("dst"));
    let archive = work.path().join("app-docker.tar");
    let written = format!(
        "docker-archive:{}:reg.example/team/app:v1",
        archive.display()
    );
    // A docker archive holds no manifest: skopeo writes config and layers,
    // so digests cannot be kept; the content is.
    let from = format!("docker://{}/team/app:v1", upstream.server.host());
    run(
        skopeo().args(["copy", "--src-tls-verify=false", &from, &written]),
        "skopeo copy to docker-archive",
    );

    let source = format!("docker-archive:{}", archive.display());
    copy_json(&source, &dst.host());

    let pushed = Api::new(&dst.url())
        .manifest("reg.example/team/app", "v1")
        .expect("the image under its RepoTags name");
    let manifest: Value = serde_json::from_slice(&pushed.body).unwrap();
    assert_eq!(
        manifest["config"]["digest"],
        upstream.app.config().digest().to_string().as_str(),
        "the image's config, byte for byte: {manifest}"
    );
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(upstream.app.layers().len())
    );
}

#[test]
fn a_file_source_that_cannot_be_read_names_transport_and_path_with_a_hint() {
    let work = tempfile::tempdir().unwrap();
    let dst = Wharf::start(&work.path().join("dst"));
    let missing = work.path().join("nowhere.tar");
    let source = format!("oci-archive:{}", missing.display());
    let (code, out, err) = wharf(&["copy", "-q", &source, &format!("{}/a/b:c", dst.host())]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("oci-archive transport"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    // A path-less transport is a usage error.
    let (code, _, err) = wharf(&["copy", "oci-archive:", &dst.host()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("oci-archive:PATH[:REF]"), "{err}");
}

#[test]
fn an_unnamed_oci_archive_is_refused_by_load_until_named() {
    let work = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&work.path().join("up"));
    let dst = Wharf::start(&work.path().join("dst"));
    let archive = work.path().join("unnamed.tar");
    // No REF: skopeo writes the index entry without a name.
    upstream.write(
        "team/app:v1",
        &format!("oci-archive:{}", archive.display()),
        &[],
    );
    let path = archive.to_str().unwrap();

    let (code, out, err) = wharf(&["load", "-q", "--to", &dst.host(), path]);
    assert_eq!(code, 1, "an archive whose image has no name: {out}\n{err}");
    assert!(err.contains(path), "names the file: {err}");
    assert!(err.contains("--name HOST/REPO:TAG"), "{err}");
    assert!(
        err.contains(&format!("oci-archive:{path}:host/repo:tag")),
        "{err}"
    );
    assert_eq!(
        Api::new(&dst.url()).catalog().unwrap(),
        Vec::<String>::new(),
        "nothing was imported"
    );

    // The hint is true: --name loads it, with its digest.
    let (code, out, err) = wharf(&[
        "load",
        "-q",
        "--to",
        &dst.host(),
        "--name",
        "reg.example/team/app:v1",
        path,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        digest_at(&dst, "reg.example/team/app", "v1"),
        Some(upstream.app.digest().to_string())
    );
    // So is the other way: copying it by itself to a full name.
    copy_json(
        &format!("oci-archive:{path}"),
        &format!("{}/copied/app:v1", dst.host()),
    );
    assert_eq!(
        digest_at(&dst, "copied/app", "v1"),
        Some(upstream.app.digest().to_string())
    );
    // And to a bare registry the missing name is said, with the fix.
    let (code, _, err) = wharf(&["copy", "-q", &format!("oci-archive:{path}"), &dst.host()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no name"), "{err}");
    assert!(err.contains("/REPO:TAG"), "{err}");
}

#[test]
fn copy_writes_an_oci_layout_that_skopeo_reads_with_the_digests() {
    let work = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(&work.path().join("up"));
    let dst = Wharf::start(&work.path().join("dst"));
    let layout = work.path().join("out-layout");
    let up = upstream.server.host();
    let multi_ref = format!("oci:{}:v1", layout.display());
    let app_ref = format!("oci:{}:app", layout.display());

    let report = copy_json(&format!("{up}/team/multi:v1"), &multi_ref);
    assert_eq!(report["images"][0]["destination"], multi_ref.as_str());
    copy_json(&format!("{up}/team/app:v1"), &app_ref);

    assert_eq!(
        skopeo_digest(&multi_ref),
        upstream.multi.digest().to_string()
    );
    assert_eq!(skopeo_digest(&app_ref), upstream.app.digest().to_string());
    // skopeo takes it on to a registry, every platform, digests kept.
    run(
        skopeo().args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &multi_ref,
            &format!("docker://{}/from-layout/multi:v1", dst.host()),
        ]),
        "skopeo copy oci: -> registry",
    );
    assert_eq!(
        digest_at(&dst, "from-layout/multi", "v1"),
        Some(upstream.multi.digest().to_string())
    );

    // The same REF again replaces its entry; the other stays.
    copy_json(&format!("{up}/team/app:v1"), &multi_ref);
    assert_eq!(skopeo_digest(&multi_ref), upstream.app.digest().to_string());
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index}"
    );

    // --platform keeps one platform: a filtered index, every entry present.
    let one_ref = format!("oci:{}:one", layout.display());
    let (code, out, err) = wharf(&[
        "copy",
        "-q",
        "--platform",
        &format!("linux/{}", host_arch()),
        &format!("{up}/team/multi:v1"),
        &one_ref,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", &one_ref])
        .output()
        .unwrap();
    let filtered: Value = serde_json::from_slice(&raw.stdout).expect("an index");
    let kept = filtered["manifests"].as_array().expect("manifests");
    assert_eq!(kept.len(), 1, "{filtered}");
    assert_eq!(
        kept[0]["digest"],
        upstream
            .multi
            .child_for(host_arch())
            .digest()
            .to_string()
            .as_str()
    );
    run(
        skopeo().args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            &one_ref,
            &format!("docker://{}/from-layout/one:v1", dst.host()),
        ]),
        "skopeo reads the filtered layout whole",
    );

    // Archives are wharf save's to write.
    let (code, _, err) = wharf(&[
        "copy",
        &format!("{up}/team/app:v1"),
        &format!("oci-archive:{}", work.path().join("x.tar").display()),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("wharf save"), "{err}");
}
