//! `wharf containerd lint --online`: the override_path probe against wharf's
//! registry (which answers at /v2/) and against a server that does not.

mod common;

use std::path::Path;
use std::time::Duration;

use common::static_registry::{Mode, StaticRegistry};
use common::*;
use wharf_containerd::{Code, Diagnostic, HostEntry, Linter, OnlineCheck, Position, Severity};
use wharf_doctor::OverridePathProbe;

/// Run the (blocking) check off the runtime that serves the registry.
async fn check(url: String, override_path: bool) -> Vec<Diagnostic> {
    tokio::task::spawn_blocking(move || {
        let entry = HostEntry {
            file: Path::new("/etc/containerd/certs.d/docker.io/hosts.toml"),
            namespace_dir: "docker.io",
            url: &url,
            override_path,
            skip_verify: false,
            position: Some(Position { line: 3, column: 1 }),
            source_line: Some("[host.\"...\"]"),
        };
        OverridePathProbe::new(Duration::from_secs(5)).check_host(&entry)
    })
    .await
    .expect("the check runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_path_on_a_v2_registry_is_an_error() {
    let registry = WharfRegistry::start().await;
    let base = format!("http://{}", registry.addr);

    let found = check(format!("{base}/mirror"), true).await;

    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(
        (d.code, d.severity),
        (Code::OverridePathWithoutPath, Severity::Error)
    );
    assert_eq!(
        d.message,
        format!(
            "`override_path = true` on {base}/mirror, but the registry answers at {base}/v2/ (HTTP 200) and not at {base}/mirror/"
        )
    );
    assert_eq!(
        d.fix,
        "remove `override_path = true` from this host: the registry answers at /v2/ (checked online)"
    );
    assert_eq!(d.line(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_say_without_override_path_or_without_v2() {
    let registry = WharfRegistry::start().await;
    assert!(check(format!("http://{}/mirror", registry.addr), false)
        .await
        .is_empty());
    // No path of its own: wrong whatever the registry answers, and the
    // offline lint says so; the probe adds nothing.
    assert!(check(format!("http://{}", registry.addr), true)
        .await
        .is_empty());
    // override_path with the API root in the URL is what containerd needs.
    assert!(check(format!("http://{}/v2", registry.addr), true)
        .await
        .is_empty());

    let web_server = StaticRegistry::start(TestImage::new(), Mode::NotFound, None).await;
    let found = check(format!("http://{}/custom", web_server.addr), true).await;
    assert!(
        found.is_empty(),
        "no registry at /v2/ means override_path may be right: {found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mirror_is_reported_as_information() {
    let url = format!("http://127.0.0.1:{}/mirror", closed_port());
    let found = check(url, true).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::Info);
    assert!(
        found[0]
            .message
            .contains("could not check `override_path` online"),
        "{}",
        found[0].message
    );
}

/// The linter's findings for a hosts.toml whose one host is `url` with
/// `override_path = true`, with the online probe on.
async fn lint_online(url: &str) -> Vec<Diagnostic> {
    let hosts = HostsDir::new();
    hosts.write(
        "docker.io",
        &format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
        ),
    );
    let root = hosts.root();
    tokio::task::spawn_blocking(move || {
        Linter::new()
            .with_online_check(Box::new(OverridePathProbe::new(Duration::from_secs(5))))
            .lint_hosts_dir(&root)
    })
    .await
    .expect("lint runs")
}

fn wrong_override_paths(found: &[Diagnostic]) -> Vec<&Diagnostic> {
    found
        .iter()
        .filter(|d| d.code == Code::OverridePathWithoutPath)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linter_runs_the_probe_for_a_host_with_a_path() {
    let registry = WharfRegistry::start().await;
    let found = lint_online(&format!("http://{}/mirror", registry.addr)).await;
    let wrong = wrong_override_paths(&found);
    assert_eq!(wrong.len(), 1, "{}", wharf_containerd::render_human(&found));
    assert!(
        wrong[0].message.contains("answers at"),
        "{}",
        wrong[0].message
    );
    assert_eq!(wrong[0].line(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_override_path_is_reported_once() {
    let registry = WharfRegistry::start().await;
    let found = lint_online(&format!("http://{}", registry.addr)).await;
    let wrong = wrong_override_paths(&found);
    assert_eq!(wrong.len(), 1, "{}", wharf_containerd::render_human(&found));
    // The offline finding, at the override_path line.
    assert_eq!(wrong[0].line(), Some(5));
    assert!(
        wrong[0].message.contains("has no path beyond /v2"),
        "{}",
        wrong[0].message
    );
}
