//! podman (as root, vfs storage in a private directory) pulling an image
//! that skopeo pushed, and pushing it on to another repository: the registry
//! must end up with the tag and every blob, and the layer digests must be
//! the ones that were originally pushed.

mod common;

use common::server::Wharf;
use std::path::PathBuf;
use wharf_testkit::digest_hex;
use wharf_testkit::image::{self, host_arch, write_dir_transport, Format};
use wharf_testkit::tools::{podman, require_root, run, skopeo};

use common::api::{descriptors, push_artifact, Api, Findings};
use serde_json::Value;

#[test]
fn podman_pulls_from_and_pushes_to_wharf_keeping_layer_digests() {
    require_root("podman with its own storage root");
    let work = tempfile::tempdir().expect("temp dir");
    let wharf = Wharf::start(&work.path().join("wharf"));
    let api = Api::new(&wharf.url());
    let podman_dir: PathBuf = work.path().join("podman");
    std::fs::create_dir_all(&podman_dir).expect("create podman dir");

    let artifact = image::image(Format::Docker, "podman", host_arch());
    let source = work.path().join("source");
    write_dir_transport(&artifact, &source);
    let pulled_ref = format!("{}/e2e/podman-source:v1", wharf.host());
    run(
        skopeo()
            .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
            .arg(format!("dir:{}", source.display()))
            .arg(format!("docker://{pulled_ref}")),
        "pushing the source image with skopeo",
    );

    let pull = run(
        podman(&podman_dir).args(["pull", "--tls-verify=false", &pulled_ref]),
        "podman pull from wharf",
    );
    // podman prints the image ID, which is the config digest.
    let config_hex = digest_hex(&artifact.config().digest().to_string()).to_owned();
    assert!(
        pull.stdout.contains(&config_hex),
        "podman pull reported a different image ID than the pushed config {config_hex}:\n{}",
        pull.describe()
    );

    let pushed_ref = format!("{}/e2e/podman-pushed:v2", wharf.host());
    let digest_file = work.path().join("pushed.digest");
    run(
        podman(&podman_dir)
            .args(["push", "--tls-verify=false", "--digestfile"])
            .arg(&digest_file)
            .arg(&pulled_ref)
            .arg(format!("docker://{pushed_ref}")),
        "podman push to wharf",
    );
    let pushed_digest =
        std::fs::read_to_string(&digest_file).expect("podman wrote the digest file");

    let tags = api
        .tags("e2e/podman-pushed")
        .expect("tags of the pushed repo");
    assert!(
        tags.iter().any(|t| t == "v2"),
        "tag v2 missing after podman push: {tags:?}"
    );
    let mut findings = Findings::default();
    let served = api.verify_tree("e2e/podman-pushed", "v2", &mut findings);
    assert!(
        findings.problems.is_empty(),
        "after podman push the repository is incomplete: {:#?}",
        findings.problems
    );
    assert_eq!(
        served.as_deref(),
        Some(pushed_digest.trim()),
        "the tag does not point at the manifest podman pushed"
    );

    let manifest = api
        .manifest("e2e/podman-pushed", "v2")
        .expect("pushed manifest");
    let manifest: Value = serde_json::from_slice(&manifest.body).expect("manifest is JSON");
    let pushed_layers: Vec<String> = descriptors(&manifest["layers"])
        .into_iter()
        .map(|(digest, _)| digest)
        .collect();
    let original_layers: Vec<String> = artifact
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    assert_eq!(
        pushed_layers, original_layers,
        "podman push changed the layer digests"
    );
    let pushed_config = descriptors(&manifest["config"]);
    assert_eq!(
        pushed_config.first().map(|(d, _)| d.clone()),
        Some(artifact.config().digest().to_string()),
        "podman push changed the config digest"
    );
}

/// A CRI-O or podman node side-loading a bundle of several images: every
/// image keeps the digest its registry serves (a pod pinned by digest finds
/// it), which `podman load` of such a bundle does not do on podman 4.3.
#[test]
fn load_into_containers_storage_keeps_every_registry_digest() {
    require_root("podman with its own storage root");
    let work = tempfile::tempdir().expect("temp dir");
    let source = Wharf::start(&work.path().join("source"));
    let api = Api::new(&source.url());
    let single = image::image(Format::Docker, "cs-single", host_arch());
    let multi = image::multi_arch(Format::Oci, "cs-multi");
    push_artifact(&api, "team/single", "v1.0.0", &single);
    push_artifact(&api, "team/multi", "v2.0.0", &multi);
    let images = [
        (
            format!("{}/team/single:v1.0.0", source.host()),
            single.digest().to_string(),
        ),
        (
            format!("{}/team/multi:v2.0.0", source.host()),
            multi.digest().to_string(),
        ),
    ];
    let bundle = work.path().join("site.tar");
    run(
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["save", "-q", "-o"])
            .arg(&bundle)
            .args(images.iter().map(|(name, _)| name)),
        "wharf save",
    );

    // skopeo and podman read the same private storage.
    let podman_dir = work.path().join("podman");
    std::fs::create_dir_all(&podman_dir).expect("create podman dir");
    let storage_conf = work.path().join("storage.conf");
    std::fs::write(
        &storage_conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            podman_dir.join("storage").display(),
            podman_dir.join("run").display()
        ),
    )
    .unwrap();
    run(
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .env("CONTAINERS_STORAGE_CONF", &storage_conf)
            .env("TMPDIR", &podman_dir)
            .args(["load", "-q", "--containers-storage"])
            .arg(&bundle),
        "wharf load --containers-storage",
    );
    for (name, digest) in &images {
        let out = run(
            podman(&podman_dir).args(["image", "inspect", name]),
            "podman image inspect",
        );
        let inspected: Value = serde_json::from_str(&out.stdout).expect("podman prints JSON");
        let repo = name.rsplit_once(':').unwrap().0;
        let pinned = format!("{repo}@{digest}");
        let repo_digests: Vec<&str> = inspected[0]["RepoDigests"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            repo_digests.contains(&pinned.as_str()),
            "{name}: the registry digest {digest} is not among {repo_digests:?}"
        );
        run(
            podman(&podman_dir).args(["image", "inspect", &pinned]),
            "podman finds the image by its registry digest",
        );
    }
}
