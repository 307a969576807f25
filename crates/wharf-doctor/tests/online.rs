//! `wharf containerd lint --online`: the override_path probe against wharf's
//! registry (which answers at /v2/) and against a server that does not.

mod common;

use std::path::Path;
use std::time::Duration;

use common::static_registry::{Mode, StaticRegistry};
use common::*;
use wharf_containerd::{Code, Diagnostic, HostEntry, Linter, OnlineCheck, Position, Severity};
use wharf_doctor::OverridePathProbe;
use wharf_testkit::{free_port, WharfRegistry};

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
    let url = format!("http://{}", registry.host);

    let found = check(url.clone(), true).await;

    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(
        (d.code, d.severity),
        (Code::OverridePathWithoutPath, Severity::Error)
    );
    assert!(
        d.message
            .contains(&format!("answers at {url}/v2/ (HTTP 200)")),
        "{}",
        d.message
    );
    assert!(d.fix.contains("remove `override_path = true`"), "{}", d.fix);
    assert_eq!(d.line(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_say_without_override_path_or_without_v2() {
    let registry = WharfRegistry::start().await;
    assert!(check(format!("http://{}", registry.host), false)
        .await
        .is_empty());
    // override_path with the API root in the URL is what containerd needs.
    assert!(check(format!("http://{}/v2", registry.host), true)
        .await
        .is_empty());

    let web_server = StaticRegistry::start(test_image(), Mode::NotFound, None).await;
    let found = check(format!("http://{}/custom", web_server.addr), true).await;
    assert!(
        found.is_empty(),
        "no registry at /v2/ means override_path may be right: {found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mirror_is_reported_as_information() {
    let url = format!("http://127.0.0.1:{}", free_port());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_linter_runs_the_probe_for_each_host() {
    let registry = WharfRegistry::start().await;
    let hosts = HostsDir::new();
    hosts.write(
        "docker.io",
        &format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            registry.host
        ),
    );
    let root = hosts.root();
    let found = tokio::task::spawn_blocking(move || {
        Linter::new()
            .with_online_check(Box::new(OverridePathProbe::new(Duration::from_secs(5))))
            .lint_hosts_dir(&root)
    })
    .await
    .expect("lint runs");

    let online: Vec<&Diagnostic> = found
        .iter()
        .filter(|d| d.code == Code::OverridePathWithoutPath && d.message.contains("answers at"))
        .collect();
    assert_eq!(
        online.len(),
        1,
        "{}",
        wharf_containerd::render_human(&found)
    );
    assert_eq!(online[0].line(), Some(3));
}
