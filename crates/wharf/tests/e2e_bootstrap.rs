//! The bootstrap field report's one string, through the CRI: an image is
//! side-loaded under its fully-qualified name, the chart and the kubelet
//! use that same name, and day 2 pulls a new tag of it from the registry.
//! Run on Debian's containerd 1.6 and the newest containerd 2.x, in a
//! network namespace with nothing but loopback.
//!
//! - A wharf bundle imported with `ctr images import` answers the CRI's
//!   `ImageStatus` for `name:tag` and for `name@digest` (a pod pinned by
//!   digest must not make the kubelet pull an image the node has).
//! - Day 1 → day 2: `wharf save --self REF` plus the application image,
//!   side-loaded with `wharf load --containerd`; the registry comes up
//!   publishing itself under REF; the bundle is loaded into it (the images
//!   land at their plain path, since their registry is the destination);
//!   a new tag is pulled through the CRI by the same name.

mod common;

use common::server::Wharf;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wharf_testkit::image::{self, host_arch, Artifact, Format};
use wharf_testkit::tools::{run, Output};
use wharf_testkit::{free_port, in_private_netns, wait_for};

use common::api::{push_artifact, Api};
use common::containerd::{Containerd, Release};

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How long `wharf serve --publish-self` may take to store its own image.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// `wharf ARGS` with `release`'s `ctr` first on PATH (for `load --containerd`).
fn wharf(release: Release, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        release.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(
        Command::new(WHARF).env("PATH", path).args(args),
        &format!("wharf {}", args.join(" ")),
    )
}

/// An empty hosts directory: these scenarios need no mirror for import.
fn no_mirrors(work: &Path) -> std::path::PathBuf {
    let dir = work.join("certs.d");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_cri_finds(containerd: &Containerd, name: &str, pinned: &str) {
    let by_tag = containerd.cri_image(name).unwrap_or_else(|| {
        panic!(
            "{}: the CRI does not find {name}\n{}",
            containerd.release(),
            containerd.log_tail()
        )
    });
    let by_digest = containerd.cri_image(pinned).unwrap_or_else(|| {
        panic!(
            "{}: the CRI does not find {pinned}: a pod pinned by digest would pull",
            containerd.release()
        )
    });
    assert_eq!(by_tag.id, by_digest.id, "one image under both names");
    assert!(
        by_digest.repo_digests.iter().any(|d| d == pinned),
        "{pinned} not among {:?}",
        by_digest.repo_digests
    );
}

fn digest_records_survive_import(release: Release) {
    let work = tempfile::tempdir().unwrap();
    in_private_netns(|| {
        let source = Wharf::start(&work.path().join("source"));
        let api = Api::new(&source.url());
        let single = image::image(Format::Oci, "cri-single", host_arch());
        let multi = image::multi_arch(Format::Oci, "cri-multi");
        push_artifact(&api, "team/single", "v1.0.0", &single);
        push_artifact(&api, "team/multi", "v2.0.0", &multi);
        let names = [
            (format!("{}/team/single:v1.0.0", source.host()), &single),
            (format!("{}/team/multi:v2.0.0", source.host()), &multi),
        ];
        let bundle = work.path().join("site.tar");
        wharf(
            release,
            &[
                "save",
                "-q",
                "-o",
                bundle.to_str().unwrap(),
                &names[0].0,
                &names[1].0,
            ],
        );
        let containerd = Containerd::start_cri(
            &work.path().join("containerd"),
            release,
            &no_mirrors(work.path()),
        );
        run(
            containerd
                .ctr()
                .args(["images", "import", "--all-platforms"])
                .arg(&bundle),
            "ctr images import",
        );
        for (name, artifact) in &names {
            let repo = name.rsplit_once(':').unwrap().0;
            assert_cri_finds(&containerd, name, &format!("{repo}@{}", artifact.digest()));
        }
    });
}

#[test]
fn a_bundle_imported_with_ctr_answers_digest_pins_on_containerd_1_6() {
    digest_records_survive_import(Release::Debian);
}

#[test]
fn a_bundle_imported_with_ctr_answers_digest_pins_on_containerd_2() {
    digest_records_survive_import(Release::Latest);
}

/// The images the build side has under the registry's final name.
struct Day {
    app_v1: Artifact,
    app_v2: Artifact,
}

/// The build side: a registry under the final name, filled, then saved in
/// two bundles (day 1 with wharf itself; day 2, a new tag) and stopped.
fn build_bundles(work: &Path, release: Release, port: u16, name: &str) -> Day {
    let mut build = Wharf::start_on(&work.join("build"), port, &[]);
    let api = Api::new(&build.url());
    let day = Day {
        app_v1: image::image(Format::Oci, "app-day1", host_arch()),
        app_v2: image::image(Format::Oci, "app-day2", host_arch()),
    };
    push_artifact(&api, "repo/app", "v0.4.2", &day.app_v1);
    push_artifact(&api, "repo/app", "v0.4.3", &day.app_v2);
    let self_name = format!("{name}/wharf/wharf:{VERSION}");
    let day1 = work.join("day1.tar");
    let out = wharf(
        release,
        &[
            "save",
            "-q",
            "--self",
            &self_name,
            "-o",
            day1.to_str().unwrap(),
            &format!("{name}/repo/app:v0.4.2"),
        ],
    );
    assert!(out.stdout.contains(&self_name), "{}", out.describe());
    let pod = std::fs::read_to_string(work.join("wharf-pod.yaml")).unwrap();
    assert!(pod.contains(&format!("image: {self_name}")), "{pod}");
    assert!(pod.contains("imagePullPolicy: IfNotPresent"), "{pod}");
    let day2 = work.join("day2.tar");
    wharf(
        release,
        &[
            "save",
            "-q",
            "-o",
            day2.to_str().unwrap(),
            &format!("{name}/repo/app:v0.4.3"),
        ],
    );
    build.shutdown();
    day
}

fn day_one_then_day_two(release: Release) {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    in_private_netns(|| {
        let port = free_port();
        let name = format!("127.0.0.1:{port}");
        let self_name = format!("{name}/wharf/wharf:{VERSION}");
        let day = build_bundles(work, release, port, &name);

        // The node reaches the registry by its name through hosts.toml.
        let hosts = work.join("certs.d");
        wharf(
            release,
            &[
                "containerd",
                "hosts",
                &name,
                "--mirror",
                &format!("http://{name}"),
                "--out",
                hosts.to_str().unwrap(),
            ],
        );
        let containerd = Containerd::start_cri(&work.join("containerd"), release, &hosts);

        // Day 1: side-load, before any registry exists.
        wharf(
            release,
            &[
                "load",
                "-q",
                "--containerd",
                "--address",
                containerd.socket().to_str().unwrap(),
                work.join("day1.tar").to_str().unwrap(),
            ],
        );
        let app = format!("{name}/repo/app:v0.4.2");
        assert_cri_finds(
            &containerd,
            &app,
            &format!("{name}/repo/app@{}", day.app_v1.digest()),
        );
        let side_loaded_self = containerd
            .cri_image(&self_name)
            .expect("the registry's own image, side-loaded");
        let self_pin = side_loaded_self.repo_digests[0].clone();
        assert_cri_finds(&containerd, &self_name, &self_pin);

        // The registry comes up under that name and publishes itself.
        let node = Wharf::start_on(
            &work.join("node"),
            port,
            &["--publish-self".to_string(), self_name.clone()],
        );
        let api = Api::new(&node.url());
        let published = wait_for(PUBLISH_TIMEOUT, || {
            api.manifest("wharf/wharf", VERSION).ok()
        })
        .unwrap_or_else(|| panic!("wharf/wharf:{VERSION} never appeared\n{}", node.log_tail()));
        assert_eq!(
            format!("{name}/wharf/wharf@{}", published.digest),
            self_pin,
            "the registry holds the very image the node side-loaded"
        );
        wharf(
            release,
            &[
                "load",
                "-q",
                "--to",
                &name,
                work.join("day1.tar").to_str().unwrap(),
            ],
        );
        assert_eq!(
            api.manifest("repo/app", "v0.4.2").unwrap().digest,
            day.app_v1.digest().to_string(),
            "at its plain path: a node pulling the name directly finds it"
        );

        // Day 2: a new tag, pulled by the same name through the CRI.
        wharf(
            release,
            &[
                "load",
                "-q",
                "--to",
                &name,
                work.join("day2.tar").to_str().unwrap(),
            ],
        );
        let next = format!("{name}/repo/app:v0.4.3");
        let pulled = containerd.cri_pull(&next);
        assert!(
            pulled.status.success(),
            "{release}: crictl pull {next}\n{}\n{}",
            pulled.describe(),
            node.log_tail()
        );
        assert_cri_finds(
            &containerd,
            &next,
            &format!("{name}/repo/app@{}", day.app_v2.digest()),
        );
        let mut repos = api.catalog().unwrap();
        repos.sort();
        assert_eq!(
            repos,
            ["repo/app", "wharf/wharf"],
            "no host-prefixed copies"
        );
    });
}

#[test]
fn day_one_side_load_then_day_two_pull_on_containerd_1_6() {
    day_one_then_day_two(Release::Debian);
}

#[test]
fn day_one_side_load_then_day_two_pull_on_containerd_2() {
    day_one_then_day_two(Release::Latest);
}
