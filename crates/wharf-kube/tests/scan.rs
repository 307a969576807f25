//! Images found in real manifest shapes, with their lines, and the lint rules.

use wharf_kube::{lint, references, scan_text};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: registry
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: docker.io/library/busybox:1.36.1
      containers:
      - name: registry
        image: repo/registry:latest
        imagePullPolicy: IfNotPresent
      - name: sidecar
        image: "registry.k8s.io/pause:3.10"
        imagePullPolicy: IfNotPresent
      ephemeralContainers:
      - name: debug
        image: alpine
---
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - image: registry.example.com/repo/registry:v0.4.2
            imagePullPolicy: IfNotPresent
---
apiVersion: example.com/v1
kind: Widget
spec:
  image: quay.io/org/widget@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  controller:
    image:
      registry: ghcr.io
      repository: org/controller
      tag: v2.1.0
"#;

#[test]
fn finds_every_image_with_its_line() {
    let r = scan_text("deploy.yaml", DEPLOYMENT);
    assert!(r.failure.is_none());
    let mut found: Vec<(&str, usize)> = r.uses.iter().map(|u| (u.image.as_str(), u.line)).collect();
    found.sort_by_key(|(_, line)| *line);
    assert_eq!(
        found,
        vec![
            ("docker.io/library/busybox:1.36.1", 10),
            ("repo/registry:latest", 13),
            ("registry.k8s.io/pause:3.10", 16),
            ("alpine", 20),
            ("registry.example.com/repo/registry:v0.4.2", 30),
            ("quay.io/org/widget@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 36),
            ("ghcr.io/org/controller:v2.1.0", 40),
        ]
    );
    let registry = r.uses.iter().find(|u| u.line == 13).unwrap();
    assert_eq!(registry.pull_policy.as_deref(), Some("IfNotPresent"));
}

#[test]
fn references_are_fully_qualified_sorted_and_unique() {
    let mut r = scan_text("a.yaml", DEPLOYMENT);
    r.uses.extend(scan_text("b.yaml", "image: alpine\n").uses);
    let (refs, bad) = references(&r.uses);
    assert!(bad.is_empty());
    let refs: Vec<String> = refs.into_iter().collect();
    assert_eq!(refs[0], "docker.io/library/alpine:latest");
    assert!(refs.contains(&"docker.io/repo/registry:latest".to_string()));
    assert_eq!(
        refs.iter().filter(|r| r.contains("alpine")).count(),
        1,
        "deduplicated"
    );
    let mut sorted = refs.clone();
    sorted.sort();
    assert_eq!(refs, sorted);
}

#[test]
fn lint_names_the_bootstrap_traps() {
    let r = scan_text("deploy.yaml", DEPLOYMENT);
    let findings = lint(&r.uses);
    let at = |code: &str, line: usize| findings.iter().any(|f| f.code == code && f.line == line);
    assert!(at("WK001", 13), "bare repo/registry: {findings:#?}");
    assert!(at("WK002", 13), "latest");
    assert!(
        at("WK001", 20) && at("WK002", 20),
        "bare alpine without tag"
    );
    assert!(at("WK003", 16), "pause:3.10 floats with IfNotPresent");
    assert!(
        !findings.iter().any(|f| f.line == 30),
        "immutable, qualified: clean"
    );
    assert!(!findings.iter().any(|f| f.line == 36), "digest: clean");
    assert!(
        !findings.iter().any(|f| f.line == 10),
        "busybox 1.36.1 without IfNotPresent: clean"
    );
}

#[test]
fn a_broken_document_is_named_and_earlier_images_kept() {
    let text = "image: alpine:3.21.0\n---\nspec: [1,\nimage: }\n";
    let r = scan_text("broken.yaml", text);
    let f = r.failure.expect("parse error reported");
    assert_eq!(f.file, "broken.yaml");
    assert_eq!(f.line, 4);
    assert_eq!(r.uses.len(), 1);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "\0\u{1}\u{2}",
        "{{{{",
        "- - - -",
        "image:",
        "image: [a, b]",
        "? image\n: x\n",
    ] {
        let r = scan_text("x", text);
        let _ = lint(&r.uses);
        let _ = references(&r.uses);
    }
    let huge = "a: ".to_string() + &"[".repeat(10_000);
    let r = scan_text("deep.yaml", &huge);
    assert!(r.failure.is_some() || r.uses.is_empty());
}

#[test]
fn invalid_references_are_findings() {
    let r = scan_text("x.yaml", "image: UPPER/Case:1\n");
    let (refs, bad) = references(&r.uses);
    assert!(refs.is_empty());
    assert_eq!(bad[0].code, "WK000");
    assert_eq!(bad[0].line, 1);
}

/// A chart's values file: the image maps charts use, with the pull policy
/// inside them, next to plain `image:` strings.
const VALUES: &str = r#"image:
  registry: registry.home.arpa:5000
  repository: repo/registry
  tag: "1.2"
  pullPolicy: IfNotPresent
controller:
  image:
    registry: registry.k8s.io
    image: ingress-nginx/controller
    tag: v1.11.3
    digest: sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    pullPolicy: IfNotPresent
worker:
  image:
    repository: bitnami/redis
    tag: 7.4.1
    pullPolicy: Always
sidecar:
  image: busybox:stable
  imagePullPolicy: IfNotPresent
exporter:
  image:
    name: quay.io/org/exporter
    tag: v0.9.0
"#;

#[test]
fn helm_values_maps_and_their_pull_policy() {
    let r = scan_text("values.yaml", VALUES);
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let mut found: Vec<(&str, usize, Option<&str>)> = r
        .uses
        .iter()
        .map(|u| (u.image.as_str(), u.line, u.pull_policy.as_deref()))
        .collect();
    // The top-level image is found when its mapping, the document, ends.
    found.sort_by_key(|(_, line, _)| *line);
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let controller = format!("registry.k8s.io/ingress-nginx/controller:v1.11.3@{digest}");
    assert_eq!(
        found,
        [
            (
                "registry.home.arpa:5000/repo/registry:1.2",
                3,
                Some("IfNotPresent")
            ),
            (controller.as_str(), 9, Some("IfNotPresent")),
            ("bitnami/redis:7.4.1", 15, Some("Always")),
            ("busybox:stable", 19, Some("IfNotPresent")),
            ("quay.io/org/exporter:v0.9.0", 23, None),
        ]
    );
    let findings = lint(&r.uses);
    let at = |code: &str, line: usize| findings.iter().any(|f| f.code == code && f.line == line);
    assert!(
        at("WK003", 3),
        "mutable 1.2 with pullPolicy IfNotPresent: {findings:#?}"
    );
    assert!(!at("WK003", 9), "a digest pin is immutable");
    let bare = findings
        .iter()
        .find(|f| f.code == "WK001" && f.line == 15)
        .expect("bitnami/redis names no registry");
    assert!(
        bare.fix.contains("docker.io/bitnami/redis:7.4.1"),
        "the fully-qualified name to use: {}",
        bare.fix
    );
    assert!(
        at("WK001", 19) && at("WK003", 19),
        "busybox:stable: {findings:#?}"
    );
    assert!(
        !findings.iter().any(|f| f.line == 23),
        "qualified and immutable: {findings:#?}"
    );
}
