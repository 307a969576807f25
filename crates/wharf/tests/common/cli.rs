//! The `wharf` binary under test, run to completion as a user would.

use std::path::Path;
use std::process::Command;

use wharf_testkit::tools::{run, run_unchecked, run_with_stdin, Output};

/// `wharf ARGS…`, run to completion; output whatever the exit status.
pub fn wharf(args: &[&str]) -> Output {
    run_unchecked(Command::new(env!("CARGO_BIN_EXE_wharf")).args(args))
}

/// `wharf ARGS…`, which must succeed.
pub fn wharf_ok(args: &[&str]) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_wharf")).args(args),
        &format!("wharf {}", args.join(" ")),
    )
}

/// `wharf auth htpasswd --cost 4 FILE USER` with `password` and a newline
/// on stdin, whatever its outcome.
pub fn wharf_htpasswd(file: &Path, user: &str, password: &str) -> Output {
    run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["auth", "htpasswd", "--cost", "4"])
            .arg(file)
            .arg(user),
        Some(format!("{password}\n").as_bytes()),
    )
}
