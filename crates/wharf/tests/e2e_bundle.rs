//! Bundles and the real tools: a `wharf save` bundle imported by
//! `ctr images import` (containerd 1.6, isolated) and by `podman load` (vfs
//! storage), names and digests checked; archives written by `podman save`
//! and `skopeo copy … docker-archive:/oci-archive:` loaded by `wharf load`
//! and pulled back by digest with skopeo; a damaged bundle refused by
//! `wharf load --containerd` with nothing imported.

mod common;

use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use wharf_testkit::digest_hex;
use wharf_testkit::image::{self, host_arch, Artifact, Format};
use wharf_testkit::tools::{podman, require_root, run, run_unchecked, skopeo};

use common::api::{push_artifact as push, Api};
use common::containerd::Containerd;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

fn wharf(args: &[&str]) -> wharf_testkit::tools::Output {
    run_unchecked(Command::new(WHARF).args(args))
}

/// A registry with a multi-arch OCI index and a Docker image, saved as a bundle.
struct Saved {
    // Kept running while the bundle is used.
    _server: Wharf,
    multi: Artifact,
    docker: Artifact,
    bundle: std::path::PathBuf,
    names: [String; 2],
}

fn saved(work: &Path, file: &str) -> Saved {
    let server = Wharf::start(&work.join("src"));
    let api = Api::new(&server.url());
    let multi = image::multi_arch(Format::Oci, "e2e-bundle-multi");
    let docker = image::image(Format::Docker, "e2e-bundle-docker", host_arch());
    push(&api, "team/multi", "v1", &multi);
    push(&api, "team/docker", "v2", &docker);
    let names = [
        format!("{}/team/multi:v1", server.host()),
        format!("{}/team/docker:v2", server.host()),
    ];
    let bundle = work.join(file);
    let out = wharf(&[
        "save",
        "-q",
        "-o",
        bundle.to_str().unwrap(),
        &names[0],
        &names[1],
    ]);
    assert!(out.status.success(), "{}", out.describe());
    Saved {
        _server: server,
        multi,
        docker,
        bundle,
        names,
    }
}

#[test]
fn ctr_imports_a_bundle_with_names_and_digests() {
    require_root("containerd");
    let work = tempfile::tempdir().unwrap();
    let s = saved(work.path(), "site.tar");
    let containerd = Containerd::start(&work.path().join("containerd"));
    run(
        containerd
            .ctr()
            .args(["images", "import", "--all-platforms"])
            .arg(&s.bundle),
        "ctr images import of a wharf bundle",
    );
    let rows = containerd.images();
    let digest_of = |name: &str| {
        rows.iter()
            .find(|r| r.reference == name)
            .map(|r| r.digest.clone())
            .unwrap_or_else(|| panic!("{name} not in ctr images ls: {rows:?}"))
    };
    assert_eq!(digest_of(&s.names[0]), s.multi.digest().to_string());
    assert_eq!(digest_of(&s.names[1]), s.docker.digest().to_string());
}

#[test]
fn wharf_load_containerd_imports_a_compressed_bundle_and_refuses_a_damaged_one() {
    require_root("containerd");
    let work = tempfile::tempdir().unwrap();
    let s = saved(work.path(), "site.tar.zst");
    let containerd = Containerd::start(&work.path().join("containerd"));
    let socket = work.path().join("containerd/state/containerd.sock");

    let clean = std::fs::read(&s.bundle).unwrap();
    let truncated = work.path().join("truncated.tar.zst");
    std::fs::write(&truncated, &clean[..clean.len() / 2]).unwrap();
    let out = wharf(&[
        "load",
        "-q",
        "--containerd",
        "--address",
        socket.to_str().unwrap(),
        truncated.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("nothing was imported"),
        "{}",
        out.describe()
    );
    assert!(containerd.images().is_empty(), "nothing reached containerd");

    let out = wharf(&[
        "load",
        "-q",
        "--containerd",
        "--address",
        socket.to_str().unwrap(),
        s.bundle.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", out.describe());
    let rows = containerd.images();
    for (name, digest) in [
        (&s.names[0], s.multi.digest().to_string()),
        (&s.names[1], s.docker.digest().to_string()),
    ] {
        assert!(
            rows.iter()
                .any(|r| &r.reference == name && r.digest == digest),
            "{name} {digest} in {rows:?}"
        );
    }
}

#[test]
fn podman_loads_a_bundle_and_its_save_loads_back_through_wharf() {
    require_root("podman with its own storage root");
    let work = tempfile::tempdir().unwrap();
    let s = saved(work.path(), "site.tar");
    let pdir = work.path().join("podman");
    std::fs::create_dir_all(&pdir).unwrap();
    run(
        podman(&pdir).arg("load").arg("-i").arg(&s.bundle),
        "podman load of a wharf bundle",
    );
    let listed = run(
        podman(&pdir).args([
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ]),
        "podman images",
    );
    // The image ID is the config digest: the host platform's for the index.
    for (name, config) in [
        (
            &s.names[0],
            s.multi.child_for(host_arch()).config().digest().to_string(),
        ),
        (&s.names[1], s.docker.config().digest().to_string()),
    ] {
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains(digest_hex(&config))),
            "{name} with ID {config} in:\n{}",
            listed.stdout
        );
    }

    // podman save writes a docker archive; wharf load pushes it, and skopeo
    // pulls it back by the digest wharf reports.
    let archive = work.path().join("podman-save.tar");
    run(
        podman(&pdir)
            .args(["save", "--format", "docker-archive", "-o"])
            .arg(&archive)
            .arg(&s.names[1]),
        "podman save",
    );
    let dst = Wharf::start(&work.path().join("dst"));
    let out = wharf(&[
        "load",
        "-q",
        "--output",
        "json",
        "--flatten",
        "--to",
        &dst.host(),
        archive.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", out.describe());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let digest = report["images"][0]["digest"].as_str().unwrap().to_string();
    let pulled = work.path().join("pulled");
    run(
        skopeo()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/team/docker@{digest}", dst.host()))
            .arg(format!("dir:{}", pulled.display())),
        "skopeo pull by digest",
    );
    let config =
        std::fs::read(pulled.join(digest_hex(&s.docker.config().digest().to_string()))).unwrap();
    assert_eq!(
        config,
        s.docker.config().bytes,
        "the config came through unchanged"
    );
}

#[test]
fn skopeo_archives_load_through_wharf() {
    require_root("skopeo archives (for a like-for-like environment with the other e2e tests)");
    let work = tempfile::tempdir().unwrap();
    let src = Wharf::start(&work.path().join("src"));
    let api = Api::new(&src.url());
    let docker = image::image(Format::Docker, "e2e-bundle-skopeo", host_arch());
    push(&api, "team/app", "v3", &docker);
    let name = format!("{}/team/app:v3", src.host());
    let dst = Wharf::start(&work.path().join("dst"));
    for transport in ["oci-archive", "docker-archive"] {
        let archive = work.path().join(format!("{transport}.tar"));
        let mut cmd = skopeo();
        cmd.args(["copy", "--src-tls-verify=false"]);
        if transport == "oci-archive" {
            cmd.arg("--preserve-digests");
        }
        run(
            cmd.arg(format!("docker://{name}"))
                .arg(format!("{transport}:{}:{name}", archive.display())),
            &format!("skopeo copy to {transport}"),
        );
        let out = wharf(&[
            "load",
            "-q",
            "--output",
            "json",
            "--flatten",
            "--to",
            &dst.host(),
            archive.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{transport}: {}", out.describe());
        let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            report["images"][0]["source"], name,
            "{transport}: {}",
            out.stdout
        );
        let digest = report["images"][0]["digest"].as_str().unwrap().to_string();
        if transport == "oci-archive" {
            assert_eq!(
                digest,
                docker.digest().to_string(),
                "an OCI archive keeps the manifest digest"
            );
        }
        let inspect = run(
            skopeo()
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{}/team/app@{digest}", dst.host())),
            "skopeo inspect by digest",
        );
        let manifest: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(docker.config().digest().to_string().as_str()),
            "{transport}"
        );
    }
}
