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

fn unpack_findings(release: &str, text: &str) -> Vec<Diagnostic> {
    linter(release)
        .lint_config(Path::new("config.toml"), text)
        .into_iter()
        .filter(|d| d.code == Code::UnpackPlatformMissing)
        .collect()
}

#[test]
fn an_image_snapshotter_the_transfer_service_does_not_unpack_into_is_an_error_from_2_1() {
    let native =
        "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"native\"\n";
    let found = unpack_findings("2.4.2", native);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Error);
    assert_eq!(found[0].position.map(|p| p.line), Some(3));
    assert!(
        found[0].message.contains("\"native\""),
        "{}",
        found[0].message
    );
    // 2.0's CRI pulls itself; the rule does not apply.
    assert!(unpack_findings("2.0.14", native).is_empty());
    // Pulling without the transfer service, or listing the snapshotter, is right.
    let local = format!("{native}  use_local_image_pull = true\n");
    assert!(unpack_findings("2.4.2", &local).is_empty());
    let listed = format!(
        "{native}[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n  platform = \"linux/amd64\"\n  snapshotter = \"native\"\n  differ = \"walking\"\n"
    );
    assert!(unpack_findings("2.4.2", &listed).is_empty());
    // The default snapshotter needs nothing.
    assert!(unpack_findings("2.4.2", "version = 3\n").is_empty());
}

#[test]
fn an_unpack_list_without_the_image_snapshotter_is_flagged_at_the_list() {
    let text = "version = 4\n[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n  platform = \"linux/amd64\"\n  snapshotter = \"native\"\n";
    let found = unpack_findings("2.4", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.contains("\"overlayfs\""),
        "{}",
        found[0].message
    );
    assert_eq!(found[0].position.map(|p| p.line), Some(2));
}

#[test]
fn a_version_2_snapshotter_is_not_carried_to_the_image_service_on_2_x() {
    let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n[[plugins.\"io.containerd.transfer.v1.local\".unpack_config]]\n  platform = \"linux/amd64\"\n  snapshotter = \"native\"\n";
    let found = unpack_findings("2.4.2", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.contains("does not carry over"),
        "{}",
        found[0].message
    );
}
