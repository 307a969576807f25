//! containerd pulling `docker.io/...` images through a hosts.toml mirror
//! that points at wharf, inside a network namespace with nothing but
//! loopback, on Debian's containerd 1.6, containerd 2.0 and the newest 2.x.
//! The configured upstream is a stand-in that counts requests: an
//! air-gapped node must never need it, neither by tag nor by digest.
//!
//! Two paths to the registry, both tested:
//! - `ctr images pull --hosts-dir`: the hosts directory given on the
//!   command line; containerd's config.toml plays no part.
//! - the CRI `PullImage` call the kubelet makes (`crictl pull`): the node's
//!   config.toml as `wharf containerd config --patch` left it must point
//!   the CRI plugin at the hosts directory, in the schema that release reads.

mod common;

use common::server::Wharf;
use std::path::{Path, PathBuf};
use wharf_testkit::image::{
    self, host_arch, write_dir_transport, write_oci_layout, Artifact, Format,
};
use wharf_testkit::in_private_netns;
use wharf_testkit::tools::{run, skopeo};

use common::containerd::{config_snippet, write_docker_io_mirror, Containerd, Release};
use common::standin::StandIn;

/// How containerd is asked to pull.
#[derive(Clone, Copy, Debug)]
enum PullPath {
    /// `ctr images pull --hosts-dir`.
    Ctr,
    /// `crictl pull` (CRI `PullImage`), configured by the node's config.toml
    /// (the release's default, patched by `wharf containerd config --patch`).
    Cri,
    /// `crictl pull`, with the snippet `wharf containerd config` prints as
    /// the whole config.toml.
    CriSnippet,
}

/// Everything one scenario runs, in drop order: containerd first, then wharf.
struct Node {
    containerd: Containerd,
    wharf: Wharf,
    upstream: StandIn,
    hosts_dir: PathBuf,
    path: PullPath,
}

impl Node {
    fn start(work: &Path, release: Release, path: PullPath) -> Node {
        let upstream = StandIn::start();
        let wharf = Wharf::start(&work.join("wharf"));
        let hosts_dir = work.join("certs.d");
        write_docker_io_mirror(&hosts_dir, &upstream.url(), &wharf.url());
        let dir = work.join("containerd");
        let containerd = match path {
            PullPath::Ctr => Containerd::start_release(&dir, release),
            PullPath::Cri => Containerd::start_cri(&dir, release, &hosts_dir),
            PullPath::CriSnippet => {
                let config = config_snippet(release, &hosts_dir);
                let containerd = Containerd::start_with_config(&dir, release, &config);
                containerd.assert_cri_answers();
                containerd
            }
        };
        Node {
            containerd,
            wharf,
            upstream,
            hosts_dir,
            path,
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

    /// The pull must succeed for `reference`.
    fn pull(&self, reference: &str) {
        let out = match self.path {
            PullPath::Ctr => self.containerd.pull(&self.hosts_dir, reference),
            PullPath::Cri | PullPath::CriSnippet => self.containerd.cri_pull(reference),
        };
        assert!(
            out.status.success(),
            "{} could not pull {reference} through the wharf mirror ({:?})\n{}\n\
             stand-in upstream saw: {:?}\n--- wharf log ---\n{}\n--- containerd log ---\n{}",
            self.containerd.release(),
            self.path,
            out.describe(),
            self.upstream.request_lines(),
            self.wharf.log_tail(),
            self.containerd.log_tail()
        );
    }

    /// containerd knows `reference` as the image `artifact`: through the
    /// CRI (tags, repo digests and the config the node's platform runs)
    /// and in `ctr images ls`.
    fn assert_pulled(&self, reference: &str, repository: &str, artifact: &Artifact) {
        self.assert_listed(reference, &artifact.digest().to_string());
        if let PullPath::Cri | PullPath::CriSnippet = self.path {
            self.assert_cri_knows(reference, repository, artifact);
        }
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

    fn assert_cri_knows(&self, reference: &str, repository: &str, artifact: &Artifact) {
        let image = self
            .containerd
            .cri_image(reference)
            .unwrap_or_else(|| panic!("the CRI does not know {reference} after pulling it"));
        let repo_digest = format!("{repository}@{}", artifact.digest());
        assert!(
            image.repo_digests.contains(&repo_digest),
            "the CRI lists {reference} without {repo_digest}: {image:?}"
        );
        if !reference.contains('@') {
            assert!(
                image.repo_tags.iter().any(|t| t == reference),
                "the CRI lists {reference} without its tag: {image:?}"
            );
        }
        let runnable = if artifact.children.is_empty() {
            artifact
        } else {
            artifact.child_for(host_arch())
        };
        assert_eq!(
            image.id,
            runnable.config().digest().to_string(),
            "the CRI's image id for {reference} is not the config of the node's platform"
        );
        let listed = self.containerd.cri_images();
        assert!(
            listed.iter().any(|i| i.id == image.id),
            "crictl images does not list {}: {listed:?}",
            image.id
        );
    }

    /// Pull by tag and by digest; both must resolve to the pushed manifest.
    fn pull_tag_and_digest(&self, name: &str, tag: &str, artifact: &Artifact) {
        let repository = format!("docker.io/library/{name}");
        let by_tag = format!("{repository}:{tag}");
        self.pull(&by_tag);
        self.assert_pulled(&by_tag, &repository, artifact);
        let by_digest = format!("{repository}@{}", artifact.digest());
        self.pull(&by_digest);
        self.assert_pulled(&by_digest, &repository, artifact);
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

/// Pushes a single-platform image (as `<name>:1.0`) and a multi-arch one
/// (as `<name>:multi`) in `format`, and pulls both by tag and by digest
/// through the mirror.
fn run_mirror_scenario(release: Release, path: PullPath, format: Format) {
    let name = format!("wharf-e2e-{}", format_label(format));
    let single = image::image(format, &name, host_arch());
    let multi = image::multi_arch(format, &name);
    let source_of: SourceFn = match format {
        Format::Oci => oci_layout_source,
        Format::Docker => dir_source,
    };
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        let node = Node::start(work.path(), release, path);
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

        node.pull_tag_and_digest(&name, "1.0", &single);
        node.pull_tag_and_digest(&name, "multi", &multi);
        node.assert_upstream_untouched();
    });
}

fn format_label(format: Format) -> &'static str {
    match format {
        Format::Oci => "oci",
        Format::Docker => "v2s2",
    }
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
fn ctr_1_6_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Debian, PullPath::Ctr, Format::Oci);
}

#[test]
fn ctr_1_6_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Debian, PullPath::Ctr, Format::Docker);
}

#[test]
fn ctr_2_0_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::V2_0, PullPath::Ctr, Format::Oci);
}

#[test]
fn ctr_2_0_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::V2_0, PullPath::Ctr, Format::Docker);
}

#[test]
fn ctr_2_latest_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Latest, PullPath::Ctr, Format::Oci);
}

#[test]
fn ctr_2_latest_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Latest, PullPath::Ctr, Format::Docker);
}

#[test]
fn cri_1_6_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Debian, PullPath::Cri, Format::Oci);
}

#[test]
fn cri_1_6_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Debian, PullPath::Cri, Format::Docker);
}

#[test]
fn cri_2_0_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::V2_0, PullPath::Cri, Format::Oci);
}

#[test]
fn cri_2_0_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::V2_0, PullPath::Cri, Format::Docker);
}

#[test]
fn cri_2_latest_pulls_oci_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Latest, PullPath::Cri, Format::Oci);
}

#[test]
fn cri_2_latest_pulls_docker_v2s2_images_through_the_mirror_without_upstream() {
    run_mirror_scenario(Release::Latest, PullPath::Cri, Format::Docker);
}

#[test]
fn cri_1_6_with_the_generated_snippet_as_config_pulls_through_the_mirror() {
    run_mirror_scenario(Release::Debian, PullPath::CriSnippet, Format::Oci);
}

#[test]
fn cri_2_0_with_the_generated_snippet_as_config_pulls_through_the_mirror() {
    run_mirror_scenario(Release::V2_0, PullPath::CriSnippet, Format::Oci);
}

#[test]
fn cri_2_latest_with_the_generated_snippet_as_config_pulls_through_the_mirror() {
    run_mirror_scenario(Release::Latest, PullPath::CriSnippet, Format::Docker);
}

/// What `wharf containerd config --patch` wrote is what each release's CRI
/// plugin loaded: `containerd config dump` of the file shows the hosts
/// directory, and so does the running daemon where the release reports it
/// (1.6 in the CRI status, the newest 2.x as a CRI images plugin export;
/// 2.0 reports it nowhere, so only the dump and the pulls above can tell).
#[test]
fn the_cri_plugin_loads_the_config_path_wharf_wrote_on_every_release() {
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        for release in Release::ALL {
            let dir = work.path().join(format!("{release:?}"));
            let hosts_dir = dir.join("certs.d");
            std::fs::create_dir_all(&hosts_dir).expect("create hosts dir");
            let containerd = Containerd::start_cri(&dir.join("containerd"), release, &hosts_dir);
            let expected = hosts_dir.display().to_string();
            assert_eq!(
                containerd.dumped_config_path().as_deref(),
                Some(expected.as_str()),
                "{release}: containerd config dump of the patched file"
            );
            let reports_it = release != Release::V2_0;
            let loaded = containerd.loaded_config_path();
            assert_eq!(
                loaded.as_deref(),
                reports_it.then_some(expected.as_str()),
                "{release}: the config_path the running CRI plugin reports"
            );
        }
    });
}

/// A node config.toml that is not TOML: the launcher starts nothing of its
/// own and hands back containerd's own refusal, naming the row.
#[test]
fn a_config_that_does_not_parse_is_refused_by_every_release_with_its_reason() {
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        for release in Release::ALL {
            let dir = work.path().join(format!("{release:?}"));
            let refused =
                Containerd::try_start_with_config(&dir, release, "version = 2\n[plugins\n");
            let why = match refused {
                Ok(_) => panic!("{release} started with a config that is not TOML"),
                Err(why) => why,
            };
            assert!(
                why.contains("exited during start-up") && why.contains("TOML"),
                "{release}: {why}"
            );
        }
    });
}

/// With no registry configuration at all, the CRI pull goes to docker.io's
/// own host, which the loopback-only namespace cannot reach: the pull
/// fails and the CRI's error, as the launcher hands it back, names the host.
#[test]
fn without_registry_configuration_the_cri_pull_fails_naming_the_upstream_host() {
    let work = tempfile::tempdir().expect("temp dir");
    in_private_netns(|| {
        for release in Release::ALL {
            let dir = work.path().join(format!("{release:?}"));
            let containerd = Containerd::start_with_config(&dir, release, "version = 2\n");
            containerd.assert_cri_answers();
            let out = containerd.cri_pull("docker.io/library/wharf-e2e-absent:1.0");
            assert!(!out.status.success(), "{release}: {}", out.describe());
            assert!(
                out.stderr.contains("registry-1.docker.io"),
                "{release}: the CRI's error does not name the host it tried\n{}",
                out.describe()
            );
        }
    });
}
