//! Generation round trips: what wharf writes lints clean; patch keeps the
//! author's text; unsafe requests are refused.

mod common;

use std::fs;

use common::{assert_clean, codes};
use wharf_containerd::{
    config_snippet, generate_hosts, lint_config, patch_config, write_atomic, ConfigVersion, Error,
    HostSettings, HostsRequest, Linter, MirrorUrl, Namespace, PatchOptions,
};

fn request(mirrors: &[&str], upstreams: &[&str]) -> HostsRequest {
    HostsRequest {
        upstreams: upstreams
            .iter()
            .map(|u| Namespace::parse(u).unwrap())
            .collect(),
        mirrors: mirrors
            .iter()
            .map(|m| HostSettings::new(MirrorUrl::parse(m).unwrap()))
            .collect(),
        include_default: false,
        containerd: None,
    }
}

#[test]
fn generated_hosts_directory_lints_clean() {
    let mut req = request(
        &["http://registry.home.arpa:5000"],
        &[
            "registry.k8s.io",
            "docker.io",
            "ghcr.io",
            "quay.io",
            "host:5000",
        ],
    );
    req.include_default = true;
    let files = generate_hosts(&req).unwrap();
    let dirs: Vec<&str> = files.iter().map(|f| f.dir.as_str()).collect();
    assert_eq!(
        dirs,
        [
            "registry.k8s.io",
            "docker.io",
            "ghcr.io",
            "quay.io",
            "host:5000",
            "_default"
        ]
    );
    assert!(files[1]
        .contents
        .contains("server = \"https://registry-1.docker.io\""));
    assert!(
        !files[5].contents.contains("server ="),
        "_default has no single upstream"
    );

    let root = tempfile::tempdir().unwrap();
    for f in &files {
        fs::create_dir_all(root.path().join(&f.dir)).unwrap();
        write_atomic(&root.path().join(f.relative_path()), f.contents.as_bytes()).unwrap();
    }
    let diags = wharf_containerd::lint_hosts_dir(root.path());
    assert!(
        diags.is_empty(),
        "{}",
        wharf_containerd::render_human(&diags)
    );
}

#[test]
fn https_mirror_with_every_option_lints_clean() {
    let mut req = request(
        &["https://mirror.home.arpa/repository/docker-proxy"],
        &["docker.io"],
    );
    req.containerd = Some("2.1".parse().unwrap());
    let m = &mut req.mirrors[0];
    m.skip_verify = true;
    m.ca = vec!["/etc/containerd/certs.d/ca.pem".into()];
    m.client = vec![wharf_containerd::ClientCert {
        cert: "/c.pem".into(),
        key: Some("/k.pem".into()),
    }];
    m.headers = vec![("X-Org".into(), vec!["a \"quoted\" value".into()])];
    m.dial_timeout = Some("1s".into());
    let files = generate_hosts(&req).unwrap();
    let text = &files[0].contents;
    assert!(
        text.contains("override_path = true"),
        "path beyond the host needs override_path:\n{text}"
    );
    assert!(text.contains("dial_timeout = \"1s\""));
    assert!(text.contains("client = [[\"/c.pem\", \"/k.pem\"]]"));
    let diags = Linter::new()
        .with_containerd("2.1".parse().unwrap())
        .lint_hosts_file(std::path::Path::new("hosts.toml"), "docker.io", text);
    assert!(
        diags.is_empty(),
        "{}",
        wharf_containerd::render_human(&diags)
    );
}

#[test]
fn no_override_path_for_a_plain_host() {
    let files =
        generate_hosts(&request(&["http://registry.home.arpa:5000"], &["ghcr.io"])).unwrap();
    assert!(!files[0].contents.contains("override_path"));
}

#[test]
fn refuses_tls_options_on_plain_http() {
    let mut req = request(&["http://registry.home.arpa:5000"], &["ghcr.io"]);
    req.mirrors[0].skip_verify = true;
    assert!(
        matches!(generate_hosts(&req), Err(Error::InvalidOption(m)) if m.contains("plain HTTP"))
    );
}

#[test]
fn refuses_dial_timeout_without_a_release_that_supports_it() {
    let mut req = request(&["https://m.example"], &["ghcr.io"]);
    req.mirrors[0].dial_timeout = Some("1s".into());
    assert!(generate_hosts(&req).is_err(), "unknown release");
    req.containerd = Some("1.7".parse().unwrap());
    assert!(generate_hosts(&req).is_err(), "1.7 has no dial_timeout");
    req.containerd = Some("2.0.7".parse().unwrap());
    assert!(generate_hosts(&req).is_ok());
}

#[test]
fn refuses_duplicate_upstreams_and_empty_requests() {
    assert!(generate_hosts(&request(&["https://m.example"], &["ghcr.io", "ghcr.io"])).is_err());
    assert!(generate_hosts(&request(&["https://m.example"], &[])).is_err());
    assert!(generate_hosts(&request(&[], &["ghcr.io"])).is_err());
}

#[test]
fn snippets_lint_clean_for_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    for version in [ConfigVersion::V2, ConfigVersion::V3, ConfigVersion::V4] {
        let text = config_snippet(version, path).unwrap();
        let diags = lint_config(std::path::Path::new("config.toml"), &text);
        assert_clean(&diags);
        assert_eq!(codes(&diags), ["WH017"], "version {version}");
        assert_eq!(
            wharf_containerd::config_path_of(&text).as_deref(),
            Some(path)
        );
    }
}

fn patch(text: &str, version: Option<ConfigVersion>) -> Result<String, Error> {
    patch_config(
        text,
        &PatchOptions {
            config_path: "/etc/containerd/certs.d".into(),
            version,
        },
    )
}

#[test]
fn patch_keeps_comments_and_order() {
    let original = "# Managed by hand; keep this comment.\nversion = 2\nroot = \"/var/lib/containerd\" # data\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  # sandbox comes from the mirror too\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n";
    let patched = patch(original, None).unwrap();
    assert!(
        patched.starts_with(original),
        "existing text must be kept verbatim:\n{patched}"
    );
    assert!(patched.ends_with("[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n"), "{patched}");
    assert_eq!(
        patch(&patched, None).unwrap(),
        patched,
        "patching twice changes nothing"
    );
}

#[test]
fn patch_writes_the_version_3_path() {
    let patched = patch("version = 3\n", None).unwrap();
    assert!(
        patched.contains("[plugins.\"io.containerd.cri.v1.images\".registry]"),
        "{patched}"
    );
}

#[test]
fn patch_refuses_mirrors_next_to_config_path() {
    let text = common::read_fixture("config/seed_c_mirrors_with_config_path.toml");
    let err = patch(&text, None).unwrap_err();
    assert!(
        matches!(&err, Error::PatchRefused { reason, .. } if reason.contains("mirrors")),
        "{err}"
    );
}

#[test]
fn patch_refuses_configs_tls() {
    let text = common::read_fixture("config/configs_tls.toml");
    assert!(matches!(
        patch(&text, None),
        Err(Error::PatchRefused { .. })
    ));
}

#[test]
fn patch_refuses_misplaced_registry_and_version_mismatch() {
    let seed_a = common::read_fixture("config/seed_a_v3_with_v2_registry.toml");
    assert!(matches!(
        patch(&seed_a, None),
        Err(Error::PatchRefused { .. })
    ));
    assert!(matches!(
        patch("version = 2\n", Some(ConfigVersion::V3)),
        Err(Error::PatchRefused { .. })
    ));
}

#[test]
fn patch_refuses_files_without_version_that_have_plugins() {
    let text = "[plugins.cri.registry]\n  config_path = \"\"\n";
    let err = patch(text, Some(ConfigVersion::V2)).unwrap_err();
    assert!(err.to_string().contains("version 1"), "{err}");
}

#[test]
fn patch_reports_syntax_errors_with_a_position() {
    let err = patch("version = 2\n[plugins\n", None).unwrap_err();
    assert!(matches!(err, Error::Syntax { line: 2, .. }), "{err:?}");
}
