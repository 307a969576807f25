//! containerd 1.6 pulling `docker.io/...` images through a hosts.toml mirror
//! that points at wharf, inside a network namespace with nothing but
//! loopback. The configured upstream is a stand-in that counts requests: an
//! air-gapped node must never need it, neither by tag nor by digest.

mod common;

use std::path::Path;

use common::containerd::{write_docker_io_mirror, Containerd};
use common::image::{self, host_arch, write_dir_transport, write_oci_layout, Artifact, Format};
use common::netns::in_private_netns;
use common::server::Wharf;
use common::standin::StandIn;
use common::tools::{run, skopeo};

/// Everything one scenario runs, in drop order: containerd first, then wharf.
struct Node {
    containerd: Containerd,
    wharf: Wharf,
    upstream: StandIn,
    hosts_dir: std::path::PathBuf,
}

impl Node {
    fn start(work: &Path) -> Node {
        let upstream = StandIn::start();
        let wharf = Wharf::start(&work.join("wharf"));
        let hosts_dir = work.join("certs.d");
        write_docker_io_mirror(&hosts_dir, &upstream.url(), &wharf.url());
        let containerd = Containerd::start(&work.join("containerd"));
        Node {
            containerd,
            wharf,
            upstream,
            hosts_dir,
        }
    }

    /// Pushes with skopeo to `<wharf>/docker.io/library/<name_tag>`, keeping digests.
    fn push(&self, source: &str, name_tag: &str, all: bool) {
        let dest = format!(
            "docker://{}/docker.io/library/{name_tag}",
            self.wharf.host()
        );
        let mut cmd = skopeo();
        cmd.args(["copy", "--dest-tls-verify=false", "--preserve-digests"]);
        if all {
            cmd.arg("--all");
        }
        run(
            cmd.args([source, &dest]),
            &format!("pushing {source} to {dest}"),
        );
    }

    /// `ctr images pull` must succeed for `reference`.
    fn pull(&self, reference: &str) {
        let out = self.containerd.pull(&self.hosts_dir, reference);
        assert!(
            out.status.success(),
            "containerd could not pull {reference} through the wharf mirror\n{}\n\
             stand-in upstream saw: {:?}\n--- wharf log ---\n{}\n--- containerd log ---\n{}",
            out.describe(),
            self.upstream.request_lines(),
            self.wharf.log_tail(),
            self.containerd.log_tail()
        );
    }

    /// `ctr images ls` lists `reference` with `digest`.
    fn assert_listed(&self, reference: &str, digest: &str) {
        let rows = self.containerd.images();
        let row = rows
            .iter()
            .find(|r| r.reference == reference)
            .unwrap_or_else(|| panic!("ctr images ls does not list {reference}: {rows:?}"));
        assert_eq!(
            row.digest, digest,
            "ctr images ls: {reference} has the wrong digest"
        );
    }

    /// Pull by tag and by digest; both must resolve to the pushed manifest.
    fn pull_tag_and_digest(&self, name: &str, tag: &str, artifact: &Artifact) {
        let by_tag = format!("docker.io/library/{name}:{tag}");
        self.pull(&by_tag);
        self.assert_listed(&by_tag, &artifact.digest());
        let by_digest = format!("docker.io/library/{name}@{}", artifact.digest());
        self.pull(&by_digest);
        self.assert_listed(&by_digest, &artifact.digest());
    }

    fn assert_upstream_untouched(&self) {
        assert_eq!(
            self.upstream.requests(),
            0,
            "containerd went to the upstream instead of the wharf mirror: {:?}",
            self.upstream.request_lines()
        );
    }
}

/// Pushes `single` (as `<name>:1.0`) and `multi` (as `<name>:multi`) and
/// pulls both by tag and by digest through the mirror.
fn run_mirror_scenario(name: &str, single: Artifact, multi: Artifact, source_of: SourceFn) {
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        let node = Node::start(work.path());
        node.push(
            &source_of(&single, &work.path().join("single"), "1.0"),
            &format!("{name}:1.0"),
            false,
        );
        node.push(
            &source_of(&multi, &work.path().join("multi"), "multi"),
            &format!("{name}:multi"),
            true,
        );

        node.pull_tag_and_digest(name, "1.0", &single);
        node.pull_tag_and_digest(name, "multi", &multi);
        node.assert_upstream_untouched();
    });
}

/// Writes an artifact somewhere skopeo can read it and returns the skopeo reference.
type SourceFn = fn(&Artifact, &Path, &str) -> String;

fn oci_layout_source(artifact: &Artifact, dir: &Path, tag: &str) -> String {
    write_oci_layout(artifact, dir, tag);
    format!("oci:{}:{tag}", dir.display())
}

fn dir_source(artifact: &Artifact, dir: &Path, _tag: &str) -> String {
    write_dir_transport(artifact, dir);
    format!("dir:{}", dir.display())
}

#[test]
fn containerd_pulls_oci_images_through_the_mirror_without_upstream() {
    let name = "wharf-e2e-oci";
    run_mirror_scenario(
        name,
        image::image(Format::Oci, name, host_arch()),
        image::multi_arch(Format::Oci, name),
        oci_layout_source,
    );
}

#[test]
fn containerd_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    let name = "wharf-e2e-v2s2";
    run_mirror_scenario(
        name,
        image::image(Format::Docker, name, host_arch()),
        image::multi_arch(Format::Docker, name),
        dir_source,
    );
}
