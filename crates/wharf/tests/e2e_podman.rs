//! podman (as root, vfs storage in a private directory) pulling an image
//! that skopeo pushed, and pushing it on to another repository: the registry
//! must end up with the tag and every blob, and the layer digests must be
//! the ones that were originally pushed.

mod common;

use std::path::PathBuf;

use common::api::{descriptors, Api, Findings};
use common::image::{self, digest_hex, host_arch, write_dir_transport, Format};
use common::server::Wharf;
use common::tools::{podman, require_root, run, skopeo};
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
    let config_hex = digest_hex(&artifact.config().digest()).to_owned();
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
    let original_layers: Vec<String> = artifact.layers().iter().map(|l| l.digest()).collect();
    assert_eq!(
        pushed_layers, original_layers,
        "podman push changed the layer digests"
    );
    let pushed_config = descriptors(&manifest["config"]);
    assert_eq!(
        pushed_config.first().map(|(d, _)| d.clone()),
        Some(artifact.config().digest()),
        "podman push changed the config digest"
    );
}
