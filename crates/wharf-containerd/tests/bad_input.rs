//! Garbage in: clear diagnostics or errors, never a panic, never a write.

mod common;

use std::fs;
use std::io::Write;

use common::codes;
use wharf_containerd::{read_text_file, Code, Linter, MAX_FILE_BYTES};

fn lint_config_file(path: &std::path::Path) -> Vec<wharf_containerd::Diagnostic> {
    Linter::new().lint_config_file(path)
}

#[test]
fn binary_garbage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, [0x7f, b'E', b'L', b'F', 0, 1, 2, 0xff, 0xfe]).unwrap();
    let diags = lint_config_file(&path);
    assert_eq!(codes(&diags), ["WH020"]);
    assert!(diags[0].message.contains("binary"), "{}", diags[0].message);
}

#[test]
fn invalid_utf8_without_nul_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    fs::write(&path, b"version = 2\n\xc3\x28").unwrap();
    let err = read_text_file(&path).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn printable_garbage_is_a_syntax_error() {
    let diags =
        wharf_containerd::lint_config(std::path::Path::new("c.toml"), "}{ not toml at all ]]");
    assert_eq!(codes(&diags), ["WH001"]);
    assert_eq!(diags[0].line(), Some(1));
}

#[test]
fn empty_config_means_no_config_path() {
    let diags = wharf_containerd::lint_config(std::path::Path::new("c.toml"), "");
    assert_eq!(codes(&diags), ["WH004"]);
}

#[test]
fn empty_hosts_toml_is_treated_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("ghcr.io")).unwrap();
    fs::write(dir.path().join("ghcr.io/hosts.toml"), "").unwrap();
    let diags = wharf_containerd::lint_hosts_dir(dir.path());
    assert_eq!(codes(&diags), ["WH009"]);
    assert!(diags[0].message.contains("empty"));
}

#[test]
fn a_directory_where_a_file_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let diags = lint_config_file(dir.path());
    assert_eq!(codes(&diags), ["WH020"]);
    assert!(diags[0].message.contains("is a directory"));

    fs::create_dir_all(dir.path().join("ghcr.io/hosts.toml")).unwrap();
    let diags = wharf_containerd::lint_hosts_dir(dir.path());
    assert_eq!(codes(&diags), ["WH020"]);
}

#[test]
fn a_file_where_the_hosts_directory_should_be() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let diags = wharf_containerd::lint_hosts_dir(file.path());
    assert_eq!(codes(&diags), ["WH005"]);
    assert!(diags[0].message.contains("not a directory"));
}

#[test]
fn huge_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let file = fs::File::create(&path).unwrap();
    // Sparse 100 MiB: costs no disk, and proves only the size is looked at.
    file.set_len(100 * 1024 * 1024).unwrap();
    let diags = lint_config_file(&path);
    assert_eq!(codes(&diags), ["WH020"]);
    assert!(diags[0].message.contains("1 MiB"), "{}", diags[0].message);
}

#[test]
fn just_over_the_limit_is_refused_and_at_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let mut f = fs::File::create(&path).unwrap();
    let comment_line = format!("#{}\n", "x".repeat(1022));
    for _ in 0..(MAX_FILE_BYTES / 1024) {
        f.write_all(comment_line.as_bytes()).unwrap();
    }
    drop(f);
    assert!(read_text_file(&path).is_ok());
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"\n")
        .unwrap();
    assert!(read_text_file(&path).is_err());
}

#[test]
fn missing_config_file_is_reported_not_panicked() {
    let diags = lint_config_file(std::path::Path::new("/nonexistent/wharf/config.toml"));
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, Code::Unreadable);
}

#[test]
fn lint_never_changes_files() {
    let root = common::fixture("hosts/seed_b");
    let file = root.join("registry.k8s.io/hosts.toml");
    let before = (
        fs::read(&file).unwrap(),
        fs::metadata(&file).unwrap().modified().unwrap(),
    );
    let _ = wharf_containerd::lint_hosts_dir(&root);
    let after = (
        fs::read(&file).unwrap(),
        fs::metadata(&file).unwrap().modified().unwrap(),
    );
    assert_eq!(before, after);
}
