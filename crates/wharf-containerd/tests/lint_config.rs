//! One fixture per config.toml rule; each asserts code, severity, line and column.

mod common;

use common::{assert_at, codes, column_of, fixture, only, read_fixture};
use wharf_containerd::{lint_config, Code, Diagnostic, Linter, Severity};

fn lint_fixture(rel: &str) -> (String, Vec<Diagnostic>) {
    let text = read_fixture(rel);
    let diags = lint_config(&fixture(rel), &text);
    (text, diags)
}

#[test]
fn wh001_unparsable_config_names_the_line() {
    let (_, diags) = lint_fixture("config/invalid_toml.toml");
    let d = only(&diags, Code::InvalidToml);
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.line(), Some(4));
    assert!(d.containerd_will.contains("refuse to start"), "{d:?}");
    assert_eq!(
        diags.len(),
        1,
        "nothing else is checked in an unparsable file"
    );
}

#[test]
fn wh002_seed_a_version_3_with_the_version_2_registry_path() {
    let (text, diags) = lint_fixture("config/seed_a_v3_with_v2_registry.toml");
    let d = only(&diags, Code::WrongVersionPath);
    assert_at(d, Severity::Error, 4, column_of(&text, 4, "registry"));
    assert!(d
        .containerd_will
        .contains("Ignoring unknown key in TOML for plugin"));
    assert!(d
        .fix
        .contains("[plugins.\"io.containerd.cri.v1.images\".registry]"));
    assert!(
        !codes(&diags).contains(&"WH004"),
        "the misplaced registry is one problem, not two: {:?}",
        codes(&diags)
    );
}

#[test]
fn wh002_version_2_with_a_version_3_plugin() {
    let (text, diags) = lint_fixture("config/v2_with_v3_plugin.toml");
    let d = only(&diags, Code::WrongVersionPath);
    assert_at(
        d,
        Severity::Error,
        3,
        column_of(&text, 3, "\"io.containerd.cri.v1.images\""),
    );
    assert!(d.containerd_will.contains("silently"), "{d:?}");
}

#[test]
fn wh002_version_2_with_v3_plugin_is_only_a_warning_for_containerd_2() {
    let rel = "config/v2_with_v3_plugin.toml";
    let diags = Linter::new()
        .with_containerd("2.1".parse().unwrap())
        .lint_config(&fixture(rel), &read_fixture(rel));
    assert_eq!(
        only(&diags, Code::WrongVersionPath).severity,
        Severity::Warning
    );
}

#[test]
fn wh002_missing_version_with_fully_qualified_ids() {
    let (text, diags) = lint_fixture("config/no_version_full_ids.toml");
    let d = only(&diags, Code::WrongVersionPath);
    assert_at(
        d,
        Severity::Error,
        2,
        column_of(&text, 2, "\"io.containerd.grpc.v1.cri\""),
    );
    assert!(d.fix.contains("version = 2"));
}

#[test]
fn wh003_unknown_registry_key_suggests_the_known_one() {
    let (_, diags) = lint_fixture("config/unknown_registry_key.toml");
    let d = only(&diags, Code::UnknownKey);
    assert_at(d, Severity::Warning, 4, 3);
    assert!(
        d.message.contains("did you mean `config_path`"),
        "{}",
        d.message
    );
    assert_eq!(
        only(&diags, Code::ConfigPathMissing).severity,
        Severity::Warning
    );
}

#[test]
fn wh004_config_path_missing_points_at_the_plugin() {
    let (text, diags) = lint_fixture("config/no_config_path.toml");
    let d = only(&diags, Code::ConfigPathMissing);
    assert_at(
        d,
        Severity::Warning,
        3,
        column_of(&text, 3, "\"io.containerd"),
    );
    assert!(d.fix.contains("io.containerd.cri.v1.images"));
}

#[test]
fn wh005_config_path_directory_missing() {
    let (_, diags) = lint_fixture("config/config_path_missing_dir.toml");
    let d = only(&diags, Code::ConfigPathNotFound);
    assert_at(d, Severity::Error, 4, 3);
    assert!(d.message.contains("/nonexistent/wharf-fixture/certs.d"));
}

#[test]
fn wh005_one_missing_directory_of_several_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"{}:/nonexistent/wharf\"\n",
        dir.path().display()
    );
    let diags = lint_config(std::path::Path::new("config.toml"), &text);
    assert_eq!(
        only(&diags, Code::ConfigPathNotFound).severity,
        Severity::Warning
    );
}

#[test]
fn wh006_seed_c_mirrors_together_with_config_path() {
    let (text, diags) = lint_fixture("config/seed_c_mirrors_with_config_path.toml");
    let d = only(&diags, Code::MirrorsWithConfigPath);
    assert_at(d, Severity::Error, 6, column_of(&text, 6, "mirrors"));
    assert!(d
        .containerd_will
        .contains("`mirrors` cannot be set when `config_path` is provided"));
}

#[test]
fn wh007_configs_tls_together_with_config_path() {
    let (text, diags) = lint_fixture("config/configs_tls.toml");
    let d = only(&diags, Code::ConfigsTlsWithConfigPath);
    assert_at(d, Severity::Error, 6, column_of(&text, 6, "tls]"));
}

#[test]
fn wh013_config_path_of_the_wrong_type() {
    let (_, diags) = lint_fixture("config/config_path_not_string.toml");
    assert_at(only(&diags, Code::InvalidValue), Severity::Error, 4, 3);
}

#[test]
fn wh017_ctr_note_accompanies_config_path() {
    let (_, diags) = lint_fixture("config/config_path_missing_dir.toml");
    let d = only(&diags, Code::CtrIgnoresConfigPath);
    assert_at(d, Severity::Info, 4, 3);
    assert!(d
        .fix
        .contains("--hosts-dir /nonexistent/wharf-fixture/certs.d"));
}

#[test]
fn wh018_unknown_config_version() {
    let (_, diags) = lint_fixture("config/bad_version.toml");
    assert_at(
        only(&diags, Code::UnsupportedVersion),
        Severity::Error,
        1,
        1,
    );
}

#[test]
fn wh018_version_3_file_for_containerd_1_7() {
    let rel = "config/no_config_path.toml";
    let diags = Linter::new()
        .with_containerd("1.7".parse().unwrap())
        .lint_config(&fixture(rel), &read_fixture(rel));
    let d = only(&diags, Code::UnsupportedVersion);
    assert_at(d, Severity::Error, 1, 1);
    assert!(d.containerd_will.contains("silently ignores"), "{d:?}");
}

#[test]
fn json_output_is_versioned_and_carries_positions() {
    let (_, diags) = lint_fixture("config/seed_a_v3_with_v2_registry.toml");
    let json: serde_json::Value =
        serde_json::from_str(&wharf_containerd::render_json(&diags)).unwrap();
    assert_eq!(json["version"], 1);
    let first = &json["diagnostics"][0];
    assert_eq!(first["code"], "WH002");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 4);
    assert_eq!(json["summary"]["errors"], 1);
}

#[test]
fn human_output_has_caret_and_fix() {
    let (_, diags) = lint_fixture("config/seed_a_v3_with_v2_registry.toml");
    let out = wharf_containerd::render_human(&diags);
    let expected_head = format!(
        "{}:4:38: error[WH002]:",
        fixture("config/seed_a_v3_with_v2_registry.toml").display()
    );
    assert!(out.starts_with(&expected_head), "{out}");
    assert!(
        out.contains("\n4 | [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("\n  | {}^\n", " ".repeat(37))),
        "{out}"
    );
    assert!(out.contains("  = containerd will: "));
    assert!(out.contains("  = fix: move it to"));
    assert!(wharf_containerd::has_errors(&diags));
}
