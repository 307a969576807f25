//! Where the doctor's picture of containerd comes from when the runtime
//! cannot be asked: nothing on the socket, a socket that is not
//! containerd's, a release never seen, a config.toml that does not parse.
//! Each says that it modelled, and none gives a wrong "would succeed".

mod common;

use std::path::Path;

use common::{options, push_image, test_image, HostsDir, REPO, TAG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_doctor::{diagnose, render_text, Layer, Report};
use wharf_testkit::{free_port, WharfRegistry};

/// A version-3 config.toml that containerd 1.6 does not read: the only way
/// to the mirror is through config_path, which 1.6 ignores here.
fn v3_config(hosts: &HostsDir) -> std::path::PathBuf {
    hosts.write_file(
        "config.toml",
        &format!(
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"{}\"\n",
            hosts.root().display()
        ),
    )
}

/// A mirror holding the image, and an upstream nothing answers on.
async fn mirrored(hosts: &HostsDir) -> (WharfRegistry, String) {
    let mirror = WharfRegistry::start().await;
    let upstream = format!("127.0.0.1:{}", free_port());
    let image = test_image();
    push_image(&mirror, &common::mirrored_repo(&upstream), &image).await;
    hosts.write(
        &upstream,
        &format!(
            "server = \"http://{upstream}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.host
        ),
    );
    (mirror, format!("{upstream}/{REPO}:{TAG}"))
}

async fn modelled(image: &str, hosts: &HostsDir, address: &Path, release: &str) -> Report {
    let mut options = options(image, hosts);
    options.config_file = Some(v3_config(hosts));
    options.address = Some(address.to_owned());
    options.containerd = Some(release.parse().unwrap());
    diagnose(&options).await.expect("the doctor runs")
}

fn runtime_summary(report: &Report) -> String {
    let runtime = report.containerd.runtime.as_ref().expect("runtime source");
    assert!(
        !runtime.asked,
        "nothing was asked:\n{}",
        render_text(report)
    );
    runtime.summary.clone()
}

#[tokio::test]
async fn containerd_not_running_is_said_and_the_release_modelled() {
    let hosts = HostsDir::new();
    let (_mirror, image) = mirrored(&hosts).await;
    let socket = hosts.dir.path().join("containerd.sock");

    let report = modelled(&image, &hosts, &socket, "1.6.20").await;

    let summary = runtime_summary(&report);
    assert!(
        summary.starts_with("modelled containerd 1.6.20"),
        "{summary}"
    );
    assert!(summary.contains("nothing answers on"), "{summary}");
    // 1.6 ignores the version-3 section: the mirror is not used, and the
    // doctor names the section, not the upstream.
    let text = render_text(&report);
    assert!(!report.verdict.would_succeed, "{text}");
    let first = report.verdict.primary().expect("a failure");
    assert_eq!(first.layer, Layer::Config, "{text}");
    assert!(
        first.reason.starts_with(
            "config.toml sets config_path under [plugins.\"io.containerd.cri.v1.images\".registry] (line 3), \
             but containerd 1.6.20 does not read it"
        ),
        "{text}"
    );
    assert!(!text.contains("/etc/hosts"), "{text}");
}

#[tokio::test]
async fn the_same_file_pulls_on_2x() {
    let hosts = HostsDir::new();
    let (_mirror, image) = mirrored(&hosts).await;
    let socket = hosts.dir.path().join("containerd.sock");

    let report = modelled(&image, &hosts, &socket, "2.1").await;

    assert!(report.verdict.would_succeed, "{}", render_text(&report));
}

#[tokio::test]
async fn a_socket_that_is_not_containerd_is_named() {
    let hosts = HostsDir::new();
    let (_mirror, image) = mirrored(&hosts).await;
    let socket = hosts.dir.path().join("http.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });

    let report = modelled(&image, &hosts, &socket, "1.6.20").await;
    server.abort();

    let summary = runtime_summary(&report);
    assert!(
        summary.contains("is not a container runtime's gRPC socket"),
        "{summary}"
    );
    assert!(summary.contains("check --address"), "{summary}");
    assert!(!report.verdict.would_succeed, "{}", render_text(&report));
}

#[tokio::test]
async fn an_unseen_release_is_modelled_as_the_nearest_with_a_warning() {
    let hosts = HostsDir::new();
    let (_mirror, image) = mirrored(&hosts).await;
    let socket = hosts.dir.path().join("containerd.sock");

    let report = modelled(&image, &hosts, &socket, "2.9").await;

    let runtime = report.containerd.runtime.as_ref().unwrap();
    let warning = runtime.warning.as_deref().unwrap_or_default();
    assert!(
        warning.contains("newer than the releases wharf has checked"),
        "{warning}"
    );
    assert!(
        render_text(&report).contains("warning: containerd 2.9"),
        "{}",
        render_text(&report)
    );
}

#[tokio::test]
async fn a_config_that_does_not_parse_is_an_error_not_a_verdict() {
    let hosts = HostsDir::new();
    let (_mirror, image) = mirrored(&hosts).await;
    let mut options = options(&image, &hosts);
    options.config_file = Some(hosts.write_file("config.toml", "version = 2\n[plugins\n"));
    options.address = Some(hosts.dir.path().join("containerd.sock"));
    options.containerd = Some("1.7".parse().unwrap());

    let err = diagnose(&options)
        .await
        .expect_err("no verdict on a broken file");

    let text = err.to_string();
    assert!(text.contains("not valid TOML"), "{text}");
    assert!(text.contains("containerd refuses to start"), "{text}");
}
