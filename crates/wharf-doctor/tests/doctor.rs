//! Each fault injected on 127.0.0.1; each test checks the layer the doctor
//! names as broken and the fix it proposes. The image's own registry is
//! `127.0.0.1:<closed port>`, so containerd's fallback to it fails at once
//! and never leaves the machine.

mod common;

use common::static_registry::{Mode, StaticRegistry};
use common::*;
use wharf_doctor::{diagnose, render_text, Layer, Problem, Report, StepStatus};
use wharf_testkit::pki::Ca;
use wharf_testkit::{free_port, in_private_netns, WharfRegistry};

/// An upstream registry nothing listens on, and the image reference there.
fn offline_upstream() -> (String, String) {
    let upstream = format!("127.0.0.1:{}", free_port());
    let image = format!("{upstream}/{REPO}:{TAG}");
    (upstream, image)
}

/// hosts.toml: one mirror, then the (unreachable) upstream as `server`.
fn mirror_toml(upstream: &str, mirror_url: &str, extra: &str) -> String {
    format!(
        "server = \"http://{upstream}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{extra}"
    )
}

async fn run(image: &str, hosts: &HostsDir) -> Report {
    diagnose(&options(image, hosts))
        .await
        .expect("the doctor runs")
}

fn step_problem(report: &Report, host: usize, layer: Layer) -> Problem {
    report.hosts[host]
        .steps
        .iter()
        .find(|s| s.layer == layer && s.status == StepStatus::Failed)
        .and_then(|s| s.problem.clone())
        .unwrap_or_else(|| panic!("no failed {layer} step:\n{}", render_text(report)))
}

#[tokio::test]
async fn healthy_mirror_serves_the_pull() {
    let registry = WharfRegistry::start().await;
    let image = test_image();
    let (upstream, reference) = offline_upstream();
    push_image(&registry, &mirrored_repo(&upstream), &image).await;
    let hosts = HostsDir::new();
    let mirror = format!("http://{}", registry.host);
    hosts.write(&upstream, &mirror_toml(&upstream, &mirror, ""));

    let report = run(&reference, &hosts).await;
    let text = render_text(&report);

    assert!(report.verdict.would_succeed, "{text}");
    assert_eq!(
        report.verdict.served_by,
        Some(format!("{mirror}/v2")),
        "{text}"
    );
    assert_eq!(report.verdict.digest, Some(image.digest().to_string()));
    assert!(report.verdict.failures.is_empty(), "{text}");
    assert_eq!(
        ok_layers(&report, 0),
        [
            Layer::Dns,
            Layer::Tcp,
            Layer::Api,
            Layer::Manifest,
            Layer::Manifest,
            Layer::Blob,
            Layer::Blob
        ],
        "{text}"
    );
    assert_eq!(report.hosts[0].ns.as_deref(), Some(upstream.as_str()));
    assert!(
        report.hosts[1].not_tested.is_some(),
        "the upstream is not needed:\n{text}"
    );
    assert!(
        text.contains(&format!("  ok    tcp     {} connected in", registry.host)),
        "{text}"
    );
    assert!(
        report
            .verdict
            .notes
            .iter()
            .any(|n| n.contains("`ctr` does not read the CRI's config_path")),
        "{text}"
    );
}

#[tokio::test]
async fn json_report_is_versioned() {
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://127.0.0.1:{}", free_port()), ""),
    );

    let report = run(&reference, &hosts).await;
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");

    assert_eq!(json["version"], 1);
    assert_eq!(json["verdict"]["would_succeed"], false);
    assert_eq!(json["hosts"][0]["role"], "mirror");
    assert_eq!(json["hosts"][0]["steps"][0]["layer"], "dns");
    assert_eq!(
        json["hosts"][0]["steps"][1]["problem"]["kind"],
        "connection_refused"
    );
    assert_eq!(json["containerd"]["hosts_dir_source"], "config_path");
}

#[tokio::test]
async fn closed_port_breaks_tcp() {
    let (upstream, reference) = offline_upstream();
    let mirror = format!("127.0.0.1:{}", free_port());
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://{mirror}"), ""),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &mirror, Layer::Tcp);
    assert!(
        failure
            .fix
            .contains(&format!("nothing accepts connections on {mirror}")),
        "{}",
        failure.fix
    );
    let error = report
        .verdict
        .containerd_error
        .as_deref()
        .unwrap_or_default();
    assert!(error.contains("failed to resolve reference"), "{error}");
    assert!(
        error.contains(&format!("dial tcp {mirror}: connect: connection refused")),
        "{error}"
    );
}

#[test]
fn unresolvable_name_breaks_dns() {
    // Only loopback: the lookup cannot reach any DNS server and fails at once.
    let report = in_private_netns(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (upstream, reference) = offline_upstream();
            let hosts = HostsDir::new();
            hosts.write(
                &upstream,
                &mirror_toml(&upstream, "http://mirror.invalid:5000", ""),
            );
            run(&reference, &hosts).await
        })
    });

    let failure = assert_broken(&report, "mirror.invalid", Layer::Dns);
    assert!(
        failure
            .fix
            .contains("mirror.invalid does not resolve on this node"),
        "{}",
        failure.fix
    );
    assert!(failure.fix.contains("/etc/hosts"), "{}", failure.fix);
    assert!(
        !failure.reason.contains("no answer within"),
        "the lookup should fail, not time out: {}",
        failure.reason
    );
    assert_eq!(
        step_problem(&report, 0, Layer::Dns),
        Problem::NameNotResolved {
            name: "mirror.invalid".to_owned()
        }
    );
}

#[tokio::test]
async fn certificate_from_another_ca_breaks_tls() {
    let server_ca = Ca::new("server CA");
    let other_ca = Ca::new("some other CA");
    let tls = server_ca.server_config(&["127.0.0.1"]);
    let server = StaticRegistry::start(test_image(), Mode::Serve, Some(tls)).await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    let ca_file = hosts.write_file("other-ca.pem", &other_ca.pem());
    let mirror = format!("https://{}", server.addr);
    let file = hosts.write(
        &upstream,
        &mirror_toml(
            &upstream,
            &mirror,
            &format!("  ca = \"{}\"\n", ca_file.display()),
        ),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &server.addr.to_string(), Layer::Tls);
    assert_eq!(
        step_problem(&report, 0, Layer::Tls),
        Problem::CertificateUnknownIssuer
    );
    assert!(
        failure
            .fix
            .contains("add the CA that signed the server certificate with `ca = ")
            && failure.fix.contains(&file.display().to_string()),
        "{}",
        failure.fix
    );
    let error = report
        .verdict
        .containerd_error
        .as_deref()
        .unwrap_or_default();
    assert!(
        error.contains("x509: certificate signed by unknown authority"),
        "{error}"
    );
}

#[tokio::test]
async fn the_right_ca_makes_tls_work() {
    let ca = Ca::new("server CA");
    let server = StaticRegistry::start(
        test_image(),
        Mode::Serve,
        Some(ca.server_config(&["127.0.0.1"])),
    )
    .await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    let ca_file = hosts.write_file("ca.pem", &ca.pem());
    let extra = format!("  ca = \"{}\"\n", ca_file.display());
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("https://{}", server.addr), &extra),
    );

    let report = run(&reference, &hosts).await;

    assert!(report.verdict.would_succeed, "{}", render_text(&report));
    assert!(ok_layers(&report, 0).contains(&Layer::Tls));
}

#[tokio::test]
async fn certificate_for_another_name_breaks_tls() {
    let ca = Ca::new("server CA");
    let tls = ca.server_config(&["registry.example"]);
    let server = StaticRegistry::start(test_image(), Mode::Serve, Some(tls)).await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    let ca_file = hosts.write_file("ca.pem", &ca.pem());
    let extra = format!("  ca = \"{}\"\n", ca_file.display());
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("https://{}", server.addr), &extra),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &server.addr.to_string(), Layer::Tls);
    assert!(
        failure
            .fix
            .contains("the certificate is valid for registry.example, not 127.0.0.1"),
        "{}",
        failure.fix
    );
}

#[tokio::test]
async fn not_found_on_v2_breaks_the_api_layer() {
    let server = StaticRegistry::start(test_image(), Mode::NotFound, None).await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://{}", server.addr), ""),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &server.addr.to_string(), Layer::Api);
    assert_eq!(
        step_problem(&report, 0, Layer::Api),
        Problem::HttpStatus { status: 404 }
    );
    assert!(
        failure
            .fix
            .contains("is not a registry API root (GET /v2/ answered 404)"),
        "{}",
        failure.fix
    );
}

#[tokio::test]
async fn missing_blob_breaks_the_blob_layer() {
    let registry = WharfRegistry::start().await;
    let image = test_image();
    let (upstream, reference) = offline_upstream();
    let repo = mirrored_repo(&upstream);
    push_image(&registry, &repo, &image).await;
    delete_blob(&registry, &repo, &shared_layer(&image).digest()).await;
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://{}", registry.host), ""),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &registry.host.to_string(), Layer::Blob);
    assert_eq!(
        step_problem(&report, 0, Layer::Blob),
        Problem::BlobNotFound {
            digest: shared_layer(&image).digest().to_string()
        }
    );
    assert!(
        failure.fix.contains(&format!(
            "has the manifest but not blob {}",
            shared_layer(&image).digest()
        )),
        "{}",
        failure.fix
    );
    let error = report
        .verdict
        .containerd_error
        .as_deref()
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "could not fetch content descriptor {}",
            shared_layer(&image).digest()
        )),
        "{error}"
    );
}

#[tokio::test]
async fn override_path_on_a_v2_registry_breaks_the_manifest() {
    let registry = WharfRegistry::start().await;
    let image = test_image();
    let (upstream, reference) = offline_upstream();
    push_image(&registry, &mirrored_repo(&upstream), &image).await;
    let hosts = HostsDir::new();
    let mirror = format!("http://{}", registry.host);
    // Line 5 of the file.
    let file = hosts.write(
        &upstream,
        &mirror_toml(&upstream, &mirror, "  override_path = true\n"),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &registry.host.to_string(), Layer::Manifest);
    assert_eq!(report.hosts[0].url, mirror, "no /v2 with override_path");
    assert!(
        failure.fix.contains(&format!(
            "remove `override_path = true` from {}:5",
            file.display()
        )),
        "{}",
        failure.fix
    );
    assert!(
        failure.fix.contains("the registry answers at /v2/"),
        "{}",
        failure.fix
    );
    let manifest = report.hosts[0]
        .steps
        .iter()
        .find(|s| s.layer == Layer::Manifest)
        .unwrap();
    assert!(
        manifest
            .target
            .starts_with("HEAD /test/app/manifests/1?ns="),
        "{}",
        manifest.target
    );
}

#[tokio::test]
async fn blob_redirect_to_an_unreachable_address_is_named() {
    let cdn = format!("127.0.0.1:{}", free_port());
    let mode = Mode::RedirectBlobs(format!("http://{cdn}/cdn"));
    let server = StaticRegistry::start(test_image(), mode, None).await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://{}", server.addr), ""),
    );

    let report = run(&reference, &hosts).await;

    let failure = assert_broken(&report, &server.addr.to_string(), Layer::Blob);
    match step_problem(&report, 0, Layer::Blob) {
        Problem::RedirectUnreachable { addr, location, .. } => {
            assert_eq!(addr, cdn);
            assert!(
                location.starts_with(&format!("http://{cdn}/cdn/sha256:")),
                "{location}"
            );
        }
        other => panic!("expected an unreachable redirect, got {other:?}"),
    }
    assert!(
        failure.fix.contains(&format!(
            "the blob redirect goes to {cdn} which this node cannot reach: use a pull-through cache that follows redirects itself (wharf serve with [[upstream]])"
        )),
        "{}",
        failure.fix
    );
    let error = report
        .verdict
        .containerd_error
        .as_deref()
        .unwrap_or_default();
    assert!(
        error.contains(&format!("dial tcp {cdn}: connect: connection refused")),
        "{error}"
    );
}

#[tokio::test]
async fn default_directory_applies_to_any_registry() {
    let registry = WharfRegistry::start().await;
    let image = test_image();
    let (upstream, reference) = offline_upstream();
    push_image(&registry, &mirrored_repo(&upstream), &image).await;
    let hosts = HostsDir::new();
    let file = hosts.write(
        "_default",
        &format!("[host.\"http://{}\"]\n", registry.host),
    );
    let mut options = options(&reference, &hosts);
    // What `ctr --hosts-dir` would do, with a config.toml that has no config_path.
    options.config_file = Some(hosts.write_file("plain-config.toml", "version = 2\n"));
    options.hosts_dir = Some(hosts.root());

    let report = diagnose(&options).await.expect("the doctor runs");
    let text = render_text(&report);

    assert!(report.verdict.would_succeed, "{text}");
    assert_eq!(
        report.containerd.hosts_dir_source,
        wharf_doctor::HostsDirSource::Flag
    );
    assert_eq!(
        report.containerd.hosts_file.as_deref(),
        Some(file.as_path())
    );
    // No `server`: the registry itself comes last, with every capability.
    assert_eq!(report.hosts.len(), 2, "{text}");
    assert_eq!(report.hosts[1].role, wharf_doctor::HostRole::Upstream);
    assert_eq!(report.hosts[0].capabilities, ["pull", "resolve", "push"]);
    assert!(
        report
            .verdict
            .notes
            .iter()
            .any(|n| n.contains("has no config_path and ignores this directory")),
        "{text}"
    );
}

#[tokio::test]
async fn undecodable_hosts_toml_sends_pulls_to_the_registry() {
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        "[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pul\"]\n",
    );

    let report = run(&reference, &hosts).await;

    let problem = report
        .containerd
        .hosts_file_problem
        .as_deref()
        .unwrap_or_default();
    assert!(problem.contains("unknown capability pul"), "{problem}");
    assert_eq!(
        report.hosts.len(),
        1,
        "only the registry is left:\n{}",
        render_text(&report)
    );
    // The layer that broke is the hosts.toml, not the registry behind it.
    let failure = assert_broken(&report, "hosts.toml", Layer::Config);
    assert!(
        failure.fix.contains("wharf containerd lint"),
        "{}",
        failure.fix
    );
    let behind = &report.verdict.failures[1];
    assert_eq!(behind.layer, Layer::Tcp);
    assert!(behind.url.contains(&upstream), "{}", behind.url);
    assert!(
        behind.fix.contains("the mirror is configured but not used"),
        "{}",
        behind.fix
    );
}

#[tokio::test]
async fn bearer_challenges_get_an_anonymous_token() {
    let server = StaticRegistry::start(test_image(), Mode::RequireToken, None).await;
    let (upstream, reference) = offline_upstream();
    let hosts = HostsDir::new();
    hosts.write(
        &upstream,
        &mirror_toml(&upstream, &format!("http://{}", server.addr), ""),
    );

    let report = run(&reference, &hosts).await;

    let text = render_text(&report);
    assert!(report.verdict.would_succeed, "{text}");
    let api = &report.hosts[0]
        .steps
        .iter()
        .find(|s| s.layer == Layer::Api)
        .unwrap();
    assert_eq!(
        api.detail, "200 OK (with an anonymous bearer token)",
        "{text}"
    );
}
