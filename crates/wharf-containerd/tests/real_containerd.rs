//! Checks against the real containerd installed on this machine (Debian's
//! containerd 1.6). They need root and `containerd` on PATH, and fail with
//! a clear message otherwise rather than passing silently.
//!
//! Everything runs with its own root, state and socket under a temporary
//! directory; the daemon test runs in a fresh network namespace with only
//! loopback up (the test kit's), and is stopped by its PID.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use wharf_containerd::{
    config_snippet, lint_config, Code, ConfigVersion, ContainerdRelease, Linter, Severity,
};
use wharf_testkit::process::ChildGuard;
use wharf_testkit::tools::{require_root, require_tool};
use wharf_testkit::{in_private_netns, wait_for};

fn containerd_binary() -> PathBuf {
    require_tool("containerd")
}

fn installed_release() -> ContainerdRelease {
    let out = Command::new(containerd_binary())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
    let version = text
        .split_whitespace()
        .nth(2)
        .expect("containerd --version output");
    version.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Top-level root and state keys under `dir`; they must precede every table.
fn private_roots(dir: &Path) -> String {
    let d = dir.display();
    format!("root = \"{d}/root\"\nstate = \"{d}/state\"\n")
}

/// Socket and plugin paths under `dir`, as tables.
fn private_tables(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[grpc]\n  address = \"{d}/containerd.sock\"\n\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\n\
         [debug]\n  address = \"\"\n\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
    )
}

/// Private root/state, then `body` (which may start with top-level keys), then private tables.
fn private_config(dir: &Path, body: &str) -> String {
    format!("{}{body}\n{}", private_roots(dir), private_tables(dir))
}

fn config_dump(config: &Path) -> Output {
    require_root("starting containerd");
    let out = Command::new(containerd_binary())
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .expect("run containerd config dump");
    assert!(
        out.status.success(),
        "config dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `[plugins."io.containerd.grpc.v1.cri".registry]` block of a dump.
fn dumped_cri_registry(dump: &str) -> String {
    let start = dump
        .find("[plugins.\"io.containerd.grpc.v1.cri\".registry]")
        .expect("dump has the CRI registry section");
    dump[start..].lines().take(3).collect::<Vec<_>>().join("\n")
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("config.toml");
    fs::write(&path, body).unwrap();
    path
}

#[test]
fn generated_version_2_config_is_loaded_by_containerd_1_6() {
    assert!(
        installed_release().is_1x(),
        "expected Debian's containerd 1.x"
    );
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().join("certs.d");
    fs::create_dir(&hosts).unwrap();
    let hosts = hosts.to_str().unwrap();
    let body = private_config(
        tmp.path(),
        &config_snippet(ConfigVersion::V2, hosts).unwrap(),
    );
    let config = write_config(tmp.path(), &body);
    common::assert_clean(&lint_config(&config, &body));

    let out = config_dump(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        dumped_cri_registry(&stdout).contains(&format!("config_path = \"{hosts}\"")),
        "{stdout}"
    );
    assert!(
        !stderr.contains("unknown key") && !stderr.contains("level=warn"),
        "{stderr}"
    );
}

#[test]
fn version_3_plugin_in_a_version_2_file_is_dropped_silently_as_lint_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let body = private_config(
        tmp.path(),
        "version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
    );
    let config = write_config(tmp.path(), &body);
    let diags = lint_config(&config, &body);
    let predicted = diags
        .iter()
        .find(|d| d.code == Code::WrongVersionPath)
        .expect("lint reports the version-3 plugin");
    assert_eq!(predicted.severity, Severity::Error);
    assert!(predicted.containerd_will.contains("silently drop"));

    let out = config_dump(&config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // containerd 1.6 does not report unknown keys at all: no warning, and the setting is gone.
    assert!(stderr.trim().is_empty(), "containerd 1.6 printed: {stderr}");
    assert!(
        dumped_cri_registry(&stdout).contains("config_path = \"\""),
        "{stdout}"
    );
    assert!(!stdout.contains("io.containerd.cri.v1.images"), "{stdout}");
}

#[test]
fn version_3_snippet_is_flagged_for_the_installed_release_and_ignored_by_it() {
    let release = installed_release();
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().to_str().unwrap();
    let body = private_config(
        tmp.path(),
        &config_snippet(ConfigVersion::V3, hosts).unwrap(),
    );
    let config = write_config(tmp.path(), &body);
    let diags = Linter::new()
        .with_containerd(release)
        .lint_config(&config, &body);
    let d = diags
        .iter()
        .find(|d| d.code == Code::UnsupportedVersion)
        .expect("WH018");
    assert!(d.containerd_will.contains("silently ignores"), "{d:?}");

    let stdout = String::from_utf8_lossy(&config_dump(&config).stdout).into_owned();
    assert!(
        dumped_cri_registry(&stdout).contains("config_path = \"\""),
        "{stdout}"
    );
}

/// Start containerd in a network namespace of its own with only loopback,
/// logging to `log`; it is stopped by its PID when the guard is dropped.
fn start_daemon(config: &Path, log: &Path) -> ChildGuard {
    require_root("starting containerd");
    let mut cmd = Command::new(containerd_binary());
    cmd.arg("--config").arg(config);
    in_private_netns(|| ChildGuard::spawn(cmd, "containerd", log))
}

/// The log once it contains `needle`, or as it is after `timeout`.
fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> String {
    let read = || fs::read_to_string(log).unwrap_or_default();
    wait_for(timeout, || {
        Some(read()).filter(|text| text.contains(needle))
    })
    .unwrap_or_else(read)
}

/// SIGTERM by PID, then SIGKILL if it does not exit in time.
fn stop_daemon(mut daemon: ChildGuard) {
    daemon.terminate(Duration::from_secs(10));
}

#[test]
fn seed_c_mirrors_with_config_path_stops_cri_as_lint_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = common::read_fixture("config/seed_c_mirrors_with_config_path.toml");
    let body = private_config(tmp.path(), &fixture);
    let config = write_config(tmp.path(), &body);

    let diags = lint_config(&config, &body);
    let predicted = diags
        .iter()
        .find(|d| d.code == Code::MirrorsWithConfigPath)
        .expect("lint reports WH006");
    let expected_error = "`mirrors` cannot be set when `config_path` is provided";
    assert!(predicted.containerd_will.contains(expected_error));
    assert!(predicted
        .containerd_will
        .contains("failed to load plugin io.containerd.grpc.v1.cri"));

    let log = tmp.path().join("containerd.log");
    let child = start_daemon(&config, &log);
    let text = wait_for_log(&log, "successfully booted", Duration::from_secs(30));
    stop_daemon(child);
    assert!(
        text.contains("failed to load plugin io.containerd.grpc.v1.cri"),
        "{text}"
    );
    assert!(text.contains(expected_error), "{text}");
}
