//! `wharf containerd lint` as a new user runs it on a node's files, with
//! `--online` against a real `wharf serve`: each problem reported once, and a
//! summary that counts findings under the names they are printed with.

mod common;

use common::server::Wharf;
use std::process::Command;
use wharf_testkit::tools::run_unchecked;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

#[test]
fn lint_online_reports_a_wrong_override_path_once_and_counts_by_severity() {
    let work = tempfile::tempdir().unwrap();
    let mirror = Wharf::start(&work.path().join("mirror"));
    // A hand-written node: docker.io pulls go to `mirror` with `override_path`.
    let (config, _) = common::containerd::write_node_files(
        work.path(),
        &mirror.url(),
        "  override_path = true\n",
    );

    let out = run_unchecked(
        Command::new(WHARF)
            .args([
                "containerd",
                "lint",
                "--online",
                "--containerd-version",
                "1.7",
            ])
            .arg("--config")
            .arg(&config),
    );

    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert_eq!(
        out.stdout.matches("error[WH011]").count(),
        1,
        "one override_path, one finding:\n{}",
        out.stdout
    );
    // WH017 (ctr ignores config_path) is an info, WH022 (no mirror for the
    // sandbox image) a warning.
    assert!(out.stdout.contains("info[WH017]"), "{}", out.stdout);
    assert!(out.stdout.contains("warning[WH022]"), "{}", out.stdout);
    assert_eq!(
        out.stdout.lines().last(),
        Some("1 error, 1 warning, 1 info"),
        "{}",
        out.stdout
    );
}
