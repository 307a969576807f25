//! Release-aware rules: the sandbox image, and hosts.toml files that some
//! releases ignore.

use std::path::Path;

use wharf_containerd::{Code, Diagnostic, Linter, Severity};

fn codes(diagnostics: &[Diagnostic]) -> Vec<(Code, Severity)> {
    diagnostics.iter().map(|d| (d.code, d.severity)).collect()
}

fn linter(release: &str) -> Linter {
    Linter::new().with_containerd(release.parse().unwrap())
}

#[test]
fn a_short_sandbox_image_is_flagged_at_its_line() {
    let text =
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n";
    let found = linter("1.7").lint_config(Path::new("config.toml"), text);
    let sandbox: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.code == Code::SandboxImageNotQualified)
        .collect();
    assert_eq!(sandbox.len(), 1, "{found:?}");
    assert_eq!(sandbox[0].position.map(|p| p.line), Some(3));
    assert!(
        sandbox[0].message.contains("\"pause:3.9\""),
        "{}",
        sandbox[0].message
    );
    let qualified = text.replace("pause:3.9", "registry.k8s.io/pause:3.9");
    let found = linter("1.7").lint_config(Path::new("config.toml"), &qualified);
    assert!(
        !codes(&found)
            .iter()
            .any(|(c, _)| *c == Code::SandboxImageNotQualified),
        "{found:?}"
    );
}

#[test]
fn containerd_2_reads_the_pinned_sandbox_of_a_version_3_file() {
    let text = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"pause:3.10\"\n";
    let found = linter("2.1").lint_config(Path::new("config.toml"), text);
    assert!(
        codes(&found).contains(&(Code::SandboxImageNotQualified, Severity::Warning)),
        "{found:?}"
    );
}

fn setup(dir: &Path, with_k8s_mirror: bool) -> std::path::PathBuf {
    let certs = dir.join("certs.d");
    let docker = certs.join("docker.io");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("hosts.toml"),
        "server = \"https://registry-1.docker.io\"\n\n[host.\"http://10.0.0.5:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )
    .unwrap();
    if with_k8s_mirror {
        let k8s = certs.join("registry.k8s.io");
        std::fs::create_dir_all(&k8s).unwrap();
        std::fs::write(
            k8s.join("hosts.toml"),
            "server = \"https://registry.k8s.io\"\n\n[host.\"http://10.0.0.5:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        )
        .unwrap();
    }
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.k8s.io/pause:3.9\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{}\"\n",
            certs.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_sandbox_image_no_mirror_serves_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), false);
    let found = linter("1.6.20").lint_setup(&config, None);
    let flagged: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.code == Code::SandboxImageNotMirrored)
        .collect();
    assert_eq!(flagged.len(), 1, "{found:?}");
    assert!(
        flagged[0].message.contains("registry.k8s.io/pause:3.9"),
        "{}",
        flagged[0].message
    );
    assert_eq!(flagged[0].position.map(|p| p.line), Some(3));

    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), true);
    let found = linter("1.6.20").lint_setup(&config, None);
    assert!(
        !codes(&found)
            .iter()
            .any(|(c, _)| *c == Code::SandboxImageNotMirrored),
        "{found:?}"
    );
}

#[test]
fn the_release_default_sandbox_is_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), false);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("  sandbox_image = \"registry.k8s.io/pause:3.9\"\n", ""),
    )
    .unwrap();
    let found = linter("1.7").lint_setup(&config, None);
    let flagged = found
        .iter()
        .find(|d| d.code == Code::SandboxImageNotMirrored);
    assert!(
        flagged.is_some_and(|d| d.message.contains("registry.k8s.io/pause:3.8")),
        "{found:?}"
    );
}

#[test]
fn server_only_hosts_toml_is_an_error_on_the_releases_that_ignore_it() {
    let text = "server = \"http://10.0.0.5:5000\"\n";
    let file = Path::new("certs.d/registry.k8s.io/hosts.toml");
    let on = |release: &str| {
        codes(&linter(release).lint_hosts_file(file, "registry.k8s.io", text))
            .into_iter()
            .find(|(c, _)| *c == Code::ServerOnlyIgnored)
    };
    assert_eq!(
        on("1.6.20"),
        Some((Code::ServerOnlyIgnored, Severity::Error))
    );
    assert_eq!(
        on("1.7.0"),
        Some((Code::ServerOnlyIgnored, Severity::Error))
    );
    assert_eq!(on("1.6.21"), None);
    assert_eq!(on("2.1"), None);
    let any = codes(&Linter::new().lint_hosts_file(file, "registry.k8s.io", text));
    assert!(
        any.contains(&(Code::ServerOnlyIgnored, Severity::Warning)),
        "{any:?}"
    );
}
