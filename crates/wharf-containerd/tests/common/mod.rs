//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wharf_containerd::{Code, Diagnostic, Severity};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn read_fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).expect("fixture exists")
}

/// 1-based column of `needle` on 1-based `line` of `text`.
pub fn column_of(text: &str, line: usize, needle: &str) -> usize {
    let l = text.lines().nth(line - 1).expect("line exists");
    l.find(needle).expect("needle on line") + 1
}

/// The single diagnostic with `code`, failing with the full list otherwise.
pub fn only(diags: &[Diagnostic], code: Code) -> &Diagnostic {
    let matching: Vec<&Diagnostic> = diags.iter().filter(|d| d.code == code).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected exactly one {code}, got:\n{}",
        wharf_containerd::render_human(diags)
    );
    matching[0]
}

pub fn assert_at(d: &Diagnostic, severity: Severity, line: usize, column: usize) {
    assert_eq!(d.severity, severity, "{d:?}");
    assert_eq!(d.line(), Some(line), "{d:?}");
    assert_eq!(d.column(), Some(column), "{d:?}");
}

pub fn codes(diags: &[Diagnostic]) -> Vec<&'static str> {
    diags.iter().map(|d| d.code.as_str()).collect()
}

/// No errors and no warnings (notes are allowed).
pub fn assert_clean(diags: &[Diagnostic]) {
    let bad: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .collect();
    assert!(
        bad.is_empty(),
        "expected no errors or warnings:\n{}",
        wharf_containerd::render_human(diags)
    );
}
