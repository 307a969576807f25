//! `wharf doctor`'s verdict equals reality: for each node configuration
//! below, on Debian's containerd 1.6 and the newest 2.x (and 2.0 where it
//! reads a file differently), containerd is
//! started with it (network namespace with only loopback, a wharf mirror, a
//! counting stand-in upstream), the kubelet's CRI `PullImage` runs
//! (`crictl pull`), then `wharf doctor --address <socket>`. Doctor's exit
//! status must equal the pull's outcome, and when the pull fails, the layer
//! doctor names first must be the one that broke. Each cell also states the
//! outcome the release really has, so a change in containerd shows up here.

mod common;

use common::server::Wharf;
use std::path::{Path, PathBuf};
use std::process::Command;
use wharf_testkit::image::{self, host_arch, write_oci_layout, Format};
use wharf_testkit::tools::{run, skopeo};
use wharf_testkit::{free_port, in_private_netns};

use common::containerd::{write_docker_io_mirror, Containerd, Release};
use common::standin::StandIn;
use common::tls::{ca_init, ca_issue, HttpsWharf};
use serde_json::Value;

const NAME: &str = "wharf-doctor-e2e";
const REFERENCE: &str = "docker.io/library/wharf-doctor-e2e:1.0";

/// A node configuration of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    /// What `wharf containerd config --patch` writes for the release.
    Right,
    /// `version = 2` with the registry under `io.containerd.cri.v1.images`.
    V3SectionInV2File,
    /// `version = 3` with `io.containerd.cri.v1.images` paths.
    V3FileV3Paths,
    /// `version = 3` with `io.containerd.grpc.v1.cri` paths.
    V3FileV2Paths,
    /// The mirror's URL without /v2 and `override_path = true`.
    OverridePath,
    /// A dead mirror first, the wharf mirror second.
    DeadMirrorWithFallback,
    /// No registry settings at all.
    NoRegistryConfig,
    /// Deprecated `registry.mirrors` pointing at wharf, no `config_path`.
    DeprecatedMirrors,
    /// The hosts.toml for docker.io is not TOML.
    HostsTomlDoesNotParse,
    /// The mirror speaks HTTPS with a certificate from a CA the node lacks.
    TlsCaMissing,
}

/// What the pull does, and which layer doctor must name when it fails.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Pulls,
    /// The first failure doctor names: its layer and a part of its URL.
    Fails {
        layer: &'static str,
        at: Place,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Place {
    ConfigToml,
    HostsToml,
    Mirror,
    Upstream,
}

impl Cell {
    /// Reality, as observed with containerd 1.6.20 and 2.4.2 (see each rule
    /// in `wharf_containerd::model_registry`).
    fn expected(self, release: Release) -> Expected {
        let on_1x = release == Release::Debian;
        let config = Expected::Fails {
            layer: "config",
            at: Place::ConfigToml,
        };
        match self {
            Cell::Right | Cell::DeadMirrorWithFallback | Cell::DeprecatedMirrors => Expected::Pulls,
            Cell::V3SectionInV2File | Cell::V3FileV3Paths if on_1x => config,
            Cell::V3SectionInV2File | Cell::V3FileV3Paths => Expected::Pulls,
            // 2.0–2.2 read a version-3 file as is: the version-2 table is ignored.
            Cell::V3FileV2Paths if release == Release::V2_0 => config,
            // 1.6 reads version-2 IDs whatever the version; 2.3+ migrates version 3.
            Cell::V3FileV2Paths => Expected::Pulls,
            Cell::OverridePath => Expected::Fails {
                layer: "manifest",
                at: Place::Mirror,
            },
            Cell::NoRegistryConfig => Expected::Fails {
                layer: "dns",
                at: Place::Upstream,
            },
            Cell::HostsTomlDoesNotParse => Expected::Fails {
                layer: "config",
                at: Place::HostsToml,
            },
            Cell::TlsCaMissing => Expected::Fails {
                layer: "tls",
                at: Place::Mirror,
            },
        }
    }
}

/// The `registry` table a release reads natively, as `[plugins."…".registry]`.
fn native_registry(release: Release) -> (&'static str, &'static str) {
    match release {
        Release::Debian => ("2", "io.containerd.grpc.v1.cri"),
        _ => ("3", "io.containerd.cri.v1.images"),
    }
}

fn config_text(cell: Cell, release: Release, hosts_dir: &Path, mirror: &str) -> String {
    let dir = hosts_dir.display();
    let (native_version, native_plugin) = native_registry(release);
    let registry = |version: &str, plugin: &str| {
        format!("version = {version}\n[plugins.\"{plugin}\".registry]\n  config_path = \"{dir}\"\n")
    };
    match cell {
        Cell::Right | Cell::OverridePath | Cell::DeadMirrorWithFallback | Cell::HostsTomlDoesNotParse | Cell::TlsCaMissing => {
            registry(native_version, native_plugin)
        }
        Cell::V3SectionInV2File => registry("2", "io.containerd.cri.v1.images"),
        Cell::V3FileV3Paths => registry("3", "io.containerd.cri.v1.images"),
        Cell::V3FileV2Paths => registry("3", "io.containerd.grpc.v1.cri"),
        Cell::NoRegistryConfig => format!("version = {native_version}\n"),
        Cell::DeprecatedMirrors => format!(
            "version = {native_version}\n[plugins.\"{native_plugin}\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"{mirror}\"]\n"
        ),
    }
}

/// Writes `<hosts_dir>/docker.io/hosts.toml` for the cell.
fn write_hosts(cell: Cell, hosts_dir: &Path, upstream: &str, mirror: &str) {
    write_docker_io_mirror(hosts_dir, upstream, mirror);
    let file = hosts_dir.join("docker.io").join("hosts.toml");
    let custom = match cell {
        Cell::OverridePath => format!(
            "server = \"{upstream}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
        ),
        Cell::DeadMirrorWithFallback => format!(
            "server = \"{upstream}\"\n\n[host.\"http://127.0.0.1:{dead}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n\
             [host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            dead = free_port()
        ),
        Cell::HostsTomlDoesNotParse => format!(
            "server = \"{upstream}\"\n\n[host.\"{mirror}\"\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
        _ => return,
    };
    std::fs::write(&file, custom).expect("write hosts.toml");
}

/// Pushes a single-platform OCI image to `<registry>/docker.io/library/NAME:1.0`.
fn push(work: &Path, registry_host: &str, tls_args: &[&str]) {
    let artifact = image::image(Format::Oci, NAME, host_arch());
    let layout = work.join("layout");
    write_oci_layout(&artifact, &layout, "1.0");
    let source = format!("oci:{}:1.0", layout.display());
    let dest = format!("docker://{registry_host}/docker.io/library/{NAME}:1.0");
    run(
        skopeo()
            .args(["copy", "--preserve-digests"])
            .args(tls_args)
            .args([&source, &dest]),
        &format!("pushing {source} to {dest}"),
    );
}

/// The mirror a cell uses: plain HTTP, or HTTPS with a CA the node lacks.
enum Mirror {
    Http(Wharf),
    Https(HttpsWharf),
}

impl Mirror {
    fn start(cell: Cell, work: &Path) -> Mirror {
        if cell != Cell::TlsCaMissing {
            let wharf = Wharf::start(&work.join("wharf"));
            push(work, &wharf.host(), &["--dest-tls-verify=false"]);
            return Mirror::Http(wharf);
        }
        let ca_dir = work.join("ca");
        let ca_cert = ca_init(&ca_dir);
        let (cert, key) = ca_issue(&ca_dir, &["127.0.0.1"], &work.join("server"));
        let wharf = HttpsWharf::start(&work.join("wharf"), &cert, &key, &ca_cert);
        let certs = work.join("skopeo-certs");
        std::fs::create_dir_all(&certs).expect("create cert dir");
        std::fs::copy(&ca_cert, certs.join("ca.crt")).expect("copy CA");
        let cert_dir = format!("--dest-cert-dir={}", certs.display());
        push(work, &wharf.host(), &[&cert_dir]);
        Mirror::Https(wharf)
    }

    fn url(&self) -> String {
        match self {
            Mirror::Http(w) => w.url(),
            Mirror::Https(w) => w.url(),
        }
    }
}

/// What `wharf doctor --output json` said, and its exit status.
struct Doctor {
    exit: i32,
    report: Value,
    text: String,
}

fn doctor(containerd: &Containerd, config: &Path) -> Doctor {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "doctor",
            REFERENCE,
            "--output",
            "json",
            "--timeout",
            "3",
            "--address",
        ])
        .arg(containerd.socket())
        .arg("--config")
        .arg(config)
        .output()
        .expect("run wharf doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "wharf doctor printed no JSON report ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Doctor {
        exit: out.status.code().expect("exit code"),
        report,
        text,
    }
}

fn run_cell(cell: Cell, release: Release) {
    let work = tempfile::tempdir().expect("temp dir");
    let work = work.path();
    in_private_netns(|| {
        let upstream = StandIn::start();
        let mirror = Mirror::start(cell, work);
        let hosts_dir = work.join("certs.d");
        write_hosts(cell, &hosts_dir, &upstream.url(), &mirror.url());
        let config = config_text(cell, release, &hosts_dir, &mirror.url());
        let containerd = Containerd::start_with_config(&work.join("containerd"), release, &config);
        containerd.assert_cri_answers();

        let pull = containerd.cri_pull(REFERENCE);
        let doctor = doctor(&containerd, containerd.config_file());
        let context = format!(
            "{cell:?} on {release}\n--- crictl pull ---\n{}\n--- doctor ---\n{}\n--- config.toml ---\n{config}",
            pull.describe(),
            doctor.text
        );

        let expected = cell.expected(release);
        assert_eq!(
            pull.status.success(),
            expected == Expected::Pulls,
            "the real pull did not do what this cell records\n{context}"
        );
        let doctor_says_pulls = doctor.exit == 0;
        assert_eq!(
            doctor_says_pulls,
            pull.status.success(),
            "doctor's verdict differs from the real pull\n{context}"
        );
        assert_eq!(
            doctor.report["containerd"]["runtime"]["asked"], true,
            "doctor did not ask the running containerd\n{context}"
        );
        if cell == Cell::Right {
            assert_sandbox_reported(&doctor.report, release, &context);
        }
        match expected {
            Expected::Pulls => assert_eq!(
                upstream.requests(),
                0,
                "the pull went to the upstream: {:?}\n{context}",
                upstream.request_lines()
            ),
            Expected::Fails { layer, at } => {
                let first = &doctor.report["verdict"]["failures"][0];
                assert_eq!(first["layer"], layer, "wrong layer named\n{context}");
                let url = first["url"].as_str().unwrap_or_default();
                let place_ok = match at {
                    Place::ConfigToml => url.ends_with("config.toml"),
                    Place::HostsToml => url.ends_with("hosts.toml"),
                    Place::Mirror => url.contains(
                        mirror
                            .url()
                            .trim_start_matches("http://")
                            .trim_start_matches("https://"),
                    ),
                    Place::Upstream => url.contains("registry-1.docker.io"),
                };
                assert!(
                    place_ok,
                    "doctor names {url}, expected the {at:?}\n{context}"
                );
                let fixes = doctor.report["verdict"]["failures"].to_string();
                assert!(
                    !fixes.contains("/etc/hosts"),
                    "doctor tells an air-gapped node to reach the internet\n{context}"
                );
            }
        }
    });
}

/// The sandbox image every pod needs: named, looked up in the runtime, and
/// (not being in the mirror) its pull judged to fail.
fn assert_sandbox_reported(report: &Value, release: Release, context: &str) {
    let setup = &report["containerd"];
    let image = setup["sandbox_image"].as_str().unwrap_or_default();
    assert!(
        image.starts_with("registry.k8s.io/pause:"),
        "sandbox image: {image}\n{context}"
    );
    let source = setup["sandbox_image_source"].as_str().unwrap_or_default();
    match release {
        Release::Debian => assert_eq!(source, "reported by the running containerd", "{context}"),
        _ => assert!(source.contains("default"), "{source}\n{context}"),
    }
    assert_eq!(setup["sandbox_image_present"], false, "{context}");
    assert_eq!(setup["sandbox_pull_would_succeed"], false, "{context}");
}

macro_rules! matrix {
    ($($(#[$attr:meta])* $name:ident: $cell:expr, $release:expr;)*) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                run_cell($cell, $release);
            }
        )*
    };
}

matrix! {
    right_1_6: Cell::Right, Release::Debian;
    right_2x: Cell::Right, Release::Latest;
    v3_section_in_v2_file_1_6: Cell::V3SectionInV2File, Release::Debian;
    v3_section_in_v2_file_2x: Cell::V3SectionInV2File, Release::Latest;
    v3_file_v3_paths_1_6: Cell::V3FileV3Paths, Release::Debian;
    v3_file_v3_paths_2x: Cell::V3FileV3Paths, Release::Latest;
    v3_file_v2_paths_1_6: Cell::V3FileV2Paths, Release::Debian;
    v3_file_v2_paths_2x: Cell::V3FileV2Paths, Release::Latest;
    v3_file_v2_paths_2_0: Cell::V3FileV2Paths, Release::V2_0;
    override_path_1_6: Cell::OverridePath, Release::Debian;
    override_path_2x: Cell::OverridePath, Release::Latest;
    dead_mirror_with_fallback_1_6: Cell::DeadMirrorWithFallback, Release::Debian;
    dead_mirror_with_fallback_2x: Cell::DeadMirrorWithFallback, Release::Latest;
    no_registry_config_1_6: Cell::NoRegistryConfig, Release::Debian;
    no_registry_config_2x: Cell::NoRegistryConfig, Release::Latest;
    deprecated_mirrors_1_6: Cell::DeprecatedMirrors, Release::Debian;
    deprecated_mirrors_2x: Cell::DeprecatedMirrors, Release::Latest;
    hosts_toml_does_not_parse_1_6: Cell::HostsTomlDoesNotParse, Release::Debian;
    hosts_toml_does_not_parse_2x: Cell::HostsTomlDoesNotParse, Release::Latest;
    tls_ca_missing_1_6: Cell::TlsCaMissing, Release::Debian;
    tls_ca_missing_2x: Cell::TlsCaMissing, Release::Latest;
}

/// containerd started with one file, then the file edited without a
/// restart: doctor reports what the runtime loaded, and says they differ.
fn file_differs_from_loaded(release: Release) {
    let work = tempfile::tempdir().expect("temp dir");
    let work = work.path();
    in_private_netns(|| {
        let upstream = StandIn::start();
        let mirror = Mirror::start(Cell::Right, work);
        let hosts_dir = work.join("certs.d");
        write_hosts(Cell::Right, &hosts_dir, &upstream.url(), &mirror.url());
        let config = config_text(Cell::Right, release, &hosts_dir, &mirror.url());
        let containerd = Containerd::start_with_config(&work.join("containerd"), release, &config);
        containerd.assert_cri_answers();
        let loaded = hosts_dir.display().to_string();
        let edited_dir = work.join("elsewhere");
        let file: PathBuf = containerd.config_file().to_owned();
        let text = std::fs::read_to_string(&file).expect("read config");
        std::fs::write(
            &file,
            text.replace(&loaded, &edited_dir.display().to_string()),
        )
        .expect("edit config");

        let pull = containerd.cri_pull(REFERENCE);
        let doctor = doctor(&containerd, &file);
        let context = format!(
            "{release}\n{}\n--- doctor ---\n{}",
            pull.describe(),
            doctor.text
        );
        assert!(
            pull.status.success(),
            "the runtime still uses the loaded file\n{context}"
        );
        assert_eq!(
            doctor.exit, 0,
            "doctor must follow what was loaded\n{context}"
        );
        assert_eq!(
            doctor.report["containerd"]["config_path"].as_str(),
            Some(loaded.as_str()),
            "{context}"
        );
        let first_note = doctor.report["verdict"]["notes"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            first_note.contains(&format!(
                "config.toml sets config_path = \"{}\"",
                edited_dir.display()
            )) && first_note.contains(&format!("loaded \"{loaded}\"")),
            "the difference must come first\n{context}"
        );
    });
}

#[test]
fn file_differs_from_loaded_1_6() {
    file_differs_from_loaded(Release::Debian);
}

#[test]
fn file_differs_from_loaded_2x() {
    file_differs_from_loaded(Release::Latest);
}

/// containerd up without its CRI plugin: nothing can pull for the kubelet,
/// whatever the mirror holds.
#[test]
fn containerd_without_its_cri_never_would_succeed() {
    let work = tempfile::tempdir().expect("temp dir");
    let work = work.path();
    in_private_netns(|| {
        let upstream = StandIn::start();
        let mirror = Mirror::start(Cell::Right, work);
        let hosts_dir = work.join("certs.d");
        write_hosts(Cell::Right, &hosts_dir, &upstream.url(), &mirror.url());
        let config = config_text(Cell::Right, Release::Debian, &hosts_dir, &mirror.url()).replacen(
            "version = 2\n",
            "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
            1,
        );
        let containerd =
            Containerd::start_with_config(&work.join("containerd"), Release::Debian, &config);
        let pull = containerd.cri_pull(REFERENCE);
        let doctor = doctor(&containerd, containerd.config_file());
        let context = format!("{}\n--- doctor ---\n{}", pull.describe(), doctor.text);
        assert!(!pull.status.success(), "{context}");
        assert_eq!(doctor.exit, 1, "{context}");
        let first = &doctor.report["verdict"]["failures"][0];
        assert_eq!(first["layer"], "config", "{context}");
        assert!(
            first["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("without its CRI plugin"),
            "{context}"
        );
    });
}
