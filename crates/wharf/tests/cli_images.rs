//! `wharf images` as a user runs it on a folder of manifests.

use std::process::Command;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(WHARF).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lists_images_and_names_a_broken_file_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("apps")).unwrap();
    std::fs::write(
        dir.path().join("apps/pod.yaml"),
        "kind: Pod\nspec:\n  containers:\n  - image: registry.k8s.io/coredns/coredns:v1.11.3\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yml"), "spec: [\n  image: }\n").unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        "image: ignored/by:extension\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["images", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "a file that does not parse is a failure: {stderr}");
    assert_eq!(stdout, "registry.k8s.io/coredns/coredns:v1.11.3\n");
    assert!(
        stderr.contains("broken.yml:2:"),
        "file and line named: {stderr}"
    );
}

#[test]
fn lint_flags_the_frozen_latest_trap_and_json_is_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.yaml");
    std::fs::write(
        &file,
        "spec:\n  containers:\n  - image: repo/registry:latest\n    imagePullPolicy: IfNotPresent\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["images", "--lint", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("d.yaml:3: warning[WK001]"), "{stderr}");
    assert!(
        stderr.contains("docker.io/repo/registry:latest"),
        "{stderr}"
    );
    let (code, stdout, _) = run(&["images", "--output", "json", file.to_str().unwrap()]);
    assert_eq!(code, 0, "without --lint a parsable file is clean");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["images"][0], "docker.io/repo/registry:latest");
    assert_eq!(doc["uses"][0]["line"], 3);
}

/// `wharf images … | head -1`: the reader closes the pipe after one line;
/// that is success (exit 0), not a panic on the next write.
#[test]
fn a_reader_that_stops_early_is_success() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // Far more than a pipe buffer holds, so wharf is still writing when
    // the reader goes away.
    let mut yaml = String::from("kind: Pod\nspec:\n  containers:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!(
            "  - image: registry.home.arpa:5000/team/app-{i:05}:v1.0.{i}\n"
        ));
    }
    let file = dir.path().join("many.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut child = Command::new(WHARF)
        .args(["images", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.starts_with("registry.home.arpa:5000/team/app-"),
        "{first}"
    );
    // The reader is dropped here, closing the pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
