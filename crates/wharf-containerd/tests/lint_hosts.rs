//! One fixture directory per hosts rule; each asserts code, severity, line and column.

mod common;

use std::path::Path;

use common::{assert_at, codes, column_of, fixture, only, read_fixture};
use wharf_containerd::{
    lint_hosts_dir, Code, Diagnostic, HostEntry, Linter, OnlineCheck, Severity,
};

fn lint_case(case: &str) -> Vec<Diagnostic> {
    lint_hosts_dir(&fixture(&format!("hosts/{case}")))
}

#[test]
fn wh011_seed_b_override_path_on_a_compliant_registry() {
    let diags = lint_case("seed_b");
    let d = only(&diags, Code::OverridePathWithoutPath);
    assert_at(d, Severity::Error, 5, 3);
    assert!(d.file.ends_with("registry.k8s.io/hosts.toml"));
    assert!(
        d.fix
            .contains("the registry has /v2/; remove `override_path`")
            || d.fix
                .contains("the registry has /v2/: remove `override_path`")
    );
    assert!(d.containerd_will.contains("404"));
    assert!(d.containerd_will.contains("https://registry.k8s.io"));
}

#[test]
fn wh001_unparsable_hosts_toml_falls_back_to_upstream() {
    let diags = lint_case("invalid_toml");
    let d = only(&diags, Code::InvalidToml);
    assert_eq!(d.severity, Severity::Error);
    assert!(d.line().is_some_and(|l| l >= 4), "{d:?}");
    assert!(d.containerd_will.contains("failed to decode hosts.toml"));
    assert!(d.containerd_will.contains("https://registry-1.docker.io"));
}

#[test]
fn wh003_unknown_host_key_suggests_skip_verify() {
    let diags = lint_case("unknown_key");
    let d = only(&diags, Code::UnknownKey);
    assert_at(d, Severity::Warning, 5, 3);
    assert!(d.fix.contains("`skip_verify`"), "{}", d.fix);
}

#[test]
fn wh003_dial_timeout_unknown_to_older_releases() {
    let text =
        "server = \"https://ghcr.io\"\n[host.\"https://m.example\"]\n  dial_timeout = \"1s\"\n";
    let old = Linter::new().with_containerd("1.7.20".parse().unwrap());
    let diags = old.lint_hosts_file(Path::new("hosts.toml"), "ghcr.io", text);
    assert_at(only(&diags, Code::UnknownKey), Severity::Warning, 3, 3);
    let new = Linter::new().with_containerd("2.1".parse().unwrap());
    assert!(new
        .lint_hosts_file(Path::new("hosts.toml"), "ghcr.io", text)
        .is_empty());
}

#[test]
fn wh008_directory_names_that_never_match() {
    let diags = lint_case("bad_dir_names");
    let bad: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.code == Code::UnmatchableHostDir)
        .collect();
    let names: Vec<String> = bad
        .iter()
        .map(|d| d.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["host_5000", "https:", "registry-1.docker.io"],
        "{diags:#?}"
    );
    assert!(bad[0].fix.contains("`host:5000`"));
    assert!(bad[2].fix.contains("`docker.io`"));
    assert!(bad
        .iter()
        .all(|d| d.severity == Severity::Error && d.position.is_none()));
}

#[test]
fn wh009_missing_hosts_toml_mentions_the_lookalike() {
    let diags = lint_case("missing_hosts_toml");
    let d = only(&diags, Code::HostsTomlMissing);
    assert_eq!(d.severity, Severity::Error);
    assert!(
        d.fix.contains("rename `hosts.yaml` to hosts.toml"),
        "{}",
        d.fix
    );
}

#[test]
fn wh010_hosts_toml_at_the_root_is_never_read() {
    let diags = lint_case("root_hosts_toml");
    let d = only(&diags, Code::HostsTomlAtRoot);
    assert_eq!(d.severity, Severity::Error);
    assert!(d.fix.contains("_default/hosts.toml"));
}

#[test]
fn wh012_mirror_without_resolve() {
    let diags = lint_case("no_resolve");
    let d = only(&diags, Code::MissingCapability);
    assert_at(d, Severity::Warning, 4, 3);
    assert!(d.containerd_will.contains("https://quay.io"));
}

#[test]
fn wh013_values_containerd_cannot_decode() {
    let diags = lint_case("invalid_value");
    let invalid: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.code == Code::InvalidValue)
        .collect();
    assert_eq!(invalid.len(), 2, "{diags:#?}");
    assert_at(invalid[0], Severity::Error, 4, 3);
    assert!(invalid[0].message.contains("\"fetch\""));
    assert_at(invalid[1], Severity::Error, 5, 3);
    assert!(invalid[1].containerd_will.contains("ignore the whole file"));
}

#[test]
fn wh014_tls_settings_on_plain_http() {
    let diags = lint_case("tls_on_http");
    assert_at(only(&diags, Code::TlsOnPlainHttp), Severity::Warning, 5, 3);
}

#[test]
fn wh015_missing_server_is_a_note_naming_the_fallback() {
    let diags = lint_case("no_server");
    let d = only(&diags, Code::ServerImplicit);
    assert_eq!(d.severity, Severity::Info);
    assert_eq!(d.position, None);
    assert!(d.fix.contains("server = \"https://registry.k8s.io\""));
}

#[test]
fn wh016_duplicate_hosts_and_shadowed_directories() {
    let diags = lint_case("duplicates");
    let dups: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.code == Code::DuplicateHost)
        .collect();
    assert_eq!(dups.len(), 2, "{diags:#?}");
    let in_file = dups.iter().find(|d| d.position.is_some()).unwrap();
    let text = read_fixture("hosts/duplicates/docker.io/hosts.toml");
    assert_at(in_file, Severity::Warning, 6, column_of(&text, 6, "\"http"));
    let shadowed = dups.iter().find(|d| d.position.is_none()).unwrap();
    assert!(shadowed.file.ends_with("host:5000"), "{shadowed:?}");
}

#[test]
fn wh019_host_without_scheme() {
    let diags = lint_case("no_scheme");
    let text = read_fixture("hosts/no_scheme/ghcr.io/hosts.toml");
    assert_at(
        only(&diags, Code::HostWithoutScheme),
        Severity::Warning,
        3,
        column_of(&text, 3, "\"registry"),
    );
}

#[test]
fn a_correct_hosts_directory_has_no_findings() {
    let diags = Linter::new()
        .with_containerd("2.1".parse().unwrap())
        .lint_hosts_dir(&fixture("hosts/clean"));
    assert!(
        diags.is_empty(),
        "{}",
        wharf_containerd::render_human(&diags)
    );
}

#[test]
fn missing_hosts_directory_is_an_error() {
    let diags = lint_hosts_dir(Path::new("/nonexistent/wharf-fixture/certs.d"));
    assert_eq!(codes(&diags), ["WH005"]);
    assert!(wharf_containerd::has_errors(&diags));
}

/// The hook the online override_path probe will use.
struct RecordingCheck;

impl OnlineCheck for RecordingCheck {
    fn check_host(&self, host: &HostEntry<'_>) -> Vec<Diagnostic> {
        vec![Diagnostic::new(
            Code::OverridePathWithoutPath,
            Severity::Info,
            host.file,
            format!("probed {} (override_path={})", host.url, host.override_path),
        )]
    }
}

#[test]
fn online_checks_see_every_host() {
    let diags = Linter::new()
        .with_online_check(Box::new(RecordingCheck))
        .lint_hosts_dir(&fixture("hosts/seed_b"));
    assert!(
        diags
            .iter()
            .any(|d| d.message == "probed http://registry.home.arpa:5000 (override_path=true)"),
        "{diags:#?}"
    );
}
