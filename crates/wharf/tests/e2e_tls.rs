//! Real clients over HTTPS to `wharf serve --tls-cert … --tls-key …` with a
//! certificate from `wharf ca`: skopeo with a cert dir and verification on,
//! and containerd through a generated `hosts.toml` with `ca = …`, inside a
//! network namespace that has only loopback. A client that trusts another
//! CA must be refused.

mod common;

use std::path::{Path, PathBuf};
use wharf_testkit::image::{self, host_arch, write_oci_layout, Artifact, Format};
use wharf_testkit::tools::{run, run_unchecked, skopeo};
use wharf_testkit::{in_private_netns, sha256_digest};

use common::containerd::{write_docker_io_mirror_with, Containerd};
use common::standin::StandIn;
use common::tls::{ca_init, ca_issue, HttpsWharf};

/// A CA, a server certificate for 127.0.0.1 signed by it, and a cert dir
/// (`DIR/ca.crt`) in the layout skopeo and podman read.
struct Pki {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_dir = dir.join("ca");
        let ca_cert = ca_init(&ca_dir);
        let (cert, key) = ca_issue(&ca_dir, &["127.0.0.1", "localhost"], &dir.join("server"));
        let cert_dir = dir.join("certs.d");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(&ca_cert, cert_dir.join("ca.crt")).unwrap();
        Pki {
            ca_cert,
            cert,
            key,
            cert_dir,
        }
    }

    fn start_wharf(&self, dir: &Path) -> HttpsWharf {
        HttpsWharf::start(dir, &self.cert, &self.key, &self.ca_cert)
    }
}

fn oci_source(artifact: &Artifact, dir: &Path, tag: &str) -> String {
    write_oci_layout(artifact, dir, tag);
    format!("oci:{}:{tag}", dir.display())
}

/// `skopeo copy` to wharf over verified HTTPS.
fn push(source: &str, dest: &str, cert_dir: &Path, all: bool) {
    let mut cmd = skopeo();
    cmd.args([
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
    ])
    .arg(cert_dir);
    if all {
        cmd.arg("--all");
    }
    run(
        cmd.args([source, dest]),
        &format!("pushing {source} to {dest} over HTTPS"),
    );
}

#[test]
fn skopeo_pushes_and_pulls_by_digest_over_https_and_another_ca_is_refused() {
    let work = tempfile::tempdir().expect("temp dir");
    let pki = Pki::new(work.path());
    let wharf = pki.start_wharf(&work.path().join("wharf"));
    let artifact = image::image(Format::Oci, "wharf-e2e-tls", host_arch());
    let source = oci_source(&artifact, &work.path().join("src"), "1.0");
    let tagged = format!("docker://{}/e2e/tls:1.0", wharf.host());
    push(&source, &tagged, &pki.cert_dir, false);

    let by_digest = format!("docker://{}/e2e/tls@{}", wharf.host(), artifact.digest());
    let inspected = run(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
            .arg(&pki.cert_dir)
            .arg(&by_digest),
        "skopeo inspect by digest over HTTPS",
    );
    assert_eq!(
        sha256_digest(inspected.stdout.as_bytes()),
        artifact.digest().to_string(),
        "the manifest served over HTTPS is not the one pushed"
    );

    let pulled = work.path().join("pulled");
    run(
        skopeo()
            .args(["copy", "--src-tls-verify=true", "--src-cert-dir"])
            .arg(&pki.cert_dir)
            .arg(&by_digest)
            .arg(format!("oci:{}:pulled", pulled.display())),
        "skopeo copy by digest from wharf over HTTPS",
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(artifact.digest().to_string().as_str()),
        "pulled image has another digest: {index}"
    );

    // A client trusting a different CA must refuse the server's certificate.
    let other = Pki::new(&work.path().join("other"));
    let refused = run_unchecked(
        skopeo()
            .args(["inspect", "--raw", "--tls-verify=true", "--cert-dir"])
            .arg(&other.cert_dir)
            .arg(&by_digest),
    );
    assert!(
        !refused.status.success(),
        "skopeo trusting another CA was served the manifest:\n{}",
        refused.describe()
    );
    assert!(
        refused.stderr.contains("certificate"),
        "the refusal does not name the certificate:\n{}",
        refused.describe()
    );
}

#[test]
fn containerd_pulls_over_https_with_the_generated_ca_line_without_upstream() {
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        let upstream = StandIn::start();
        let pki = Pki::new(work.path());
        let wharf = pki.start_wharf(&work.path().join("wharf"));
        let hosts_dir = work.path().join("hosts");
        let ca = pki.ca_cert.to_string_lossy().into_owned();
        let generated =
            write_docker_io_mirror_with(&hosts_dir, &upstream.url(), &wharf.url(), &["--ca", &ca]);
        assert!(
            generated.contains(&format!("ca = \"{ca}\"")),
            "no ca line in the generated hosts.toml:\n{generated}"
        );
        assert!(
            generated.contains(&format!("[host.\"{}\"]", wharf.url())),
            "{generated}"
        );

        let name = "wharf-e2e-tls";
        let single = image::image(Format::Oci, name, host_arch());
        let multi = image::multi_arch(Format::Oci, name);
        for (artifact, tag, all) in [(&single, "1.0", false), (&multi, "multi", true)] {
            let source = oci_source(artifact, &work.path().join(tag), tag);
            let dest = format!("docker://{}/docker.io/library/{name}:{tag}", wharf.host());
            push(&source, &dest, &pki.cert_dir, all);
        }

        let containerd = Containerd::start(&work.path().join("containerd"));
        for (artifact, tag) in [(&single, "1.0"), (&multi, "multi")] {
            let by_tag = format!("docker.io/library/{name}:{tag}");
            let by_digest = format!("docker.io/library/{name}@{}", artifact.digest());
            for reference in [&by_tag, &by_digest] {
                let out = containerd.pull(&hosts_dir, reference);
                assert!(
                    out.status.success(),
                    "containerd could not pull {reference} from wharf over HTTPS\n{}\n\
                     stand-in upstream saw: {:?}\n--- wharf log ---\n{}\n--- containerd log ---\n{}",
                    out.describe(),
                    upstream.request_lines(),
                    wharf.log_tail(),
                    containerd.log_tail()
                );
                let rows = containerd.images();
                let row = rows
                    .iter()
                    .find(|r| &r.reference == reference)
                    .unwrap_or_else(|| panic!("ctr images ls does not list {reference}: {rows:?}"));
                assert_eq!(row.digest, artifact.digest().to_string(), "{reference}");
            }
        }
        assert_eq!(
            upstream.requests(),
            0,
            "containerd went to the upstream instead of wharf: {:?}",
            upstream.request_lines()
        );
    });
}
